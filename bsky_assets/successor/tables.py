"""The successor's tables: Google-scored history, its imports, distilled models, and the
embedding cache."""

from __future__ import annotations

import polars as pl

from bsky_assets.lib.db.tables import UTC_TIMESTAMP, TableSpec, col

PERSPECTIVE_HISTORY = TableSpec(
    name="perspective_history",
    columns=(
        col("text_sha256", "text", pl.String(), nullable=False),
        col("attribute", "text", pl.String(), nullable=False),
        col("score", "double precision", pl.Float64(), nullable=False),
        col("text", "text", pl.String(), nullable=False),
        col("scored_at", "timestamptz", UTC_TIMESTAMP),
        col("source", "text", pl.String(), nullable=False),
        col("imported_at", "timestamptz", UTC_TIMESTAMP, nullable=False, default_sql="now()"),
    ),
    primary_key=("text_sha256", "attribute"),
)


PERSPECTIVE_HISTORY_IMPORTS = TableSpec(
    name="perspective_history_imports",
    columns=(
        col("file_sha256", "text", pl.String(), nullable=False),
        col("source", "text", pl.String(), nullable=False),
        col("imported_at", "timestamptz", UTC_TIMESTAMP, nullable=False),
        col("rows_read", "integer", pl.Int32(), nullable=False),
        col("scores_added", "integer", pl.Int32(), nullable=False),
        col("rejects", "jsonb", pl.String(), nullable=False),
        col("column_map", "jsonb", pl.String(), nullable=False),
    ),
    primary_key=("file_sha256", "imported_at"),
)


SUCCESSOR_MODELS = TableSpec(
    name="perspective_successor_models",
    columns=(
        col("model_id", "text", pl.String(), nullable=False),
        col("created_at", "timestamptz", UTC_TIMESTAMP, nullable=False),
        col("path", "text", pl.String(), nullable=False),
        col("method", "text", pl.String(), nullable=False),
        col("tier", "text", pl.String()),  # fast | full (null: models from before the tiers)
        col("training_rows", "integer", pl.Int32(), nullable=False),
        col("evaluation", "jsonb", pl.String(), nullable=False),
    ),
    primary_key=("model_id",),
)

# Sentence embeddings of the successor's full tier, by encoder and text: nothing is encoded twice.


# Sentence embeddings of the successor's full tier, by encoder and text: nothing is encoded twice.
SUCCESSOR_EMBEDDINGS = TableSpec(
    name="successor_embeddings",
    columns=(
        col("encoder_sha256", "text", pl.String(), nullable=False),
        col("text_sha256", "text", pl.String(), nullable=False),
        col("embedding", "bytea", pl.String(), nullable=False),  # float32 bytes, hex on COPY
    ),
    primary_key=("encoder_sha256", "text_sha256"),
)
