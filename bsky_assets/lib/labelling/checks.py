"""The checks every label asset has, evaluated inside the step that writes it, for its day.

In-step on purpose. A check defined as its own op is a step of its own (a 300-post day ran 11
steps, most of them checks), and the UI's Checks tab offers "Execute all" for it, which launches
a run without a partition that Dagster cannot evaluate for a partitioned asset. In the step, a
check costs no process, always has its day, and the Checks tab shows it as needing a
materialization. To check a day again, materialize it again: label assets send nothing for posts
that already have a final row.

Label tables hold one row per post and label set; the checks judge the label set the step used.
The failure-rate threshold is BSKY_MAX_FAILURE_RATE (default 0.05: API failures as a share of
the day's valid posts), read in the run; over it the check warns, or blocks (fails the step
before anything downstream) when the definitions were built with BSKY_FAILURE_RATE_BLOCKS=true.
"""

from __future__ import annotations

import warnings
from datetime import date

import dagster as dg

from bsky_assets import settings
from bsky_assets.lib.db.client import PostgresClient
from bsky_assets.lib.db.tables import TableSpec
from bsky_assets.lib.labelling import store
from bsky_assets.lib.labelling.source import PostSource


def check_spec(
    name: str,
    asset: str,
    description: str,
    partitions: dg.PartitionsDefinition,
    blocking: bool = False,
) -> dg.AssetCheckSpec:
    # Partitioned check specs are a Dagster preview (1.13): they give each day its own result
    # in the UI, which is what a per-day check means. Chosen knowingly; the warning is silenced.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", dg.PreviewWarning)
        return dg.AssetCheckSpec(
            name, asset=asset, description=description, blocking=blocking,
            partitions_def=partitions,
        )  # fmt: skip


def label_check_specs(
    asset: str, partitions: dg.PartitionsDefinition, failure_rate_blocks: bool
) -> list[dg.AssetCheckSpec]:
    return [
        check_spec(
            "one_row_per_post",
            asset,
            "Every valid post of the day has a row from the step's label set, and no label row "
            "lacks a post.",
            partitions,
        ),
        check_spec(
            "failure_rate",
            asset,
            "API failures stay under BSKY_MAX_FAILURE_RATE (default 5 %) of the day's valid "
            "posts (the step's label set).",
            partitions,
            blocking=failure_rate_blocks,
        ),
    ]


def one_row_per_post(
    client: PostgresClient, spec: TableSpec, source: PostSource, label_set: str, day: date
) -> dg.AssetCheckResult:
    missing, orphans = store.missing_and_orphaned(client, spec, source, label_set, day)
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
    client: PostgresClient,
    spec: TableSpec,
    source: PostSource,
    label_set: str,
    day: date,
    blocking: bool,
    out_of_scope: tuple[str, ...] = (),
) -> dg.AssetCheckResult:
    labelled, failed = store.labelled_and_failed(client, spec, source, label_set, day, out_of_scope)
    threshold = settings.max_failure_rate()
    rate = failed / (labelled + failed) if labelled + failed else 0.0
    return dg.AssetCheckResult(
        check_name="failure_rate",
        passed=rate <= threshold,
        severity=dg.AssetCheckSeverity.ERROR if blocking else dg.AssetCheckSeverity.WARN,
        metadata={
            "day": str(day),
            "label_set": label_set,
            "failure_rate": round(rate, 4),
            "threshold": threshold,
            "failed": failed,
            "labelled": labelled,
        },
    )
