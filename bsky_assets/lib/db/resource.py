"""The database resource: which Postgres, which schema."""

from __future__ import annotations

import dagster as dg
from pydantic import Field

from bsky_assets.lib.db.client import PostgresClient
from bsky_assets.lib.db.connection import connect


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
        return connect(self.database_url, self.db_schema)
