"""The reliability probes as a reproducible fault suite: kill -9 mid-step, a Postgres restart
mid-step, two runs of one day, a storm of 429s and 5xx. Each checks that nothing is lost or
duplicated and counts the API calls wasted (paid for but not stored).

With BSKY_RELIABILITY_REPORT=path set, each scenario appends its figures (one JSON line), the
source of docs/reliability.md.
"""

import json
import os
import signal
import subprocess
import threading
import time
from datetime import date

import dagster as dg
import pytest
from dagster._core.instance.ref import InstanceRef

from bsky_assets.db.client import PostgresClient
from bsky_assets.db.embedded import (
    ensure_embedded_server,
    restart_embedded_server,
    stop_embedded_server,
)
from bsky_assets.db.tables import PERSPECTIVE_LABELS
from bsky_assets.definitions import build_definitions
from bsky_assets.resources.landing import LandingFolder
from bsky_assets.resources.perspective import PerspectiveResource
from bsky_assets.resources.postgres import PostgresResource
from bsky_assets.sample_data import write_sample_day
from bsky_assets_tests.conftest import (
    materialize_day,
    materialize_in_subprocess,
    subprocess_env,
    use_perspective,
)

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]
DAY = date(2024, 7, 1)
IN_FLIGHT = {"batch_size": 20, "concurrency": 2}  # at most 40 parts paid for and not yet stored


def report(scenario: str, **figures) -> None:
    path = os.environ.get("BSKY_RELIABILITY_REPORT")
    if path:
        with open(path, "a") as handle:
            handle.write(json.dumps({"scenario": scenario, **figures}) + "\n")


def label_figures(client: PostgresClient, scored_parts: int) -> dict:
    """Posts, lost, duplicated and wasted, from the database and the server's own counters.

    lost: a valid post with no row at all; a row that says `retries_exhausted` is not lost (it
    says why, and the next run sends the post again). wasted: parts the server scored whose
    score was never stored (paid for twice, or not at all)."""
    valid = client.fetch_all(
        f"SELECT count(*) FROM {client.qualified('valid_posts')} "
        "WHERE partition_date = %s AND is_valid",
        (DAY,),
    )[0][0]
    rows, distinct, labelled, retryable = client.fetch_all(
        "SELECT count(*), count(DISTINCT uri), count(*) FILTER (WHERE was_successfully_labeled), "
        f"count(*) FILTER (WHERE retryable) FROM {client.qualified('perspective_labels')} "
        "WHERE partition_date = %s AND labeler <> 'bsky_assets.valid_posts'",
        (DAY,),
    )[0]
    return {
        "posts": int(valid),
        "lost": int(valid) - int(distinct),
        "duplicated": int(rows) - int(distinct),
        "labelled": int(labelled),
        "retryable_failures": int(retryable),
        "api_parts_scored": scored_parts,
        "wasted_api_calls": scored_parts - int(labelled),
    }


def prepare(postgres, landing_root, posts: int, **tuning):
    write_sample_day(landing_root, DAY, posts=posts, batch_size=posts, malformed=False)
    perspective = PerspectiveResource(**{"requests_per_second": 10_000, **IN_FLIGHT, **tuning})
    defs = build_definitions(
        postgres=postgres, landing=LandingFolder(path=str(landing_root)), perspective=perspective
    )
    assert materialize_day(defs, DAY, upstream_of="valid_posts").success
    postgres.get_client().ensure_table(PERSPECTIVE_LABELS)  # so progress can be polled
    return defs


def cli_run(database_url, db_schema, landing_root, tmp_path, url: str) -> subprocess.Popen:
    env = subprocess_env(
        database_url,
        BSKY_DB_SCHEMA=db_schema,
        BSKY_LANDING_DIR=str(landing_root),
        PERSPECTIVE_URL=url,
        PERSPECTIVE_REQUESTS_PER_SECOND="10000",
    )
    config = {"resources": {"perspective": {"config": IN_FLIGHT}}}
    return materialize_in_subprocess(env, tmp_path, "perspective_labels", DAY, config)


