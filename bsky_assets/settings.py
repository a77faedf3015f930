"""Where the project keeps its state, resolved from the environment.

Everything local (embedded Postgres, landing folder, DAGSTER_HOME) lives under one data dir so a
researcher can find it, back it up, or delete it. Defaults are relative to the working directory,
which is the repository root for the README's commands and for `dagster dev`.
"""

from __future__ import annotations

import os
from pathlib import Path

DEFAULT_SCHEMA = "bsky"


def data_dir() -> Path:
    """Root of all project-local state (`BSKY_DATA_DIR`, default `./.bsky`)."""
    return Path(os.environ.get("BSKY_DATA_DIR") or Path.cwd() / ".bsky").resolve()


def landing_dir() -> Path:
    """Folder researchers drop `<YYYY-MM-DD>/<batch_id>.jsonl[.gz]` files into."""
    configured = os.environ.get("BSKY_LANDING_DIR")
    return Path(configured).resolve() if configured else data_dir() / "landing"


def dagster_home() -> Path:
    """Project-local DAGSTER_HOME so run history and sensor cursors survive restarts."""
    configured = os.environ.get("DAGSTER_HOME")
    return Path(configured).resolve() if configured else data_dir() / "dagster_home"


def embedded_pgdata() -> Path:
    return data_dir() / "postgres"


def db_schema() -> str:
    return os.environ.get("BSKY_DB_SCHEMA") or DEFAULT_SCHEMA
