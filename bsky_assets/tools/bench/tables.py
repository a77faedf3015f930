"""The benchmark's own table: what the seed's method wrote, beside ours."""

from __future__ import annotations

import polars as pl

from bsky_assets.lib.db.tables import UTC_TIMESTAMP, TableSpec, col

SEED_BASELINE_LABELS = TableSpec(
    name="seed_baseline_labels",
    columns=(
        col("uri", "text", pl.String(), nullable=False),
        col("prob_toxic", "double precision", pl.Float64()),
        col("label_timestamp", "timestamptz", UTC_TIMESTAMP),
    ),
    primary_key=("uri",),
)
