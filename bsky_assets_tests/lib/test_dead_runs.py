"""dead_run_sensor: a STARTED run whose worker is gone is closed; a live one is left alone."""

import os
import subprocess
import uuid

import dagster as dg
from dagster._core.events import EngineEventData
from dagster._core.storage.dagster_run import DagsterRun, DagsterRunStatus

from bsky_assets.lib.dead_runs import dead_run_sensor


def started_run(instance: dg.DagsterInstance, pid: int) -> DagsterRun:
    run = instance.add_run(
        DagsterRun(
            job_name="label_posts", run_id=str(uuid.uuid4()), status=DagsterRunStatus.STARTED
        )
    )
    instance.report_engine_event(
        f"Started process for run (pid: {pid}).", run, EngineEventData.in_process(pid)
    )
    return run


def test_a_run_whose_worker_died_is_failed_and_a_live_one_is_not() -> None:
    finished = subprocess.Popen(["true"])
    finished.wait()  # a pid that no longer exists
    with dg.instance_for_test() as instance:
        dead = started_run(instance, finished.pid)
        alive = started_run(instance, os.getpid())
        result = dead_run_sensor(dg.build_sensor_context(instance=instance))
        assert instance.get_run_by_id(dead.run_id).status == DagsterRunStatus.FAILURE
        assert instance.get_run_by_id(alive.run_id).status == DagsterRunStatus.STARTED
        assert dead.run_id in str(result.skip_message)
        failure = instance.get_records_for_run(
            dead.run_id, of_type=dg.DagsterEventType.RUN_FAILURE
        ).records
        assert "is gone" in failure[0].event_log_entry.message
