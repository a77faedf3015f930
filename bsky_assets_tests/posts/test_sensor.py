"""The landing sensor: run keys, cursor, skipped folders and unfinished files."""

import json
import os
import time
from pathlib import Path

import dagster as dg
import pytest

from bsky_assets.lib.partitions import daily_partitions
from bsky_assets.posts.resource import LandingFolder
from bsky_assets.posts.sensor import landing_sensor as build_landing_sensor
from bsky_assets_tests.conftest import post, write_jsonl

landing_sensor = build_landing_sensor(daily_partitions("2024-01-01"), "label_posts")


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
    cursor = json.loads(first.cursor)["folders"]
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
    assert "2024-06-01" not in json.loads(result.cursor)["folders"]  # looked at again next tick

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
    assert json.loads(context.cursor)["folders"] == {
        "2024-06-03": (tmp_path / "2024-06-03").stat().st_mtime_ns
    }


def test_a_cursor_of_the_earlier_shape_is_read(
    defs: dg.Definitions, instance: dg.DagsterInstance, landing_root: Path
):
    """Cursors written before the sensor kept settling files (folder mtimes only) still work."""
    age(write_jsonl(landing_root / "2024-06-01" / "b.jsonl", [post("1")]))
    folders = {"2024-06-01": (landing_root / "2024-06-01").stat().st_mtime_ns}
    result = tick(defs, instance, json.dumps(folders))
    assert result.run_requests == [] and json.loads(result.cursor)["folders"] == folders


class SensorClock:
    """The sensor's wall clock, moved by the test (ticks 15 s apart without waiting)."""

    def __init__(self) -> None:
        self.now_ns = time.time_ns()

    def time_ns(self) -> int:
        return self.now_ns

    def advance(self, seconds: float) -> None:
        self.now_ns += int(seconds * 1e9)


def test_a_file_from_the_future_is_picked_up_once_stable(
    defs: dg.Definitions, instance: dg.DagsterInstance, landing_root: Path, monkeypatch
):
    """A batch whose mtime is a day ahead (a writer's clock, a copy that kept its times) is
    settled when it has not changed between two observations 5 s apart, not when the wall
    clock passes its mtime; a file that keeps changing keeps waiting."""
    import bsky_assets.posts.sensor as sensor_module

    clock = SensorClock()
    monkeypatch.setattr(sensor_module, "time", clock)
    future = time.time() + 86_400
    batch = write_jsonl(landing_root / "2024-06-01" / "batch-1.jsonl", [post("1")])
    os.utime(batch, (future, future))

    first = tick(defs, instance, None)
    assert first.run_requests == []  # seen once: not yet known to be stable
    clock.advance(15)
    second = tick(defs, instance, first.cursor)
    assert [r.partition_key for r in second.run_requests] == ["2024-06-01"]

    growing = write_jsonl(landing_root / "2024-06-02" / "batch-1.jsonl", [post("2")])
    os.utime(growing, (future, future))
    third = tick(defs, instance, second.cursor)
    clock.advance(15)
    with growing.open("ab") as handle:  # written in place, still in the future
        handle.write(json.dumps(post("3")).encode() + b"\n")
    os.utime(growing, (future + 1, future + 1))
    fourth = tick(defs, instance, third.cursor)
    assert fourth.run_requests == []  # it changed since the last look
    clock.advance(15)
    fifth = tick(defs, instance, fourth.cursor)
    assert [r.partition_key for r in fifth.run_requests] == ["2024-06-02"]
