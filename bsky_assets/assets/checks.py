"""Asset checks, each partitioned so it reads only its own day (an unpartitioned check on a
partitioned asset would load every partition).

Label tables hold one row per post and label set; the checks judge the day's current label set,
the one that wrote the day's newest row (the configured labeler, after a run).
The failure-rate threshold is BSKY_MAX_FAILURE_RATE (default 0.05: API failures as a share of
the day's valid posts); over it the check warns, or blocks (fails the run before anything
downstream) when BSKY_FAILURE_RATE_BLOCKS=true.
"""

from datetime import date

import dagster as dg

from bsky_assets import settings
from bsky_assets.assets.perspective_labels import column_coverage, perspective_labels
from bsky_assets.assets.posts import ingest_landing
from bsky_assets.assets.sociopolitical_labels import sociopolitical_labels
from bsky_assets.db.client import PostgresClient
from bsky_assets.db.tables import (
    LABEL_SETS,
    PERSPECTIVE_LABELS,
    PREPROCESSED_POSTS,
    SOCIOPOLITICAL_LABELS,
    VALID_POSTS,
    TableSpec,
)
from bsky_assets.partitions import daily_partitions
from bsky_assets.perspective.attributes import PROB_COLUMNS
from bsky_assets.resources.postgres import PostgresResource
from bsky_assets.validity import INVALID_REASONS

MAX_FAILURE_RATE = settings.max_failure_rate()
FAILURE_RATE_BLOCKS = settings.failure_rate_blocks()


def _scalar(client: PostgresClient, sql: str, params: dict) -> int:
    return int(client.fetch_all(sql, params)[0][0])


def check_day(
    context: dg.AssetCheckExecutionContext, client: PostgresClient, spec: TableSpec
) -> date | None:
    """The day a check judges: its partition, or, when launched without one (the UI's Checks
    tab offers "Execute all"), the latest day the table holds; None if it holds none."""
    if context.has_partition_key:
        return date.fromisoformat(context.partition_key)
    client.ensure_table(spec)
    latest = client.fetch_all(f"SELECT max(partition_date) FROM {client.qualified(spec.name)}")
    if latest[0][0] is not None:
        context.log.info(f"launched without a partition: checking the latest day, {latest[0][0]}")
    return latest[0][0]


def nothing_to_check(spec: TableSpec) -> dg.AssetCheckResult:
    return dg.AssetCheckResult(
        passed=True, metadata={"day": "none", "note": f"{spec.name} holds no day yet"}
    )


def current_label_set(client: PostgresClient, spec: TableSpec, day: date) -> str | None:
    """The label set that wrote the day's newest row."""
    rows = client.fetch_all(
        f"SELECT label_set FROM {client.qualified(spec.name)} WHERE partition_date = %s "
        "ORDER BY label_timestamp DESC LIMIT 1",
        (day,),
    )
    return rows[0][0] if rows else None


def _one_row_per_valid_post(asset: dg.AssetsDefinition, spec: TableSpec):
    @dg.asset_check(
        asset=asset,
        name="one_row_per_post",
        partitions_def=daily_partitions,
        description="Every post of the day has a row from the day's current label set, and no "
        "label row lacks a post.",
    )
    def check(context: dg.AssetCheckExecutionContext, postgres: PostgresResource):
        client = postgres.get_client()
        day = check_day(context, client, spec)
        if day is None:
            return nothing_to_check(spec)
        params = {"day": day, "label_set": current_label_set(client, spec, day)}
        labels, posts = client.qualified(spec.name), client.qualified(VALID_POSTS.name)
        missing = _scalar(
            client,
            f"SELECT count(*) FROM {posts} v LEFT JOIN {labels} l ON l.partition_date = "
            "v.partition_date AND l.uri = v.uri AND l.label_set = %(label_set)s "
            "WHERE v.partition_date = %(day)s AND l.uri IS NULL",
            params,
        )
        orphans = _scalar(
            client,
            f"SELECT count(*) FROM {labels} l LEFT JOIN {posts} v ON v.partition_date = "
            "l.partition_date AND v.uri = l.uri WHERE l.partition_date = %(day)s AND v.uri IS NULL",
            params,
        )
        return dg.AssetCheckResult(
            passed=missing == 0 and orphans == 0,
            metadata={
                "day": str(day),
                "label_set": params["label_set"] or "none",
                "posts_without_a_row": missing,
                "rows_without_a_post": orphans,
            },
        )

    return check


def _failure_rate(asset: dg.AssetsDefinition, spec: TableSpec):
    @dg.asset_check(
        asset=asset,
        name="failure_rate",
        partitions_def=daily_partitions,
        blocking=FAILURE_RATE_BLOCKS,
        description=f"API failures stay under {MAX_FAILURE_RATE:.0%} of the day's valid posts "
        "(current label set).",
    )
    def check(context: dg.AssetCheckExecutionContext, postgres: PostgresResource):
        client = postgres.get_client()
        day = check_day(context, client, spec)
        if day is None:
            return nothing_to_check(spec)
        label_set = current_label_set(client, spec, day)
        rows = client.fetch_all(
            "SELECT count(*) FILTER (WHERE was_successfully_labeled), count(*) FILTER (WHERE "
            "NOT was_successfully_labeled AND NOT reason = ANY(%(invalid)s)) "
            f"FROM {client.qualified(spec.name)} "
            "WHERE partition_date = %(day)s AND label_set = %(label_set)s",
            {"day": day, "label_set": label_set, "invalid": INVALID_REASONS},
        )[0]
        labelled, failed = int(rows[0]), int(rows[1])
        rate = failed / (labelled + failed) if labelled + failed else 0.0
        return dg.AssetCheckResult(
            passed=rate <= MAX_FAILURE_RATE,
            severity=dg.AssetCheckSeverity.ERROR
            if FAILURE_RATE_BLOCKS
            else dg.AssetCheckSeverity.WARN,
            metadata={
                "day": str(day),
                "label_set": label_set or "none",
                "failure_rate": round(rate, 4),
                "threshold": MAX_FAILURE_RATE,
                "failed": failed,
                "labelled": labelled,
            },
        )

    return check


