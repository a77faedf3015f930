"""Perspective's tables: the scores per post and label set, what each attribute set maps, and
the per-day agreement between labelers."""

from __future__ import annotations

import polars as pl

from bsky_assets.lib.db.tables import PARTITION, PARTITION_COLUMN, TableSpec, col
from bsky_assets.lib.labelling.tables import label_table
from bsky_assets.perspective.attributes import COLUMN_ALIASES, PROB_COLUMNS

PERSPECTIVE_LABELS = label_table(
    "perspective_labels",
    (
        *(col(c, "double precision", pl.Float64()) for c in PROB_COLUMNS),
        col(
            "unscored_attributes",
            "text",
            pl.String(),
            description="attributes the labeller could not score: their columns are null",
        ),
        col(
            "labeler",
            "text",
            pl.String(),
            nullable=False,
            description="who scored the row: google-perspective-api, or a compatible "
            "server's declared scorer (e.g. a distilled successor)",
        ),
        col(
            "labeler_version",
            "text",
            pl.String(),
            nullable=False,
            description="v1alpha1 for Google's API; the model id for a distilled successor",
        ),
        col(
            "attribute_set",
            "text",
            pl.String(),
            nullable=False,
            description="id of the column → attribute mapping (perspective_attribute_sets)"
            + "".join(f"; {c} is filled from {a}" for c, a in COLUMN_ALIASES.items()),
        ),
    ),
)


PERSPECTIVE_ATTRIBUTE_SETS = TableSpec(
    name="perspective_attribute_sets",
    columns=(
        col("attribute_set", "text", pl.String(), nullable=False),
        col("column_sources", "jsonb", pl.String(), nullable=False),
        col("aliases", "jsonb", pl.String(), nullable=False),
    ),
    primary_key=("attribute_set",),
)


PERSPECTIVE_AGREEMENT = TableSpec(
    name="perspective_agreement",
    columns=(
        PARTITION,
        col("reference_label_set", "text", pl.String(), nullable=False),
        col("other_label_set", "text", pl.String(), nullable=False),
        col("column_name", "text", pl.String(), nullable=False),
        col("reference_labeler", "text", pl.String(), nullable=False),
        col("other_labeler", "text", pl.String(), nullable=False),
        col("n", "integer", pl.Int32(), nullable=False),
        col("spearman", "double precision", pl.Float64()),
        col("pearson", "double precision", pl.Float64()),
        col("mae", "double precision", pl.Float64()),
        col("reference_positives", "integer", pl.Int32(), nullable=False),
        col("auc", "double precision", pl.Float64()),
        # prevalence at 0.5 and agreement on it (null in rows written before they existed)
        col("reference_share", "double precision", pl.Float64()),
        col("other_share", "double precision", pl.Float64()),
        col("kappa", "double precision", pl.Float64()),
    ),
    primary_key=(PARTITION_COLUMN, "reference_label_set", "other_label_set", "column_name"),
)
