"""The labelling engine's tables: the shape every label table shares (`label_table`), the
registry of label sets, the labeller preferences behind the `*_preferred` views, and the lease
that keeps one run at a time on a day."""

from __future__ import annotations

import polars as pl

from bsky_assets.lib.db.tables import (
    PARTITION,
    PARTITION_COLUMN,
    UTC_TIMESTAMP,
    Column,
    TableSpec,
    WriteMode,
    col,
)

LABEL_SET = col(
    "label_set",
    "text",
    pl.String(),
    nullable=False,
    description="id of the labeller configuration that wrote the row (label_sets)",
)


def label_table(name: str, columns: tuple[Column, ...]) -> TableSpec:
    """A label table: the common columns, then the asset's own labels and provenance."""
    return TableSpec(
        name=name,
        columns=(
            PARTITION,
            col("uri", "text", pl.String(), nullable=False, description="the post's at:// URI"),
            LABEL_SET,
            col(
                "was_successfully_labeled",
                "boolean",
                pl.Boolean(),
                nullable=False,
                description="true: the labels are filled; false: see reason",
            ),
            col(
                "reason",
                "text",
                pl.String(),
                description="why the post has no labels (invalid, refused, failed)",
            ),
            col(
                "retryable",
                "boolean",
                pl.Boolean(),
                nullable=False,
                description="a failure the next run sends again",
            ),
            col("attempts", "integer", pl.Int32(), description="requests the post took"),
            col(
                "label_timestamp",
                "timestamptz",
                UTC_TIMESTAMP,
                nullable=False,
                description="when the row was written (UTC)",
            ),
            col(
                "text_sha256",
                "text",
                pl.String(),
                description="sha256 of the exact text that was labelled",
            ),
            *columns,
        ),
        primary_key=(PARTITION_COLUMN, "uri", "label_set"),
        write_mode=WriteMode.UPSERT,
        indexes=(("label_set",),),
    )


LABEL_SETS = TableSpec(
    name="label_sets",
    columns=(
        LABEL_SET,
        col("label_table", "text", pl.String(), nullable=False),
        col("labeler", "text", pl.String(), nullable=False),
        col("labeler_version", "text", pl.String(), nullable=False),
        col("emulated", "boolean", pl.Boolean(), nullable=False),
        col("details", "jsonb", pl.String(), nullable=False),
        col("first_used", "timestamptz", UTC_TIMESTAMP, nullable=False, default_sql="now()"),
    ),
    primary_key=("label_set",),
)


LABELER_PREFERENCES = TableSpec(
    name="labeler_preferences",
    columns=(
        col("label_table", "text", pl.String(), nullable=False),
        col("labeler_pattern", "text", pl.String(), nullable=False),
        col("rank", "integer", pl.Int32(), nullable=False),
    ),
    primary_key=("label_table", "labeler_pattern"),
)


LABELLING_LEASES = TableSpec(
    # Who is labelling a day into a table right now: a row with a heartbeat, so a restart of the
    # database (which drops every session and advisory lock) does not free the day for a second
    # run while the first still has posts in flight. See lib/labelling/lease.py.
    name="labelling_leases",
    columns=(
        PARTITION,
        col("label_table", "text", pl.String(), nullable=False),
        col("holder", "text", pl.String(), nullable=False),
        col("acquired_at", "timestamptz", UTC_TIMESTAMP, nullable=False),
        col("heartbeat_at", "timestamptz", UTC_TIMESTAMP, nullable=False),
    ),
    primary_key=(PARTITION_COLUMN, "label_table"),
)
