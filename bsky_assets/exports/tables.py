"""What each exported day's files hold and where they went."""

from __future__ import annotations

import polars as pl

from bsky_assets.lib.db.tables import PARTITION, PARTITION_COLUMN, UTC_TIMESTAMP, TableSpec, col

EXPORT_FILES = TableSpec(
    name="export_files",
    columns=(
        PARTITION,
        col("destination", "text", pl.String(), nullable=False),  # a URL, never credentials
        col("dataset", "text", pl.String(), nullable=False),
        col("fingerprint", "text", pl.String(), nullable=False),
        col("rows", "bigint", pl.Int64(), nullable=False),
        col("bytes", "bigint", pl.Int64(), nullable=False),
        col("labelers", "jsonb", pl.String(), nullable=False),  # rows by labeller, emulated
        col("exported_at", "timestamptz", UTC_TIMESTAMP, nullable=False),
    ),
    primary_key=(PARTITION_COLUMN, "destination", "dataset"),
)