@dg.asset_check(
    asset=perspective_labels,
    partitions_def=daily_partitions,
    description="Every prob_* score of every label set is within [0, 1].",
)
def probabilities_in_unit_interval(
    context: dg.AssetCheckExecutionContext, postgres: PostgresResource
):
    client = postgres.get_client()
    day = check_day(context, client, PERSPECTIVE_LABELS)
    if day is None:
        return nothing_to_check(PERSPECTIVE_LABELS)
    outside = " OR ".join(f"{c} < 0 OR {c} > 1" for c in PROB_COLUMNS)
    bad = _scalar(
        client,
        f"SELECT count(*) FROM {client.qualified(PERSPECTIVE_LABELS.name)} "
        f"WHERE partition_date = %(day)s AND ({outside})",
        {"day": day},
    )
    return dg.AssetCheckResult(
        passed=bad == 0, metadata={"day": str(day), "rows_out_of_range": bad}
    )


@dg.asset_check(
    asset=perspective_labels,
    partitions_def=daily_partitions,
    description="Warns when the day's current labeler left prob_* columns empty on every row it "
    "scored, naming the labeler: an emulating scorer may fill only some attributes.",
)
def every_column_scored(context: dg.AssetCheckExecutionContext, postgres: PostgresResource):
    client = postgres.get_client()
    day = check_day(context, client, PERSPECTIVE_LABELS)
    if day is None:
        return nothing_to_check(PERSPECTIVE_LABELS)
    label_set = current_label_set(client, PERSPECTIVE_LABELS, day)
    coverage = column_coverage(client, label_set, day)
    empty = [column for column, counts in coverage.items() if counts["scored"] == 0]
    labeler = client.fetch_all(
        f"SELECT labeler, labeler_version FROM {client.qualified(LABEL_SETS.name)} "
        "WHERE label_set = %s",
        (label_set,),
    )
    scorer = " ".join(labeler[0]) if labeler else "unknown"
    return dg.AssetCheckResult(
        passed=not empty,
        severity=dg.AssetCheckSeverity.WARN,
        description=f"{len(empty)} of {len(coverage)} prob_* columns empty: {scorer} "
        "does not score them"
        if empty
        else f"every prob_* column scored by {scorer}",
        metadata={
            "day": str(day),
            "labeler": scorer,
            "label_set": label_set or "none",
            "empty_columns": ", ".join(empty) or "none",
            "columns_scored": len(coverage) - len(empty),
            "columns": len(coverage),
        },
    )


@dg.asset_check(
    asset=ingest_landing.keys_by_output_name["preprocessed_posts"],
    partitions_def=daily_partitions,
    description="The day's uris appear in no other day (uris are unique within a day by key).",
)
def uris_unique_across_days(context: dg.AssetCheckExecutionContext, postgres: PostgresResource):
    client = postgres.get_client()
    day = check_day(context, client, PREPROCESSED_POSTS)
    if day is None:
        return nothing_to_check(PREPROCESSED_POSTS)
    table = client.qualified(PREPROCESSED_POSTS.name)
    repeated = _scalar(
        client,
        f"SELECT count(*) FROM {table} a WHERE a.partition_date = %(day)s AND EXISTS "
        f"(SELECT 1 FROM {table} b WHERE b.uri = a.uri AND b.partition_date <> a.partition_date)",
        {"day": day},
    )
    return dg.AssetCheckResult(
        passed=repeated == 0,
        severity=dg.AssetCheckSeverity.WARN,  # a post re-landing on another day is data, not a bug
        metadata={"day": str(day), "uris_also_on_other_days": repeated},
    )


@dg.asset_check(
    asset=ingest_landing.keys_by_output_name["preprocessed_posts"],
    partitions_def=daily_partitions,
    description="Warns on a day with no posts: its landing folder exists but held no usable "
    "batch. The day stays green (a quiet day must not stop a month's backfill) but is marked.",
)
def day_has_posts(context: dg.AssetCheckExecutionContext, postgres: PostgresResource):
    client = postgres.get_client()
    client.ensure_table(PREPROCESSED_POSTS)
    if not context.has_partition_key:
        return dg.AssetCheckResult(passed=True, metadata={"day": "none (no partition)"})
    day = date.fromisoformat(context.partition_key)
    posts = _scalar(
        client,
        f"SELECT count(*) FROM {client.qualified(PREPROCESSED_POSTS.name)} "
        "WHERE partition_date = %(day)s",
        {"day": day},
    )
    return dg.AssetCheckResult(
        passed=posts > 0,
        severity=dg.AssetCheckSeverity.WARN,
        description=None if posts else f"{day} has no posts: an empty landing folder",
        metadata={"day": str(day), "posts": posts},
    )


checks = [
    _one_row_per_valid_post(perspective_labels, PERSPECTIVE_LABELS),
    _one_row_per_valid_post(sociopolitical_labels, SOCIOPOLITICAL_LABELS),
    _failure_rate(perspective_labels, PERSPECTIVE_LABELS),
    _failure_rate(sociopolitical_labels, SOCIOPOLITICAL_LABELS),
    probabilities_in_unit_interval,
    every_column_scored,
    uris_unique_across_days,
    day_has_posts,
]
