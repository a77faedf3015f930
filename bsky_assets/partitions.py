"""Daily partitions (UTC): a landing folder `YYYY-MM-DD` is one partition."""

import dagster as dg

from bsky_assets import settings

PARTITIONS_START = settings.partitions_start()

# end_offset=1: today's partition exists while today's batches are still landing.
daily_partitions = dg.DailyPartitionsDefinition(
    start_date=PARTITIONS_START, timezone="UTC", end_offset=1
)

# One run per day: every IO in this project reads and writes exactly one partition.
one_run_per_day = dg.BackfillPolicy.multi_run(max_partitions_per_run=1)