def valid_posts(client: PostgresClient) -> int:
    return client.fetch_all(
        f"SELECT count(*) FROM {client.qualified('valid_posts')} "
        "WHERE partition_date = %s AND is_valid",
        (DAY,),
    )[0][0]


def rows_written(client: PostgresClient) -> int:
    return client.fetch_all(
        f"SELECT count(*) FROM {client.qualified('perspective_labels')} "
        "WHERE partition_date = %s AND labeler <> 'bsky_assets.valid_posts'",
        (DAY,),
    )[0][0]


def test_kill_9_mid_step_loses_nothing_and_resumes(
    postgres, client, database_url, db_schema, landing_root, tmp_path, serve
):
    prepare(postgres, landing_root, posts=400)
    server = serve.perspective(latency_ms=150)
    use_perspective(server.url)
    run = cli_run(database_url, db_schema, landing_root, tmp_path, server.url)
    deadline = time.monotonic() + 240
    while rows_written(client) < 80:
        assert run.poll() is None, run.stderr.read()[-3000:]
        assert time.monotonic() < deadline
        time.sleep(0.1)
    os.killpg(run.pid, signal.SIGKILL)
    run.wait(timeout=30)
    killed_at = rows_written(client)

    rerun = cli_run(database_url, db_schema, landing_root, tmp_path, server.url)
    _out, err = rerun.communicate(timeout=300)
    assert rerun.returncode == 0, err[-3000:]
    figures = label_figures(client, server.stats["status_200"])
    assert figures["lost"] == 0 and figures["duplicated"] == 0
    assert figures["wasted_api_calls"] <= 2 * 20  # at most the batches in flight
    report("kill -9 of `dagster asset materialize` mid-step", rows_at_kill=killed_at, **figures)


def test_postgres_restart_mid_step_is_retried(tmp_path, landing_root, serve):
    """Its own embedded server, restarted (fast: every connection cut) while labelling."""
    pgdata = tmp_path / "pg" / "postgres"
    url = ensure_embedded_server(pgdata)
    postgres = PostgresResource(
        database_url=url.render_as_string(hide_password=False), db_schema="faults"
    )
    client = postgres.get_client()
    defs = prepare(postgres, landing_root, posts=400)
    server = serve.perspective(latency_ms=100)
    use_perspective(server.url)

    def restart_when_half_done() -> None:
        while rows_written(client) < 100:
            time.sleep(0.05)
        restart_embedded_server(pgdata)

    restarter = threading.Thread(target=restart_when_half_done)
    restarter.start()
    try:
        result = materialize_day(defs, DAY, upstream_of="perspective_labels")
    finally:
        restarter.join(timeout=120)

    try:
        assert result.success
        figures = label_figures(client, server.stats["status_200"])
        assert figures["lost"] == 0 and figures["duplicated"] == 0
        assert figures["wasted_api_calls"] == 0  # paid-for results were written after reconnecting
        report("Postgres restarted mid-step", **figures)
    finally:
        stop_embedded_server(pgdata)


def test_two_runs_of_one_day_pay_once(
    postgres, client, database_url, db_schema, landing_root, tmp_path, serve
):
    prepare(postgres, landing_root, posts=300)
    server = serve.perspective(latency_ms=50)
    runs = [cli_run(database_url, db_schema, landing_root, tmp_path, server.url) for _ in "ab"]
    for run in runs:
        _, err = run.communicate(timeout=300)
        assert run.returncode == 0, err[-3000:]
    figures = label_figures(client, server.stats["status_200"])
    assert figures["lost"] == 0 and figures["duplicated"] == 0
    assert figures["wasted_api_calls"] == 0  # the second run waited, then found nothing to send
    report("two runs of one day at once", **figures)


