"""The embedded default database: a Postgres the project starts itself when DATABASE_URL is unset.

pgserver ships Postgres binaries in its wheel (and drops to an unprivileged user when run as
root), so a fresh machine needs no system Postgres. The server is left running after the process
exits (`cleanup_mode=None`): Dagster starts a process per run, and each must find the same server.
"""

from __future__ import annotations

import logging
import os
import secrets
import shlex
import stat
import subprocess
from functools import cache
from pathlib import Path

from sqlalchemy.engine import URL, make_url

from bsky_assets import settings

DATABASE_NAME = "postgres"
_logger = logging.getLogger(__name__)


PIPELINE_ROLE = "bsky_pipeline"
CREDENTIALS_FILE = "postgres-pipeline.credentials"


def ensure_embedded_server(pgdata: Path | None = None) -> URL:
    """Start (or attach to) the embedded Postgres; the URL of the pipeline's own role."""
    return _ensure_embedded_server((pgdata or settings.embedded_pgdata()).resolve())[1]


def embedded_admin_url(pgdata: Path | None = None) -> URL:
    """The superuser URL of the embedded server, for administration (and tests that create
    databases); the pipeline never uses it."""
    return _ensure_embedded_server((pgdata or settings.embedded_pgdata()).resolve())[0]


@cache  # once per process and data dir: attaching takes pgserver's file lock and a status check
def _ensure_embedded_server(pgdata: Path) -> tuple[URL, URL]:
    import pgserver  # deferred: only the embedded path needs it

    pgdata.mkdir(parents=True, exist_ok=True, mode=0o700)
    closed = _closed_parents(pgdata)
    server = pgserver.get_server(pgdata, cleanup_mode=None)
    loosened = [p for p in closed if p.stat().st_mode & stat.S_IXOTH]
    if loosened:  # as root, pgserver runs Postgres as its own user, which must reach pgdata
        _logger.warning(
            "the embedded Postgres runs as the unprivileged 'pgserver' user, so pgserver made "
            "these folders traversable by other users (o+rx): %s. Their contents keep their "
            "own permissions; on a shared host set DATABASE_URL instead (see SECURITY.md).",
            ", ".join(str(p) for p in loosened),
        )
    admin = to_sqlalchemy_url(server.get_uri())
    return admin, _pipeline_url(pgdata, admin)


def _closed_parents(path: Path) -> list[Path]:
    return [p for p in path.parents if p.exists() and not p.stat().st_mode & stat.S_IXOTH]


