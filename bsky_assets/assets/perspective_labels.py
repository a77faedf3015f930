"""perspective_labels: toxicity and bridging scores for every valid post of the day."""

import contextlib
import json
import time
from datetime import date
from importlib.metadata import version
from typing import Any

import dagster as dg

from bsky_assets.assets import plots
from bsky_assets.assets.checks import PERSPECTIVE_CHECK_SPECS, column_coverage, perspective_checks
from bsky_assets.assets.label_metadata import markdown_cell, table_metadata
from bsky_assets.assets.label_sets import NOT_SENT_LABELER, LabelSet, ensure_label_table
from bsky_assets.assets.labelling import (
    LabelWriter,
    TextsInFlight,
    count_pending,
    one_labelling_run,
    partition_outcomes,
    pending_posts,
    write_invalid_post_rows,
)
from bsky_assets.assets.posts import valid_posts
from bsky_assets.assets.progress import Progress
from bsky_assets.db.client import PostgresClient
from bsky_assets.db.tables import PERSPECTIVE_ATTRIBUTE_SETS, PERSPECTIVE_LABELS
from bsky_assets.partitions import daily_partitions, one_run_per_day
from bsky_assets.perspective.attributes import COLUMN_ALIASES, AttributeSet
from bsky_assets.perspective.client import (
    GOOGLE_LABELER,
    Comment,
    CommentResult,
    PerspectiveClient,
)
from bsky_assets.perspective.sunset import active_labeler, sunset_notice
from bsky_assets.resources.perspective import PerspectiveResource
from bsky_assets.resources.postgres import PostgresResource


def perspective_label_set(labeler: str, labeler_version: str, attribute_set: str) -> LabelSet:
    """A Perspective label set: who scored, which version, which attribute → column mapping."""
    return LabelSet(
        table=PERSPECTIVE_LABELS.name,
        labeler=labeler,
        labeler_version=labeler_version,
        details={"attribute_set": attribute_set},
        emulated=labeler != GOOGLE_LABELER,
    )


def label_set_of(client: PerspectiveClient) -> LabelSet:
    return perspective_label_set(client.labeler, client.labeler_version, client.attribute_set.id)


def _legacy_label_set(row: dict[str, Any]) -> LabelSet:
    return perspective_label_set(row["labeler"], row["labeler_version"], row["attribute_set"])


def record_attribute_set(client: PostgresClient, attribute_set: AttributeSet) -> None:
    """Keep the column → attribute mapping behind each attribute_set id queryable in SQL."""
    aliases = {
        column: f"{attribute} (CONSTRUCTIVE_EXPERIMENTAL retired)"
        for column, attribute in COLUMN_ALIASES.items()
    }
    client.insert_rows(
        PERSPECTIVE_ATTRIBUTE_SETS,
        [
            {
                "attribute_set": attribute_set.id,
                "column_sources": json.dumps(attribute_set.column_sources),
                "aliases": json.dumps(aliases),
            }
        ],
    )


def toxicity_histogram(
    client: PostgresClient, label_set: LabelSet, day: date, scorer: str, bins: int = 20
) -> dict[str, dg.MetadataValue]:
    """prob_toxic's distribution for the set's rows of the day: inline text and a PNG."""
    rows = client.fetch_all(
        f"SELECT least(width_bucket(prob_toxic, 0, 1, %s), %s), count(*) "
        f"FROM {client.qualified(PERSPECTIVE_LABELS.name)} "
        "WHERE partition_date = %s AND label_set = %s AND prob_toxic IS NOT NULL GROUP BY 1",
        (bins, bins, day, label_set.id),
    )
    counts = [0] * bins
    for bucket, n in rows:
        counts[int(bucket) - 1] = int(n)
    caption = f"prob_toxic, {sum(counts)} posts, by {markdown_cell(scorer, 120)}"
    return {
        "prob_toxic_histogram": plots.sparkline(counts, "0", "1", caption),
        "prob_toxic_distribution": plots.histogram(
            counts, f"prob_toxic, {day}\nby {scorer}", "prob_toxic"
        ),
    }


def coverage_metadata(coverage: dict[str, dict[str, int]], labeler: str) -> dict[str, Any]:
    filled = [c for c, n in coverage.items() if n["scored"]]
    lines = ["| column | scored | unscored | null |", "|---|---|---|---|"]
    lines += [
        f"| {c} | {n['scored']} | {n['unscored']} | {n['null']} |" for c, n in coverage.items()
    ]
    return {
        "columns_scored": f"{len(filled)} of {len(coverage)} by {labeler}",
        "columns_scored_count": len(filled),
        "empty_columns": ", ".join(c for c in coverage if c not in filled) or "none",
        "coverage": dg.MetadataValue.md("\n".join(lines)),
    }


