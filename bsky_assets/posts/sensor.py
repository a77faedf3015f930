"""Request a run of the graph for a day when a new batch file lands in its folder.

Cheap ticks: the cursor holds each day folder's mtime, so only folders that changed (a file was
added, renamed in or removed) are listed. The run key is derived from the names, sizes and mtimes
of all the day's finished batches, so Dagster drops a request it has already launched, and a new
batch, or a batch replaced by renaming a new file over it, yields a new key. Rewriting a file in
place does not change its folder's mtime and is not noticed: writers write to a hidden or
.tmp/.part name and rename (the landing contract). Several batches landing together make one run.

A file counts as finished once it has not changed for SETTLE_SECONDS: its mtime is that far in
the past, or, whatever its mtime says (a writer's clock ahead, a copy that kept a future time),
the sensor saw the same size and mtime at least that long ago (the cursor keeps what it saw).

A day already ingested from exactly these files (the ingest records their fingerprint) is not
run again, however it was materialized (the UI, a backfill, the shell): turning the sensor on
after a week of manual runs launches only the days whose batches are new.
"""

import json
import time
from typing import Any

import dagster as dg

from bsky_assets.posts.day_folder import BatchFile, list_day, parse_partition_folder
from bsky_assets.posts.resource import LandingFolder

# A file modified more recently than this may still be being written (writers that do not use
# write-then-rename); it is picked up on a later tick.
SETTLE_SECONDS = 5.0


INGESTED_FROM = "landing_fingerprint"  # the ingest's metadata: which files it read


def ingested_from(instance: dg.DagsterInstance, day: str) -> str | None:
    """The landing fingerprint the day's newest ingest read, if any."""
    records = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=dg.AssetKey("preprocessed_posts"), asset_partitions=[day]),
        limit=1,
    ).records
    if not records:
        return None
    materialization = records[0].asset_materialization
    value = materialization.metadata.get(INGESTED_FROM) if materialization else None
    return str(value.value) if value is not None else None


def _read_cursor(cursor: str | None) -> tuple[dict[str, int], dict[str, dict[str, list[int]]]]:
    """Folder mtimes, and per day the files still settling: name -> [size, mtime, first seen].
    A cursor of an earlier version (folder mtimes only) is read as such."""
    state: dict[str, Any] = json.loads(cursor) if cursor else {}
    if "folders" not in state:
        return state, {}
    return state["folders"], state.get("settling", {})


def _settled(file: BatchFile, seen: list[int] | None, now_ns: int) -> bool:
    """Unchanged for SETTLE_SECONDS, by its mtime or by the sensor's own earlier look."""
    settle_ns = SETTLE_SECONDS * 1e9
    if now_ns - file.mtime_ns >= settle_ns:  # never for an mtime in the future
        return True
    unchanged = seen is not None and seen[:2] == [file.size, file.mtime_ns]
    return unchanged and now_ns - seen[2] >= settle_ns


def _still_seen(file: BatchFile, seen: list[int] | None, now_ns: int) -> list[int]:
    """What the cursor keeps of a settling file: when it was first seen as it is now."""
    if seen is not None and seen[:2] == [file.size, file.mtime_ns]:
        return seen
    return [file.size, file.mtime_ns, now_ns]


def landing_sensor(partitions: dg.PartitionsDefinition, job_name: str) -> dg.SensorDefinition:
    """The sensor over `partitions` (days outside them are passed over), launching `job_name`."""

    @dg.sensor(
        name="landing_sensor",
        job_name=job_name,
        minimum_interval_seconds=15,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description="Launches a run for a day when a new batch file appears in the landing "
        "folder; a day already ingested from the same files is not run again.",
    )
    def _sensor(context: dg.SensorEvaluationContext, landing: LandingFolder):
        return watch_landing(context, landing, partitions)

    return _sensor


def watch_landing(
    context: dg.SensorEvaluationContext,
    landing: LandingFolder,
    partitions: dg.PartitionsDefinition,
) -> Any:
    root = landing.root
    if not root.is_dir():
        return dg.SkipReason(f"landing folder {root} does not exist yet")
    seen, seen_settling = _read_cursor(context.cursor)
    now_ns = time.time_ns()
    cursor: dict[str, int] = {}
    settling_cursor: dict[str, dict[str, list[int]]] = {}
    requests: list[dg.RunRequest] = []
    for entry in sorted(root.iterdir()):
        if entry.is_symlink() or not entry.is_dir():
            continue
        day = parse_partition_folder(entry.name)
        if day is None:
            context.log.info(f"skipping {entry.name!r}: not a YYYY-MM-DD folder")
            continue
        if not partitions.has_partition_key(day.isoformat()):
            context.log.info(f"skipping {entry.name}: outside the daily partitions")
            continue
        dir_mtime = entry.stat().st_mtime_ns
        if seen.get(entry.name) == dir_mtime:
            cursor[entry.name] = dir_mtime
            continue
        listing = list_day(entry, root)
        files = listing.batches
        before = seen_settling.get(entry.name, {})
        settling = [f for f in files if not _settled(f, before.get(f.name), now_ns)]
        if settling:
            names = ", ".join(f.name for f in settling)
            context.log.info(f"{entry.name}: waiting for {names} to settle")
            settling_cursor[entry.name] = {
                f.name: _still_seen(f, before.get(f.name), now_ns) for f in settling
            }
            continue  # folder mtime not recorded: the folder is looked at again next tick
        cursor[entry.name] = dir_mtime
        if not files:
            continue
        if ingested_from(context.instance, entry.name) == listing.fingerprint:
            context.log.info(f"{entry.name}: already ingested from these batches, not run again")
            continue
        newest = max(files, key=lambda f: f.mtime_ns)
        requests.append(
            dg.RunRequest(
                run_key=f"{entry.name}:{listing.fingerprint}",
                partition_key=entry.name,
                tags={"bsky/trigger_batch": newest.name, "bsky/batch_files": str(len(files))},
            )
        )
    state = {"folders": cursor, "settling": settling_cursor}
    context.update_cursor(json.dumps(state, sort_keys=True))
    if not requests:
        return dg.SkipReason("no new batch files")
    return requests
