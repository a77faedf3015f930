"""The embedded default database: a Postgres the project starts itself when DATABASE_URL is unset.

pgserver ships Postgres binaries in its wheel (and drops to an unprivileged user when run as
root), so a fresh machine needs no system Postgres. The server is left running after the process
exits (`cleanup_mode=None`): Dagster starts a process per run, and each must find the same server.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import secrets
import shlex
import stat
import subprocess
import time
from functools import cache
from pathlib import Path
from types import ModuleType

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


def _pgserver() -> ModuleType:
    """pgserver, imported without its RuntimeDirWarning: its class body asks platformdirs for
    a runtime dir, which warns when XDG_RUNTIME_DIR is unset (any non-login shell, CI,
    containers) and falls back to /tmp; nothing the user must act on."""
    import warnings

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*XDG_RUNTIME_DIR")
        import pgserver
    return pgserver


@cache  # once per process and data dir: attaching takes pgserver's file lock and a status check
def _ensure_embedded_server(pgdata: Path) -> tuple[URL, URL]:
    pgserver = _pgserver()  # deferred: only the embedded path needs it

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


def embedded_pgdata_of(url: URL) -> Path | None:
    """The data folder of the embedded server `url` points at, or None for any other Postgres.

    pgserver listens on a socket inside its data folder; the project keeps the pipeline role's
    credentials beside that folder. Both must be there: a system Postgres is never touched."""
    host = url.query.get("host")
    if not isinstance(host, str) or not host.startswith("/"):
        return None
    pgdata = Path(host)
    if (pgdata / "PG_VERSION").is_file() and (pgdata.parent / CREDENTIALS_FILE).is_file():
        return pgdata
    return None


def postmaster_alive(pgdata: Path) -> bool | None:
    """True while the server's postmaster runs, False when it died (postmaster.pid left behind
    by a crash, kill -9, the OOM killer), None when it was stopped (a clean stop removes the
    file; so does a restart in progress): only a crashed server is started again."""
    import psutil

    try:
        pid = int((pgdata / "postmaster.pid").read_text().split()[0])
    except FileNotFoundError:
        return None
    except (ValueError, IndexError):
        return False
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def revive_embedded_server(pgdata: Path, wait_seconds: float = 60.0) -> bool:
    """Start the embedded server again if its postmaster died; True when it runs again.

    Called from the client's reconnect path, so a step whose database crashed finishes instead
    of retrying against nothing. Processes that notice together take turns on a file lock, and
    Postgres's own lock-file check refuses to start while anything of the dead server remains
    (a zombie postmaster, a backend still attached to its shared memory): then it is tried again
    until `wait_seconds` have passed."""
    lock_path = pgdata.parent / ".postgres-revive.lock"
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        deadline = time.monotonic() + wait_seconds
        while True:
            alive = postmaster_alive(pgdata)
            if alive is None:
                return False  # stopped on purpose, or being restarted by someone else
            if alive:
                return True  # another process started it meanwhile
            if _start_in_place(pgdata):
                _logger.warning("the embedded Postgres in %s had died; started it again", pgdata)
                _ensure_embedded_server.cache_clear()
                return True
            if time.monotonic() > deadline:
                _logger.error("the embedded Postgres in %s died and would not start", pgdata)
                return False
            time.sleep(0.5)
    finally:
        with contextlib.suppress(OSError):
            fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


def _start_in_place(pgdata: Path) -> bool:
    """pg_ctl start as pgserver starts the server (no TCP, the socket in the folder the dead
    server used, so every URL still points at it), its output to the server's log; True once
    it accepts connections."""
    lines = (pgdata / "postmaster.pid").read_text().splitlines()
    socket_dir = lines[4].strip() if len(lines) > 4 and lines[4].strip() else str(pgdata)
    options = ["-o", '-h ""', "-o", f"-k {shlex.quote(socket_dir)}", "-l", str(pgdata / "log")]
    return _pg_ctl(pgdata, "start", *options).returncode == 0


def stop_embedded_server(pgdata: Path) -> None:
    """Stop a server started by `ensure_embedded_server` (tests use this to clean up)."""

    _ensure_embedded_server.cache_clear()
    if (pgdata / "postmaster.pid").exists():
        _pg_ctl(pgdata, "stop")


def restart_embedded_server(pgdata: Path) -> None:
    """Restart the embedded server in place (fast shutdown: every connection is cut), as an
    operator's restart or a failover would; the fault tests use it. Raises unless pg_ctl says
    the server is back."""
    done = _pg_ctl(pgdata, "restart", "-l", str(pgdata / "log"))
    if done.returncode != 0:
        raise RuntimeError(f"pg_ctl restart failed: {done.stderr.strip()[-500:]}")


def _pg_ctl(pgdata: Path, action: str, *options: str) -> subprocess.CompletedProcess[str]:
    """pg_ctl as the server's user. A server it starts writes to the log file given with
    `-l`, never to pg_ctl's output: that would keep our pipe open for the server's lifetime."""
    pgserver = _pgserver()

    ctl = Path(pgserver.__file__).parent / "pginstall" / "bin" / "pg_ctl"
    command = [str(ctl), "-D", str(pgdata), "-m", "fast", "-w", *options, action]
    if os.geteuid() == 0:  # pgserver runs the server as the unprivileged 'pgserver' user
        command = ["su", "pgserver", "-s", "/bin/sh", "-c", shlex.join(command)]
    return subprocess.run(
        command, check=False, stdin=subprocess.DEVNULL, capture_output=True, text=True,
        timeout=120,
    )  # fmt: skip


def psql_executable() -> str | None:
    """A psql binary: the system's if installed, else the one pgserver ships."""
    from shutil import which

    found = which("psql")
    if found:
        return found
    try:
        pgserver = _pgserver()
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
    env = {**settings.without_secrets(), "PGOPTIONS": f"-c search_path={schema},public"}
    if url.password:
        env["PGPASSWORD"] = url.password
        # URL.set(password=None) keeps the password: build the URL without one.
        url = URL.create(url.drivername, url.username, None, url.host, url.port, url.database,
                         url.query)  # fmt: skip
    return [psql, to_libpq_url(url), *extra], env
