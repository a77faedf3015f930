"""The database resource: which Postgres, which schema."""

from __future__ import annotations

import dagster as dg
from pydantic import Field
from sqlalchemy.engine import URL

from bsky_assets import settings
from bsky_assets.db.client import PostgresClient
from bsky_assets.db.embedded import ensure_embedded_server, to_sqlalchemy_url


def resolve_database_url(configured: str | None = None) -> URL:
    """The configured URL, else `DATABASE_URL`, else the embedded server (started if needed)."""
    url = configured or settings.database_url()
    return to_sqlalchemy_url(url) if url else ensure_embedded_server()


class PostgresResource(dg.ConfigurableResource):
    """Postgres holding every asset table.

    The URL is read at run time rather than stored in run config, so a password in DATABASE_URL
    never lands in Dagster's event log or UI.
    """

    database_url: str | None = Field(
        default=None,
        description="Explicit URL; if unset DATABASE_URL is used, else the embedded Postgres.",
    )
    db_schema: str | None = Field(
        default=None,
        description="Schema holding the asset tables; unset: BSKY_DB_SCHEMA, else 'bsky'.",
    )

    def get_client(self) -> PostgresClient:
        schema = self.db_schema or settings.db_schema()
        return PostgresClient(resolve_database_url(self.database_url), schema)