def test_a_storm_of_429_and_5xx(postgres, client, landing_root, serve):
    fast_backoff = {"initial_backoff_seconds": 0.01, "max_backoff_seconds": 0.05}
    defs = prepare(postgres, landing_root, posts=400, **fast_backoff)
    server = serve.perspective(fault_429_share=0.3, fault_5xx_share=0.2, seed=4)
    use_perspective(server.url)
    assert materialize_day(defs, DAY, upstream_of="perspective_labels").success
    first = label_figures(client, server.stats["status_200"])
    assert first["lost"] == 0 and first["duplicated"] == 0 and first["wasted_api_calls"] == 0
    # a part that failed 7 times in a row is recorded as retries_exhausted, and sent again:
    assert materialize_day(defs, DAY, upstream_of="perspective_labels").success
    figures = label_figures(client, server.stats["status_200"])
    assert figures["labelled"] == figures["posts"] and figures["wasted_api_calls"] == 0
    report(
        "30 % 429 and 20 % 5xx, then a second run",
        retries_exhausted_after_the_first_run=first["retryable_failures"],
        requests_per_scored_part=round(server.stats["parts"] / figures["api_parts_scored"], 2),
        **figures,
    )


def test_a_killed_run_is_closed_its_slot_freed_and_the_day_finished(
    database_url, client, db_schema, landing_root, tmp_path, serve
):
    """Under `dagster dev` (the default run launcher) with the project's local instance: kill -9
    the run worker mid-step; dead_run_sensor marks the run failed and frees its pool slot, and
    run retries finish the day. The pool is limited to 1, so the retry could not even start if
    the dead run kept its slot."""
    import psutil
    from dagster_graphql import DagsterGraphQLClient

    from bsky_assets.sensors.dead_runs import run_worker_pid
    from bsky_assets_tests.dagster_dev import DagsterDev, wait_for

    write_sample_day(landing_root, DAY, posts=300, batch_size=300, malformed=False)
    server = serve.perspective(latency_ms=300)
    environment = {
        "DATABASE_URL": database_url.render_as_string(hide_password=False),
        "BSKY_DB_SCHEMA": db_schema,
        "BSKY_LANDING_DIR": str(landing_root),
        "PERSPECTIVE_URL": server.url,
        "PERSPECTIVE_REQUESTS_PER_SECOND": "10000",
        "OPENAI_BASE_URL": serve.llm().url,
        "BSKY_LLM_REQUESTS_PER_MINUTE": "600000",
    }
    pools = {"concurrency": {"pools": {"granularity": "op", "default_limit": 1}}}
    with DagsterDev(tmp_path / "home", environment, instance=pools) as dev:
        graphql = DagsterGraphQLClient("127.0.0.1", port_number=dev.port)
        run_id = graphql.submit_job_execution(
            "label_posts",
            repository_location_name="bsky_assets",
            repository_name="__repository__",
            tags={"dagster/partition": DAY.isoformat()},
        )
        client.ensure_table(PERSPECTIVE_LABELS)
        deadline = time.monotonic() + 240
        while rows_written(client) < 40:
            assert time.monotonic() < deadline, dev.log.read_text()[-3000:]
            time.sleep(0.2)
        with dg.DagsterInstance.from_ref(InstanceRef.from_dir(str(dev.home))) as instance:
            worker = psutil.Process(run_worker_pid(instance, run_id))
            for process in [*worker.children(recursive=True), worker]:  # the worker and its steps
                process.kill()

            def status(run: str) -> str:
                return instance.get_run_by_id(run).status.value

            wait_for(lambda: status(run_id) == "FAILURE", 120, "the dead run to be closed")
            # The day is finished by whichever run gets the freed pool slot next (the retry, or
            # the run landing_sensor queued for the same day): it could not start otherwise.
            wait_for(
                lambda: rows_written(client) >= valid_posts(client), 300, "the day to be finished"
            )

            def finished_runs_holding_slots() -> set[str]:
                finished = {
                    r.dagster_run.run_id
                    for r in instance.get_run_records()
                    if r.dagster_run.is_finished
                }
                return set(instance.event_log_storage.get_concurrency_run_ids()) & finished

            wait_for(lambda: not finished_runs_holding_slots(), 60, "slots of finished runs")
    figures = label_figures(client, server.stats["status_200"])
    assert figures["lost"] == 0 and figures["duplicated"] == 0
    report(
        "run worker killed under dagster dev: failed, slots freed, day finished by the next run",
        **figures,
    )
