"""Request a run of the graph for a day when a new batch file lands in its folder.

Cheap ticks: the cursor holds each day folder's mtime, so only folders that changed (a file was
added, renamed in or removed) are listed. The run key is derived from the names, sizes and mtimes
of all the day's finished batches, so Dagster drops a request it has already launched, and a new
batch, or a batch replaced by renaming a new file over it, yields a new key. Rewriting a file in
place does not change its folder's mtime and is not noticed: writers write to a hidden or
.tmp/.part name and rename (the landing contract). Several batches landing together make one run.
"""

import hashlib
import json
import time
from datetime import date
from pathlib import Path

import dagster as dg

from bsky_assets.jobs import LABEL_POSTS
from bsky_assets.landing import list_day, parse_partition_folder
from bsky_assets.partitions import daily_partitions
from bsky_assets.resources.landing import LandingFolder

# A file modified more recently than this may still be being written (writers that do not use
# write-then-rename); it is picked up on a later tick.
SETTLE_SECONDS = 5.0


def _day_is_partition(day: date) -> bool:
    return daily_partitions.has_partition_key(day.isoformat())


def _fingerprint(files: list[Path]) -> str:
    signature = "\n".join(f"{p.name}:{p.stat().st_size}:{p.stat().st_mtime_ns}" for p in files)
    return hashlib.sha256(signature.encode()).hexdigest()[:16]


@dg.sensor(
    job_name=LABEL_POSTS,
    minimum_interval_seconds=15,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Launches a run for a day when a new batch file appears in the landing folder.",
)
def landing_sensor(context: dg.SensorEvaluationContext, landing: LandingFolder):
    root = landing.root
    if not root.is_dir():
        return dg.SkipReason(f"landing folder {root} does not exist yet")
    seen: dict[str, int] = json.loads(context.cursor) if context.cursor else {}
    now_ns = time.time_ns()
    cursor: dict[str, int] = {}
    requests: list[dg.RunRequest] = []
    for entry in sorted(root.iterdir()):
        if entry.is_symlink() or not entry.is_dir():
            continue
        day = parse_partition_folder(entry.name)
        if day is None:
            context.log.info(f"skipping {entry.name!r}: not a YYYY-MM-DD folder")
            continue
        if not _day_is_partition(day):
            context.log.info(f"skipping {entry.name}: outside the daily partitions")
            continue
        dir_mtime = entry.stat().st_mtime_ns
        if seen.get(entry.name) == dir_mtime:
            cursor[entry.name] = dir_mtime
            continue
        files = list_day(entry, root).files
        settling = [p for p in files if now_ns - p.stat().st_mtime_ns < SETTLE_SECONDS * 1e9]
        if settling:
            names = ", ".join(p.name for p in settling)
            context.log.info(f"{entry.name}: waiting for {names} to settle")
            continue  # cursor not advanced: the folder is looked at again next tick
        cursor[entry.name] = dir_mtime
        if not files:
            continue
        newest = max(files, key=lambda p: p.stat().st_mtime_ns)
        requests.append(
            dg.RunRequest(
                run_key=f"{entry.name}:{_fingerprint(files)}",
                partition_key=entry.name,
                tags={"bsky/trigger_batch": newest.name, "bsky/batch_files": str(len(files))},
            )
        )
    context.update_cursor(json.dumps(cursor, sort_keys=True))
    if not requests:
        return dg.SkipReason("no new batch files")
    return requests
