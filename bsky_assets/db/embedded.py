"""The embedded default database: a Postgres the project starts itself when DATABASE_URL is unset.

pgserver ships Postgres binaries in its wheel (and drops to an unprivileged user when run as
root), so a fresh machine needs no system Postgres. The server is left running after the process
exits (`cleanup_mode=None`): Dagster starts a process per run, and each must find the same server.
"""

from __future__ import annotations

import os
import subprocess
from functools import cache
from pathlib import Path

from sqlalchemy.engine import URL, make_url

from bsky_assets import settings

DATABASE_NAME = "postgres"


def ensure_embedded_server(pgdata: Path | None = None) -> URL:
    """Start (or attach to) the embedded Postgres and return its SQLAlchemy URL."""
    return _ensure_embedded_server((pgdata or settings.embedded_pgdata()).resolve())


@cache  # once per process and data dir: attaching takes pgserver's file lock and a status check
def _ensure_embedded_server(pgdata: Path) -> URL:
    import pgserver  # deferred: only the embedded path needs it

    pgdata.mkdir(parents=True, exist_ok=True)
    server = pgserver.get_server(pgdata, cleanup_mode=None)
    return to_sqlalchemy_url(server.get_uri())


def stop_embedded_server(pgdata: Path) -> None:
    """Stop a server started by `ensure_embedded_server` (tests use this to clean up)."""
    import pgserver

    _ensure_embedded_server.cache_clear()
    ctl = Path(pgserver.__file__).parent / "pginstall" / "bin" / "pg_ctl"
    if not (pgdata / "postmaster.pid").exists():
        return
    command = [str(ctl), "-D", str(pgdata), "-m", "fast", "-w", "stop"]
    if os.geteuid() == 0:  # pgserver runs the server as the unprivileged 'pgserver' user
        command = ["su", "pgserver", "-s", "/bin/sh", "-c", " ".join(command)]
    subprocess.run(command, check=False, capture_output=True)


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
