"""Asset checks, evaluated inside the step that writes the asset, for that step's day.

In-step on purpose. A check defined as its own op is a step of its own (a 300-post day ran 11
steps, most of them checks), and the UI's Checks tab offers "Execute all" for it, which launches
a run without a partition that Dagster cannot evaluate for a partitioned asset. In the step, a
check costs no process, always has its day, and the Checks tab shows it as needing a
materialization. To check a day again, materialize it again: label assets send nothing for posts
that already have a final row.

Label tables hold one row per post and label set; the checks judge the label set the step used.
The failure-rate threshold is BSKY_MAX_FAILURE_RATE (default 0.05: API failures as a share of
the day's valid posts); over it the check warns, or blocks (fails the step before anything
downstream) when BSKY_FAILURE_RATE_BLOCKS=true.
"""

import warnings
from datetime import date

import dagster as dg

from bsky_assets import settings
from bsky_assets.db.client import PostgresClient
from bsky_assets.db.tables import (
    LABEL_SETS,
    PERSPECTIVE_LABELS,
    PREPROCESSED_POSTS,
    VALID_POSTS,
    TableSpec,
)
from bsky_assets.partitions import daily_partitions
from bsky_assets.perspective.attributes import PROB_COLUMNS
from bsky_assets.validity import INVALID_REASONS

MAX_FAILURE_RATE = settings.max_failure_rate()
FAILURE_RATE_BLOCKS = settings.failure_rate_blocks()


def _scalar(client: PostgresClient, sql: str, params: dict) -> int:
    return int(client.fetch_all(sql, params)[0][0])


def _spec(name: str, asset: str, description: str, blocking: bool = False) -> dg.AssetCheckSpec:
    # Partitioned check specs are a Dagster preview (1.13): they give each day its own result
    # in the UI, which is what a per-day check means. Chosen knowingly; the warning is silenced.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", dg.PreviewWarning)
        return dg.AssetCheckSpec(
            name,
            asset=asset,
            description=description,
            blocking=blocking,
            partitions_def=daily_partitions,
        )


# -- label tables ------------------------------------------------------------------------------


def label_check_specs(asset: str) -> list[dg.AssetCheckSpec]:
    return [
        _spec(
            "one_row_per_post",
            asset,
            "Every valid post of the day has a row from the step's label set, and no label row "
            "lacks a post.",
        ),
        _spec(
            "failure_rate",
            asset,
            f"API failures stay under {MAX_FAILURE_RATE:.0%} of the day's valid posts "
            "(the step's label set).",
            blocking=FAILURE_RATE_BLOCKS,
        ),
    ]


def one_row_per_post(
    client: PostgresClient, spec: TableSpec, label_set: str, day: date
) -> dg.AssetCheckResult:
    params = {"day": day, "label_set": label_set}
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
        check_name="one_row_per_post",
        passed=missing == 0 and orphans == 0,
        metadata={
            "day": str(day),
            "label_set": label_set,
            "posts_without_a_row": missing,
            "rows_without_a_post": orphans,
        },
    )


def failure_rate(
    client: PostgresClient, spec: TableSpec, label_set: str, day: date
) -> dg.AssetCheckResult:
    labelled, failed = client.fetch_all(
        "SELECT count(*) FILTER (WHERE was_successfully_labeled), count(*) FILTER (WHERE "
        "NOT was_successfully_labeled AND NOT reason = ANY(%(invalid)s)) "
        f"FROM {client.qualified(spec.name)} "
        "WHERE partition_date = %(day)s AND label_set = %(label_set)s",
        {"day": day, "label_set": label_set, "invalid": INVALID_REASONS},
    )[0]
    labelled, failed = int(labelled), int(failed)
    rate = failed / (labelled + failed) if labelled + failed else 0.0
    return dg.AssetCheckResult(
        check_name="failure_rate",
        passed=rate <= MAX_FAILURE_RATE,
        severity=dg.AssetCheckSeverity.ERROR if FAILURE_RATE_BLOCKS else dg.AssetCheckSeverity.WARN,
        metadata={
            "day": str(day),
            "label_set": label_set,
            "failure_rate": round(rate, 4),
            "threshold": MAX_FAILURE_RATE,
            "failed": failed,
            "labelled": labelled,
        },
    )


def label_checks(
    client: PostgresClient, spec: TableSpec, label_set: str, day: date
) -> list[dg.AssetCheckResult]:
    return [
        one_row_per_post(client, spec, label_set, day),
        failure_rate(client, spec, label_set, day),
    ]


# -- perspective_labels ----------------------------------------------------------------------

PERSPECTIVE_CHECK_SPECS = [
    *label_check_specs("perspective_labels"),
    _spec(
        "probabilities_in_unit_interval",
        "perspective_labels",
        "Every prob_* score of every label set of the day is within [0, 1].",
    ),
    _spec(
        "every_column_scored",
        "perspective_labels",
        "Warns when the step's labeler left prob_* columns empty on every row it scored, "
        "naming the labeler: an emulating scorer may fill only some attributes.",
    ),
]


