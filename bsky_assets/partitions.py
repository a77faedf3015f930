"""Daily partitions (UTC): a landing folder `YYYY-MM-DD` is one partition."""

import dagster as dg

from bsky_assets import settings

PARTITIONS_START = settings.partitions_start()

# end_offset=1: today's partition exists while today's batches are still landing.
daily_partitions = dg.DailyPartitionsDefinition(
    start_date=PARTITIONS_START, timezone="UTC", end_offset=1
)
# No backfill policy: a backfill launches one run per day, each tagged with its day
# (`dagster/partition`), so every IO reads and writes one partition and every in-step check
# result keeps its day (a ranged run, even of one day, leaves checks without a partition).