def label_row(result: CommentResult, attribute_set: AttributeSet, text_hash: str) -> dict:
    row: dict = {
        "uri": result.key,
        "text_sha256": text_hash,
        "was_successfully_labeled": result.scores is not None,
        "reason": result.reason,
        "retryable": result.retryable,
        "attempts": result.attempts,
        "unscored_attributes": ",".join(result.unscored) or None,
    }
    row.update(attribute_set.columns_from_scores(result.scores or {}))
    return row


DESCRIPTION = f"""Perspective scores per valid post and label set: up to 22 prob_* columns,
filled as far as the labeler scores them (see the `coverage` metadata and the
`every_column_scored` check); failed rows say why.

**Labeler for this code location:** {active_labeler()}. Every row records the labeler and version
that actually scored it (`labeler`, `labeler_version`, `label_set`).

**{sunset_notice()}**

Invalid posts get failed rows first; then only posts without a final row from the configured
label set are sent, and each completed batch is written at once, so re-runs resume and never
duplicate. Another labeler (Google's API, a distilled successor) adds its own rows."""
PREVIEW_COLUMNS = ["labeler", "prob_toxic", "prob_reasoning", "prob_affinity"]


@dg.asset(
    deps=[valid_posts],
    partitions_def=daily_partitions,
    backfill_policy=one_run_per_day,
    pool="perspective_api",
    group_name="labels",
    kinds={"postgres", "api"},
    description=DESCRIPTION,
    check_specs=PERSPECTIVE_CHECK_SPECS,
)
def perspective_labels(
    context: dg.AssetExecutionContext,
    postgres: PostgresResource,
    perspective: PerspectiveResource,
) -> dg.MaterializeResult:
    perspective.check_ready()
    day = date.fromisoformat(context.partition_key)
    db = postgres.get_client()
    api = perspective.get_client()
    attribute_set = api.attribute_set
    label_set = label_set_of(api)
    ensure_label_table(db, PERSPECTIVE_LABELS, label_set, _legacy_label_set)
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
    with one_labelling_run(db, PERSPECTIVE_LABELS, day, context.log):
        invalid_rows = write_invalid_post_rows(db, PERSPECTIVE_LABELS, label_set, day, not_sent)
        pending = count_pending(db, PERSPECTIVE_LABELS, label_set, day)
        context.log.info(
            f"{pending} posts to label with {api.labeler} {api.labeler_version} "
            f"(label set {label_set.id})"
        )

        writer = LabelWriter(db, PERSPECTIVE_LABELS, label_set, day, provenance)
        started = time.monotonic()
        texts = TextsInFlight()
        progress = Progress("perspective_labels", pending, context.log)
        with contextlib.closing(pending_posts(db, PERSPECTIVE_LABELS, label_set, day)) as frames:
            comments = (Comment(uri, text) for uri, text in texts.read(frames))
            for batch in api.analyze(comments):
                writer.write([label_row(r, attribute_set, texts.done(r.key)) for r in batch])
                progress.advance(len(batch))
        progress.finish()
        seconds = time.monotonic() - started
    db.analyze(PERSPECTIVE_LABELS)  # the checks and metadata below join on the rows just written

    stats = api.stats.as_dict()
    scorer = f"{api.labeler} {api.labeler_version}"
    coverage = column_coverage(db, label_set.id, day)
    return dg.MaterializeResult(
        check_results=perspective_checks(db, label_set.id, day, coverage),
        metadata={
            "labeler": api.labeler,
            "labeler_version": api.labeler_version,
            "attribute_set": attribute_set.id,
            "label_set": label_set.id,
            "emulated": label_set.emulated,
            "invalid_posts_marked": invalid_rows,
            "posts_sent": writer.rows_written,
            "this_run": dict(writer.outcomes),
            "partition_outcomes": partition_outcomes(db, PERSPECTIVE_LABELS, label_set, day),
            "api_requests": stats["http_requests"],
            "parts_sent": stats["parts_sent"],
            "retried_parts": stats["retried_parts"],
            "status_429": stats["status_429"],
            "status_5xx": stats["status_5xx"],
            "achieved_parts_per_second": round(stats["parts_sent"] / seconds, 2) if seconds else 0,
            "configured_parts_per_second": api.settings.requests_per_second,
            "duration_seconds": round(seconds, 2),
            "posts_per_second": round(writer.rows_written / seconds, 2) if seconds else 0,
            **coverage_metadata(coverage, scorer),
            **toxicity_histogram(db, label_set, day, scorer),
            **table_metadata(db, PERSPECTIVE_LABELS, label_set, day, PREVIEW_COLUMNS),
        },
    )
