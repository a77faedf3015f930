"""What a run was launched for, from its tags."""

from __future__ import annotations

import dagster as dg

PARTITION_TAGS = (
    "dagster/partition",
    "dagster/asset_partition_range_start",
    "dagster/asset_partition_range_end",
)


def launched_for_days(context: dg.AssetExecutionContext) -> str | None:
    """The day (or range) a run was launched for, when it was: an unpartitioned asset swept
    into a per-day launch ("Materialize all" for a day, a backfill) is not what was asked for."""
    tags = context.run.tags
    if "dagster/partition" in tags:
        return tags["dagster/partition"]
    start, end = (tags.get(t) for t in PARTITION_TAGS[1:])
    if start and end:
        return start if start == end else f"{start}...{end}"
    return None