def column_coverage(client: PostgresClient, label_set: str, day: date) -> dict[str, dict[str, int]]:
    """Per prob_* column, the set's rows of the day that have a score (`scored`), that were
    labelled without one (`unscored`: the labeler does not score it), and that have none because
    the post was not labelled (`null`: failed or invalid)."""
    counts = ", ".join(
        f"count({c}) FILTER (WHERE was_successfully_labeled), "
        f"count(*) FILTER (WHERE was_successfully_labeled AND {c} IS NULL)"
        for c in PROB_COLUMNS
    )
    row = client.fetch_all(
        f"SELECT count(*) FILTER (WHERE NOT was_successfully_labeled), {counts} "
        f"FROM {client.qualified(PERSPECTIVE_LABELS.name)} "
        "WHERE partition_date = %s AND label_set = %s",
        (day, label_set),
    )[0]
    not_labelled = int(row[0])
    return {
        column: {"scored": int(row[1 + 2 * i]), "unscored": int(row[2 + 2 * i]),
                 "null": not_labelled}
        for i, column in enumerate(PROB_COLUMNS)
    }  # fmt: skip


def probabilities_in_unit_interval(client: PostgresClient, day: date) -> dg.AssetCheckResult:
    outside = " OR ".join(f"{c} < 0 OR {c} > 1" for c in PROB_COLUMNS)
    bad = _scalar(
        client,
        f"SELECT count(*) FROM {client.qualified(PERSPECTIVE_LABELS.name)} "
        f"WHERE partition_date = %(day)s AND ({outside})",
        {"day": day},
    )
    return dg.AssetCheckResult(
        check_name="probabilities_in_unit_interval",
        passed=bad == 0,
        metadata={"day": str(day), "rows_out_of_range": bad},
    )


def every_column_scored(
    client: PostgresClient, label_set: str, day: date, coverage: dict[str, dict[str, int]]
) -> dg.AssetCheckResult:
    empty = [column for column, counts in coverage.items() if counts["scored"] == 0]
    labeler = client.fetch_all(
        f"SELECT labeler, labeler_version FROM {client.qualified(LABEL_SETS.name)} "
        "WHERE label_set = %s",
        (label_set,),
    )
    scorer = " ".join(labeler[0]) if labeler else "unknown"
    return dg.AssetCheckResult(
        check_name="every_column_scored",
        passed=not empty,
        severity=dg.AssetCheckSeverity.WARN,
        description=f"{len(empty)} of {len(coverage)} prob_* columns empty: {scorer} "
        "does not score them"
        if empty
        else f"every prob_* column scored by {scorer}",
        metadata={
            "day": str(day),
            "labeler": scorer,
            "label_set": label_set,
            "empty_columns": ", ".join(empty) or "none",
            "columns_scored": len(coverage) - len(empty),
            "columns": len(coverage),
        },
    )


def perspective_checks(
    client: PostgresClient, label_set: str, day: date, coverage: dict[str, dict[str, int]]
) -> list[dg.AssetCheckResult]:
    return [
        *label_checks(client, PERSPECTIVE_LABELS, label_set, day),
        probabilities_in_unit_interval(client, day),
        every_column_scored(client, label_set, day, coverage),
    ]


# -- preprocessed_posts ----------------------------------------------------------------------

POSTS_CHECK_SPECS = [
    _spec(
        "uris_unique_across_days",
        "preprocessed_posts",
        "The day's uris appear in no other day (uris are unique within a day by key).",
    ),
    _spec(
        "day_has_posts",
        "preprocessed_posts",
        "Warns on a day with no posts: its landing folder exists but held no usable batch. "
        "The day stays green (a quiet day must not stop a month's backfill) but is marked.",
    ),
]


def posts_checks(client: PostgresClient, day: date) -> list[dg.AssetCheckResult]:
    table = client.qualified(PREPROCESSED_POSTS.name)
    repeated = _scalar(
        client,
        f"SELECT count(*) FROM {table} a WHERE a.partition_date = %(day)s AND EXISTS "
        f"(SELECT 1 FROM {table} b WHERE b.uri = a.uri AND b.partition_date <> a.partition_date)",
        {"day": day},
    )
    posts = _scalar(
        client, f"SELECT count(*) FROM {table} WHERE partition_date = %(day)s", {"day": day}
    )
    return [
        dg.AssetCheckResult(
            asset_key="preprocessed_posts",
            check_name="uris_unique_across_days",
            passed=repeated == 0,
            severity=dg.AssetCheckSeverity.WARN,  # a post re-landing on another day is data
            metadata={"day": str(day), "uris_also_on_other_days": repeated},
        ),
        dg.AssetCheckResult(
            asset_key="preprocessed_posts",
            check_name="day_has_posts",
            passed=posts > 0,
            severity=dg.AssetCheckSeverity.WARN,
            description=None if posts else f"{day} has no posts: an empty landing folder",
            metadata={"day": str(day), "posts": posts},
        ),
    ]
