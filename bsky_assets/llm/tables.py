"""The Batch API's bookkeeping: which batch holds which posts, recorded before any wait."""

from __future__ import annotations

import polars as pl

from bsky_assets.lib.db.tables import UTC_TIMESTAMP, TableSpec, WriteMode, col

LLM_BATCHES = TableSpec(
    name="llm_batches",
    columns=(
        col("partition_date", "date", pl.Date(), nullable=False),
        col("request_file", "text", pl.String(), nullable=False),
        col("label_set", "text", pl.String(), nullable=False),
        col("requests", "integer", pl.Int32(), nullable=False),
        col("posts", "integer", pl.Int32(), nullable=False),
        col("input_file_id", "text", pl.String()),
        col("batch_id", "text", pl.String()),
        col("status", "text", pl.String(), nullable=False),
        col("request_counts", "jsonb", pl.String()),
        col("created_at", "timestamptz", UTC_TIMESTAMP, nullable=False, default_sql="now()"),
        col("collected_at", "timestamptz", UTC_TIMESTAMP),
    ),
    primary_key=("partition_date", "request_file"),
)


LLM_BATCH_REQUESTS = TableSpec(
    name="llm_batch_requests",
    columns=(
        col("partition_date", "date", pl.Date(), nullable=False),
        col("request_file", "text", pl.String(), nullable=False),
        col("custom_id", "text", pl.String(), nullable=False),
        col("prompt_id", "text", pl.String(), nullable=False),
        col("uri", "text", pl.String(), nullable=False),
        col("label_set", "text", pl.String(), nullable=False),
        col("text_sha256", "text", pl.String(), nullable=False),  # the text the prompt carries
    ),
    primary_key=("partition_date", "request_file", "custom_id", "prompt_id"),
    write_mode=WriteMode.INSERT_MISSING,
    indexes=(("partition_date", "label_set", "uri"),),
)