def _pipeline_url(pgdata: Path, admin: URL) -> URL:
    """A login role without superuser rights, with a password, for the pipeline.

    The server's own superuser (trust auth on its socket) can run programs (COPY ... FROM
    PROGRAM); the pipeline needs none of that. Its password is kept in a 0600 file beside pgdata
    and checked (scram-sha-256) by a pg_hba rule placed before pgserver's trust rules.
    """
    import psycopg
    from psycopg import sql

    credentials = pgdata.parent / CREDENTIALS_FILE
    if credentials.exists():
        password = credentials.read_text().strip()
    else:
        password = secrets.token_urlsafe(32)
        fd = os.open(credentials, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(password)
    role = sql.Identifier(PIPELINE_ROLE)
    with psycopg.connect(to_libpq_url(admin), autocommit=True) as conn:
        exists = conn.execute(
            "SELECT 1 FROM pg_roles WHERE rolname = %s", (PIPELINE_ROLE,)
        ).fetchone()
        verb = sql.SQL("ALTER") if exists else sql.SQL("CREATE")
        conn.execute(
            sql.SQL("{} ROLE {} LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE PASSWORD {}").format(
                verb, role, sql.Literal(password)
            )
        )
        conn.execute(
            sql.SQL("GRANT CONNECT, CREATE ON DATABASE {} TO {}").format(
                sql.Identifier(admin.database or DATABASE_NAME), role
            )
        )
        conn.execute(_ADOPT_SCHEMAS.replace("ROLE_NAME", PIPELINE_ROLE))
        if _require_password(pgdata / "pg_hba.conf"):
            conn.execute("SELECT pg_reload_conf()")
    return admin.set(username=PIPELINE_ROLE, password=password)


# Schemas an earlier version created as the superuser move to the pipeline's role, with their
# tables, views and sequences, so upgrading keeps every row reachable.
_ADOPT_SCHEMAS = """
DO $$ DECLARE r record; BEGIN
  FOR r IN SELECT nspname FROM pg_namespace WHERE nspowner = (SELECT oid FROM pg_roles
      WHERE rolname = current_user) AND nspname NOT IN ('public', 'information_schema')
      AND nspname NOT LIKE 'pg\\_%' LOOP
    EXECUTE format('ALTER SCHEMA %I OWNER TO ROLE_NAME', r.nspname);
  END LOOP;
  FOR r IN SELECT n.nspname, c.relname, c.relkind FROM pg_class c
      JOIN pg_namespace n ON n.oid = c.relnamespace
      WHERE n.nspowner = (SELECT oid FROM pg_roles WHERE rolname = 'ROLE_NAME')
      AND c.relowner <> n.nspowner AND c.relkind IN ('r', 'p', 'v', 'S') LOOP
    EXECUTE format('ALTER %s %I.%I OWNER TO ROLE_NAME',
      CASE r.relkind WHEN 'v' THEN 'VIEW' WHEN 'S' THEN 'SEQUENCE' ELSE 'TABLE' END,
      r.nspname, r.relname);
  END LOOP;
END $$
"""


def _require_password(hba: Path) -> bool:
    """Put the pipeline role's password rule first in pg_hba.conf; True when it changed."""
    rule = f"local all {PIPELINE_ROLE} scram-sha-256"
    lines = hba.read_text().splitlines()
    if rule in lines:
        return False
    hba.write_text("\n".join(["# bsky_assets: the pipeline role logs in with a password", rule,
                               *lines]) + "\n")  # fmt: skip
    return True


def stop_embedded_server(pgdata: Path) -> None:
    """Stop a server started by `ensure_embedded_server` (tests use this to clean up)."""

    _ensure_embedded_server.cache_clear()
    if (pgdata / "postmaster.pid").exists():
        _pg_ctl(pgdata, "stop")


def restart_embedded_server(pgdata: Path) -> None:
    """Restart the embedded server in place (fast shutdown: every connection is cut), as an
    operator's restart or a failover would; the fault tests use it."""
    _pg_ctl(pgdata, "restart")


def _pg_ctl(pgdata: Path, action: str) -> None:
    import pgserver

    ctl = Path(pgserver.__file__).parent / "pginstall" / "bin" / "pg_ctl"
    command = [str(ctl), "-D", str(pgdata), "-m", "fast", "-w", action]
    if os.geteuid() == 0:  # pgserver runs the server as the unprivileged 'pgserver' user
        command = ["su", "pgserver", "-s", "/bin/sh", "-c", shlex.join(command)]
    # Not captured: a restarted postmaster inherits pg_ctl's stdout and stderr, so a captured
    # pipe never reaches EOF and the call hangs until its timeout although Postgres is up.
    subprocess.run(
        command, check=False, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=120
    )


def psql_executable() -> str | None:
    """A psql binary: the system's if installed, else the one pgserver ships."""
    from shutil import which

    found = which("psql")
    if found:
        return found
    try:
        import pgserver
    except ImportError:
        return None
    bundled = Path(pgserver.__file__).parent / "pginstall" / "bin" / "psql"
    return str(bundled) if bundled.exists() else None


def to_sqlalchemy_url(url: str | URL) -> URL:
    """Normalise any Postgres URL to the explicit psycopg 3 driver.

    SQLAlchemy 2.1 maps a bare `postgresql://` to psycopg 3 already, but the project writes the
    driver explicitly so the URL means the same under every SQLAlchemy version and in tools
    (dagster-postgres, psql) that read it.
    """
    parsed = make_url(url) if isinstance(url, str) else url
    if parsed.get_backend_name() not in ("postgresql", "postgres"):
        raise ValueError(
            f"DATABASE_URL must point at Postgres, got a {parsed.get_backend_name()!r} URL"
        )
    return parsed.set(drivername="postgresql+psycopg")


def to_libpq_url(url: URL) -> str:
    """The same URL in the form psql and libpq accept (no SQLAlchemy driver suffix)."""
    return url.set(drivername="postgresql").render_as_string(hide_password=False)


def psql_invocation(
    psql: str, url: URL, schema: str, extra: tuple[str, ...] = ()
) -> tuple[list[str], dict[str, str]]:
    """psql's command line and environment: the password goes through PGPASSWORD, never the
    command line (which every user of the machine can read in `ps`)."""
    env = {**os.environ, "PGOPTIONS": f"-c search_path={schema},public"}
    if url.password:
        env["PGPASSWORD"] = url.password
        # URL.set(password=None) keeps the password: build the URL without one.
        url = URL.create(url.drivername, url.username, None, url.host, url.port, url.database,
                         url.query)  # fmt: skip
    return [psql, to_libpq_url(url), *extra], env
