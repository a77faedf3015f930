"""Daily partitions (UTC): a landing folder `YYYY-MM-DD` is one partition.

Built with the definitions (the first day comes from the environment then). No asset has a
backfill policy: a backfill launches one run per day, each tagged with its day
(`dagster/partition`), so every IO reads and writes one partition and every in-step check result
keeps its day (a ranged run, even of one day, leaves checks without a partition).
"""

from __future__ import annotations

import dagster as dg


def daily_partitions(start: str) -> dg.DailyPartitionsDefinition:
    """Every day from `start` (YYYY-MM-DD); end_offset=1: today's partition exists while
    today's batches are still landing."""
    return dg.DailyPartitionsDefinition(start_date=start, timezone="UTC", end_offset=1)
