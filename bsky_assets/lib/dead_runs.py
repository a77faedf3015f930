"""Close runs whose worker process died (kill -9, OOM, a reboot), so nothing waits on them.

Dagster's run monitoring can only ask a run launcher that checks worker health, and the default
launcher (`dagster dev`, a single machine) does not: a run whose worker was killed together with
its parent stays STARTED forever, and even a run Dagster did mark failed keeps the pool slots its
killed steps claimed, so the next run of that pool ("Step blocked by limit for pool
perspective_api") waits indefinitely. This sensor does what run monitoring would: a STARTED run
whose worker process is gone is marked failed (run retries, `run_retries` in dagster.yaml, then
re-run it), and pool slots held by runs that have finished are freed. It runs beside the worker
(the same machine), which is where the default launcher starts them.
"""

from __future__ import annotations

import dagster as dg
import psutil

STARTED = "STARTED"


def run_worker_pid(instance: dg.DagsterInstance, run_id: str) -> int | None:
    """The pid the run worker reported when it started ("Started process for run")."""
    records = instance.get_records_for_run(
        run_id, of_type=dg.DagsterEventType.ENGINE_EVENT, limit=50
    ).records
    for record in records:
        event = record.event_log_entry.dagster_event
        data = event.engine_event_data if event else None
        pid = (data.metadata or {}).get("pid") if data else None
        if pid is not None and "Started process for run" in (record.event_log_entry.message or ""):
            return int(pid.value if hasattr(pid, "value") else pid)
    return None


def worker_is_gone(pid: int, run_started_at: float | None) -> bool:
    """No such process, or one that started after the run did (the pid was reused)."""
    try:
        process = psutil.Process(pid)
        if run_started_at is not None and process.create_time() > run_started_at + 1:
            return True
        return process.status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


@dg.sensor(
    minimum_interval_seconds=15,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Marks runs whose worker process died as failed: frees their pool slots and "
    "lets run retries finish the day.",
)
def dead_run_sensor(context: dg.SensorEvaluationContext):
    instance = context.instance
    closed, freed = [], []
    storage = instance.event_log_storage
    for run_id in sorted(storage.get_concurrency_run_ids()):
        run = instance.get_run_by_id(run_id)
        if run is None or run.is_finished:
            storage.free_concurrency_slots_for_run(run_id)
            freed.append(run_id)
            context.log.warning(f"freed the pool slots still held by finished run {run_id}")
    for record in instance.get_run_records(dg.RunsFilter(statuses=[dg.DagsterRunStatus.STARTED])):
        run = record.dagster_run
        pid = run_worker_pid(instance, run.run_id)
        if pid is None or not worker_is_gone(pid, record.start_time):
            continue
        message = (
            f"the run worker (pid {pid}) is gone: killed or crashed. Marked failed by "
            "dead_run_sensor; its pool slots are freed and run retries may re-run it."
        )
        instance.report_run_failed(run, message)
        storage.free_concurrency_slots_for_run(run.run_id)
        closed.append(run.run_id)
        context.log.warning(f"run {run.run_id}: {message}")
    if not closed and not freed:
        return dg.SkipReason("no dead runs, no slots held by finished runs")
    return dg.SkipReason(
        f"closed {len(closed)} dead run(s) {closed}; freed slots of {len(freed)} finished "
        f"run(s) {freed}"
    )
