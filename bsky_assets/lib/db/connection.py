"""The database in use: an explicit URL, else DATABASE_URL, else the embedded Postgres.

One function for every caller (the Dagster resource, the commands), so none of them needs the
others' wiring. The URL is read at call time, never stored in run config.
"""

from __future__ import annotations

from sqlalchemy.engine import URL

from bsky_assets import settings
from bsky_assets.lib.db.client import PostgresClient
from bsky_assets.lib.db.embedded import ensure_embedded_server, to_sqlalchemy_url


def resolve_database_url(configured: str | None = None) -> URL:
    """The configured URL, else `DATABASE_URL`, else the embedded server (started if needed)."""
    url = configured or settings.database_url()
    return to_sqlalchemy_url(url) if url else ensure_embedded_server()


def connect(database_url: str | None = None, schema: str | None = None) -> PostgresClient:
    """A client on the database in use, in the project's schema (BSKY_DB_SCHEMA, else bsky)."""
    return PostgresClient(resolve_database_url(database_url), schema or settings.db_schema())
