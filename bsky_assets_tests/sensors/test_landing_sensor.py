"""The landing sensor: run keys, cursor, skipped folders and unfinished files."""

import json
import os
import time
from pathlib import Path

import dagster as dg
import pytest

from bsky_assets.resources.landing import LandingFolder
from bsky_assets.sensors.landing_sensor import landing_sensor
from bsky_assets_tests.conftest import post, write_jsonl


def age(path: Path, seconds: float = 60) -> None:
    """Backdate a file so it counts as settled."""
    past = time.time() - seconds
    os.utime(path, (past, past))


def tick(defs: dg.Definitions, instance: dg.DagsterInstance, cursor: str | None):
    context = dg.build_sensor_context(
        instance=instance,
        cursor=cursor,
        definitions=defs,
        sensor_name="landing_sensor",
        resources={"landing": defs.resources["landing"]},
    )
    return defs.resolve_sensor_def("landing_sensor").evaluate_tick(context)


@pytest.fixture
def instance():
    with dg.instance_for_test() as instance:
        yield instance


def test_new_batches_request_one_run_per_day(
    defs: dg.Definitions, instance: dg.DagsterInstance, landing_root: Path
):
    age(write_jsonl(landing_root / "2024-06-01" / "batch-1.jsonl", [post("1")]))
    age(write_jsonl(landing_root / "2024-06-02" / "batch-1.jsonl", [post("2")]))
    (landing_root / "not-a-date").mkdir()
    (landing_root / "2024-13-40").mkdir()
    (landing_root / "2019-01-01").mkdir()  # a date, but before the partitions start
    (landing_root / "README.txt").write_text("a stray file")

    first = tick(defs, instance, None)
    assert sorted(r.partition_key for r in first.run_requests) == ["2024-06-01", "2024-06-02"]
    assert all(r.run_key.startswith(r.partition_key + ":") for r in first.run_requests)
    assert all(r.tags["bsky/trigger_batch"] == "batch-1.jsonl" for r in first.run_requests)
    cursor = json.loads(first.cursor)
    assert set(cursor) == {"2024-06-01", "2024-06-02"}

    # Nothing changed: no folder is listed again, no run requested.
    second = tick(defs, instance, first.cursor)
    assert second.run_requests == [] and "no new batch files" in second.skip_message

    # A second batch for one day: one new request with a new run key for that day only.
    age(write_jsonl(landing_root / "2024-06-01" / "batch-2.jsonl", [post("3")]))
    third = tick(defs, instance, second.cursor)
    assert [r.partition_key for r in third.run_requests] == ["2024-06-01"]
    old_key = next(r.run_key for r in first.run_requests if r.partition_key == "2024-06-01")
    assert third.run_requests[0].run_key != old_key
    assert third.run_requests[0].tags["bsky/batch_files"] == "2"


def test_unfinished_files_are_skipped_until_they_settle(
    defs: dg.Definitions, instance: dg.DagsterInstance, landing_root: Path
):
    day = landing_root / "2024-06-01"
    day.mkdir()
    (day / ".batch-1.jsonl.tmp").write_text("being written")  # write-then-rename in progress
    (day / "batch-0.jsonl.part").write_text("being written")
    result = tick(defs, instance, None)
    assert result.run_requests == []

    fresh = write_jsonl(day / "batch-1.jsonl", [post("1")])  # just written: not yet settled
    result = tick(defs, instance, None)
    assert result.run_requests == []
    assert "2024-06-01" not in json.loads(result.cursor)  # looked at again on the next tick

    age(fresh)
    result = tick(defs, instance, result.cursor)
    assert [r.partition_key for r in result.run_requests] == ["2024-06-01"]


def test_same_files_give_the_same_run_key(
    defs: dg.Definitions, instance: dg.DagsterInstance, landing_root: Path
):
    age(write_jsonl(landing_root / "2024-06-01" / "b.jsonl", [post("1")]))
    first = tick(defs, instance, None).run_requests[0].run_key
    again = tick(defs, instance, None).run_requests[0].run_key  # e.g. a lost cursor
    assert first == again  # Dagster drops the duplicate request by its run key


def test_missing_landing_folder_skips(tmp_path: Path, instance: dg.DagsterInstance):
    context = dg.build_sensor_context(
        instance=instance, resources={"landing": LandingFolder(path=str(tmp_path / "nope"))}
    )
    result = landing_sensor(context)
    assert isinstance(result, dg.SkipReason)
    assert "does not exist" in result.skip_message


def test_build_sensor_context_direct_invocation(tmp_path: Path, instance: dg.DagsterInstance):
    age(write_jsonl(tmp_path / "2024-06-03" / "b.jsonl", [post("1")]))
    context = dg.build_sensor_context(
        instance=instance, resources={"landing": LandingFolder(path=str(tmp_path))}
    )
    requests = landing_sensor(context)
    assert [r.partition_key for r in requests] == ["2024-06-03"]
    assert json.loads(context.cursor) == {
        "2024-06-03": (tmp_path / "2024-06-03").stat().st_mtime_ns
    }
