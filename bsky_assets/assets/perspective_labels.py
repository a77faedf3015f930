"""perspective_labels: toxicity and bridging scores for every valid post of the day."""

import contextlib
import json
import time
from datetime import date
from importlib.metadata import version

import dagster as dg
import polars as pl

from bsky_assets.assets import plots
from bsky_assets.assets.labelling import (
    NOT_SENT_LABELER,
    LabelWriter,
    count_pending,
    label_table,
    partition_outcomes,
    pending_posts,
    write_invalid_post_rows,
)
from bsky_assets.assets.posts import valid_posts
from bsky_assets.db.client import PostgresClient, execute
from bsky_assets.db.tables import Column, register
from bsky_assets.partitions import daily_partitions, one_run_per_day
from bsky_assets.perspective.attributes import PROB_COLUMNS, AttributeSet
from bsky_assets.perspective.client import Comment, CommentResult
from bsky_assets.resources.perspective import PerspectiveResource
from bsky_assets.resources.postgres import PostgresResource

PERSPECTIVE_LABELS = register(
    label_table(
        "perspective_labels",
        (
            *(Column(c, "double precision", pl.Float64()) for c in PROB_COLUMNS),
            Column("unscored_attributes", "text", pl.String()),
            Column("labeler", "text", pl.String(), nullable=False),
            Column("labeler_version", "text", pl.String(), nullable=False),
            Column("attribute_set", "text", pl.String(), nullable=False),
        ),
    )
)


def record_attribute_set(client: PostgresClient, attribute_set: AttributeSet) -> None:
    """Keep the column → attribute mapping behind each attribute_set id queryable in SQL."""
    table = client.qualified("perspective_attribute_sets")
    execute(
        client,
        f"CREATE TABLE IF NOT EXISTS {table} (attribute_set text PRIMARY KEY, "
        "column_sources jsonb NOT NULL, aliases jsonb NOT NULL)",
    )
    aliases = {"prob_constructive": "REASONING_EXPERIMENTAL (CONSTRUCTIVE_EXPERIMENTAL retired)"}
    execute(
        client,
        f"INSERT INTO {table} VALUES (%s, %s, %s) ON CONFLICT DO NOTHING",
        (attribute_set.id, json.dumps(attribute_set.column_sources), json.dumps(aliases)),
    )


def toxicity_histogram(client: PostgresClient, day: date, bins: int = 20) -> dg.MetadataValue:
    rows = client.fetch_all(
        f"SELECT least(width_bucket(prob_toxic, 0, 1, %s), %s), count(*) "
        f"FROM {client.qualified(PERSPECTIVE_LABELS.name)} "
        "WHERE partition_date = %s AND prob_toxic IS NOT NULL GROUP BY 1",
        (bins, bins, day),
    )
    counts = [0] * bins
    for bucket, n in rows:
        counts[int(bucket) - 1] = int(n)
    return plots.histogram(counts, f"prob_toxic, {day}", "prob_toxic")


def label_row(result: CommentResult, attribute_set: AttributeSet) -> dict:
    row: dict = {
        "uri": result.key,
        "was_successfully_labeled": result.scores is not None,
        "reason": result.reason,
        "retryable": result.retryable,
        "attempts": result.attempts,
        "unscored_attributes": ",".join(result.unscored) or None,
    }
    row.update(attribute_set.columns_from_scores(result.scores or {}))
    return row


@dg.asset(
    deps=[valid_posts],
    partitions_def=daily_partitions,
    backfill_policy=one_run_per_day,
    pool="perspective_api",
    group_name="labels",
    kinds={"postgres", "api"},
)
def perspective_labels(
    context: dg.AssetExecutionContext,
    postgres: PostgresResource,
    perspective: PerspectiveResource,
) -> dg.MaterializeResult:
    """Perspective scores (22 prob_* columns) per valid post; failed rows say why.

    Invalid posts get failed rows first; then only posts without a final row are sent, and each
    completed batch is written at once, so re-runs resume and never duplicate.
    """
    perspective.check_ready()
    day = date.fromisoformat(context.partition_key)
    db = postgres.get_client()
    api = perspective.get_client()
    attribute_set = api.settings.attribute_set
    record_attribute_set(db, attribute_set)
    provenance = {
        "labeler": api.labeler,
        "labeler_version": api.labeler_version,
        "attribute_set": attribute_set.id,
    }
    not_sent = {
        **provenance,
        "labeler": NOT_SENT_LABELER,
        "labeler_version": version("bsky_assets"),
    }
    invalid_rows = write_invalid_post_rows(db, PERSPECTIVE_LABELS, day, not_sent)
    pending = count_pending(db, PERSPECTIVE_LABELS, day)
    context.log.info(f"{pending} posts to label with {api.labeler} {api.labeler_version}")

    writer = LabelWriter(db, PERSPECTIVE_LABELS, day, provenance)
    started = time.monotonic()
    with contextlib.closing(pending_posts(db, PERSPECTIVE_LABELS, day)) as frames:
        comments = (
            Comment(uri, text)
            for frame in frames
            for uri, text in zip(frame["uri"], frame["text"], strict=True)
        )
        for results in api.analyze(comments):
            writer.write([label_row(r, attribute_set) for r in results])
    seconds = time.monotonic() - started

    stats = api.stats.as_dict()
    return dg.MaterializeResult(
        metadata={
            "labeler": api.labeler,
            "labeler_version": api.labeler_version,
            "attribute_set": attribute_set.id,
            "invalid_posts_marked": invalid_rows,
            "posts_sent": writer.rows_written,
            "this_run": dict(writer.outcomes),
            "partition_outcomes": partition_outcomes(db, PERSPECTIVE_LABELS, day),
            "api_requests": stats["http_requests"],
            "parts_sent": stats["parts_sent"],
            "retried_parts": stats["retried_parts"],
            "status_429": stats["status_429"],
            "status_5xx": stats["status_5xx"],
            "achieved_parts_per_second": round(stats["parts_sent"] / seconds, 2) if seconds else 0,
            "configured_parts_per_second": perspective.requests_per_second,
            "duration_seconds": round(seconds, 2),
            "posts_per_second": round(writer.rows_written / seconds, 2) if seconds else 0,
            "prob_toxic_distribution": toxicity_histogram(db, day),
        }
    )
