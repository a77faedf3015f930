"""The posts domain's tables: every landed post of a day, the lines that could not be used,
what is classified, and which posts may be sent to the labellers."""

from __future__ import annotations

import polars as pl

from bsky_assets.lib.db.tables import (
    PARTITION,
    PARTITION_COLUMN,
    UTC_TIMESTAMP,
    TableSpec,
    WriteMode,
    col,
)

PREPROCESSED_POSTS = TableSpec(
    name="preprocessed_posts",
    columns=(
        PARTITION,
        col("uri", "text", pl.String(), nullable=False, description="the post's at:// URI"),
        col(
            "batch_id",
            "text",
            pl.String(),
            nullable=False,
            description="the landing batch the post was read from (newest wins)",
        ),
        col("source_file", "text", pl.String(), nullable=False),
        col("line_number", "integer", pl.Int32(), nullable=False),
        col("text", "text", pl.String(), nullable=False, description="the post's text"),
        col(
            "created_at",
            "timestamptz",
            UTC_TIMESTAMP,
            nullable=False,
            description="when the post says it was created (UTC)",
        ),
        col(
            "preprocessing_timestamp",
            "timestamptz",
            UTC_TIMESTAMP,
            nullable=False,
            description="when the research group's preprocessing wrote the post (UTC)",
        ),
        col("cid", "text", pl.String(), description="the content id of the post's record"),
        col("author_did", "text", pl.String(), description="the author's DID"),
        col("author_handle", "text", pl.String(), description="the author's handle"),
        col("indexed_at", "text", pl.String(), description="when the feed indexed the post"),
        col("langs", "jsonb", pl.String(), description="the post's languages, a JSON list"),
        col("reply_parent", "text", pl.String(), description="URI of the post replied to"),
        col("reply_root", "text", pl.String(), description="URI of the thread's first post"),
        col("like_count", "bigint", pl.Int64(), description="likes when preprocessed"),
        col("reply_count", "bigint", pl.Int64(), description="replies when preprocessed"),
        col("repost_count", "bigint", pl.Int64(), description="reposts when preprocessed"),
        col("source", "text", pl.String(), description="where the group collected the post"),
    ),
    primary_key=(PARTITION_COLUMN, "uri"),
    keep_latest_by=("preprocessing_timestamp", "batch_id", "line_number"),
    indexes=(("uri",),),  # lets a day's check look up its uris in other days without a scan
)


LANDING_REJECTS = TableSpec(
    name="landing_rejects",
    columns=(
        PARTITION,
        col("source_file", "text", pl.String(), nullable=False),
        col("line_number", "integer", pl.Int32(), nullable=False),
        col("reason", "text", pl.String(), nullable=False),
        col("detail", "text", pl.String()),
        col("raw_line", "text", pl.String()),
    ),
    primary_key=(PARTITION_COLUMN, "source_file", "line_number"),
)


CLASSIFICATION_METADATA = TableSpec(
    name="classification_metadata",
    columns=(
        PARTITION,
        col("uri", "text", pl.String(), nullable=False),
        col("batch_id", "text", pl.String(), nullable=False),
        col("preprocessing_timestamp", "timestamptz", UTC_TIMESTAMP, nullable=False),
        col("text_length", "integer", pl.Int32(), nullable=False),
        col("langs", "jsonb", pl.String()),
        col("first_seen", "timestamptz", UTC_TIMESTAMP, nullable=False, default_sql="now()"),
    ),
    primary_key=(PARTITION_COLUMN, "uri"),
    write_mode=WriteMode.INSERT_MISSING,
    keep_latest_by=("preprocessing_timestamp",),
)


VALID_POSTS = TableSpec(
    name="valid_posts",
    columns=(
        PARTITION,
        col("uri", "text", pl.String(), nullable=False),
        col("batch_id", "text", pl.String(), nullable=False),
        col("text", "text", pl.String(), nullable=False),
        col("langs", "jsonb", pl.String()),
        col(
            "is_valid",
            "boolean",
            pl.Boolean(),
            nullable=False,
            description="whether the post may be sent to the labellers",
        ),
        col(
            "invalid_reason",
            "text",
            pl.String(),
            description="text_too_short or text_too_long when not valid",
        ),
    ),
    primary_key=(PARTITION_COLUMN, "uri"),
)
