"""The reliability probes as a reproducible fault suite: kill -9 mid-step, a Postgres restart
mid-step, two runs of one day, a storm of 429s and 5xx. Each checks that nothing is lost or
duplicated and counts the API calls wasted (paid for but not stored).

With BSKY_RELIABILITY_REPORT=path set, each scenario appends its figures (one JSON line), the
source of docs/reliability.md.
"""

import contextlib
import json
import os
import signal
import subprocess
import threading
import time
from datetime import date

import dagster as dg
import psycopg
import pytest
from dagster._core.instance.ref import InstanceRef

from bsky_assets.definitions import build_definitions
from bsky_assets.lib.db.client import PostgresClient
from bsky_assets.lib.db.embedded import (
    ensure_embedded_server,
    restart_embedded_server,
    stop_embedded_server,
    to_libpq_url,
)
from bsky_assets.lib.db.resource import PostgresResource
from bsky_assets.perspective.resource import PerspectiveResource
from bsky_assets.perspective.tables import PERSPECTIVE_LABELS
from bsky_assets.posts.resource import LandingFolder
from bsky_assets.tools.sample_data import write_sample_day
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
    assert run.returncode == -signal.SIGKILL  # the kill landed ...
    assert killed_at < valid_posts(client)  # ... mid-step

    rerun = cli_run(database_url, db_schema, landing_root, tmp_path, server.url)
    _out, err = rerun.communicate(timeout=300)
    assert rerun.returncode == 0, err[-3000:]
    figures = label_figures(client, server.stats["status_200"])
    assert figures["lost"] == 0 and figures["duplicated"] == 0
    assert figures["wasted_api_calls"] <= 2 * 20  # at most the batches in flight
    report("kill -9 of `dagster asset materialize` mid-step", rows_at_kill=killed_at, **figures)


def postmaster_started(client: PostgresClient):
    return client.fetch_all("SELECT pg_postmaster_start_time()")[0][0]


def postmaster_pid(pgdata) -> int:
    return int((pgdata / "postmaster.pid").read_text().split()[0])


def own_embedded_server(tmp_path, landing_root) -> tuple:
    """A Postgres of the test's own (the fault is done to it), prepared with a 400-post day."""
    pgdata = tmp_path / "pg" / "postgres"
    url = ensure_embedded_server(pgdata)
    postgres = PostgresResource(
        database_url=url.render_as_string(hide_password=False), db_schema="faults"
    )
    defs = prepare(postgres, landing_root, posts=400)
    return pgdata, postgres.get_client(), defs


def label_with_a_fault_mid_step(client: PostgresClient, defs, fault) -> tuple:
    """Label DAY while `fault()` strikes once 100 of its rows are stored (a quarter of the day,
    from another thread); the run's result and the rows stored when the fault struck. Fails
    unless the fault ran to its end: a fault that did not happen proves nothing."""
    outcome: list = []

    def strike_when_a_quarter_is_done() -> None:
        try:
            while rows_written(client) < 100:
                time.sleep(0.05)
            at = rows_written(client)
            fault()
            outcome.append(at)
        except BaseException as error:  # reported by the test, never a thread warning
            outcome.append(error)

    striker = threading.Thread(target=strike_when_a_quarter_is_done)
    striker.start()
    try:
        result = materialize_day(defs, DAY, upstream_of="perspective_labels", raise_on_error=False)
    finally:
        striker.join(timeout=180)
    assert not striker.is_alive() and len(outcome) == 1
    assert not isinstance(outcome[0], BaseException), repr(outcome[0])
    assert outcome[0] < valid_posts(client)  # the fault came mid-step
    return result, outcome[0]


def test_postgres_restart_mid_step_is_retried(tmp_path, landing_root, serve):
    """Its own embedded server, restarted (fast: every connection cut) while labelling."""
    pgdata, client, defs = own_embedded_server(tmp_path, landing_root)
    server = serve.perspective(latency_ms=100)
    use_perspective(server.url)
    started = postmaster_started(client)
    try:
        # restart_embedded_server raises unless pg_ctl reports the restart done
        result, restarted_at = label_with_a_fault_mid_step(
            client, defs, lambda: restart_embedded_server(pgdata)
        )
        assert postmaster_started(client) > started  # the server really restarted
        assert result.success
        figures = label_figures(client, server.stats["status_200"])
        assert figures["lost"] == 0 and figures["duplicated"] == 0
        assert figures["wasted_api_calls"] == 0  # paid-for results were written after reconnecting
        report("Postgres restarted mid-step", rows_at_restart=restarted_at, **figures)
    finally:
        stop_embedded_server(pgdata)


def test_postgres_killed_mid_step_is_started_again(tmp_path, landing_root, serve):
    """kill -9 of the embedded server's postmaster while labelling: the client's reconnect
    finds the server dead and starts it again (db/embedded.py), and the step finishes."""
    import psutil

    pgdata, client, defs = own_embedded_server(tmp_path, landing_root)
    server = serve.perspective(latency_ms=100)
    use_perspective(server.url)
    postmaster = postmaster_pid(pgdata)
    try:
        result, killed_at = label_with_a_fault_mid_step(
            client, defs, lambda: os.kill(postmaster, signal.SIGKILL)
        )
        with contextlib.suppress(psutil.NoSuchProcess):  # the kill landed: dead, or a zombie
            assert psutil.Process(postmaster).status() == psutil.STATUS_ZOMBIE
        assert postmaster_pid(pgdata) != postmaster  # a new server runs on the same data
        assert result.success
        figures = label_figures(client, server.stats["status_200"])
        assert figures["lost"] == 0 and figures["duplicated"] == 0
        report("Postgres postmaster killed (-9) mid-step", rows_at_kill=killed_at, **figures)
    finally:
        stop_embedded_server(pgdata)


def lock_waiters(client: PostgresClient, or_query_like: str = "") -> int:
    """Sessions waiting right now on an advisory lock (or on a row lock in a query that looks
    like `or_query_like`): the runs under test are the only other sessions."""
    return client.fetch_all(
        "SELECT count(*) FROM pg_stat_activity WHERE pid <> pg_backend_pid() "
        "AND wait_event_type = 'Lock' AND (wait_event = 'advisory' OR query LIKE %s)",
        (or_query_like or "-",),
    )[0][0]


def test_two_runs_of_one_day_pay_once(
    postgres, client, database_url, db_schema, landing_root, tmp_path, serve
):
    prepare(postgres, landing_root, posts=300)
    server = serve.perspective(latency_ms=500)
    runs = [cli_run(database_url, db_schema, landing_root, tmp_path, server.url) for _ in "ab"]
    errors = []
    for run in runs:
        _, err = run.communicate(timeout=300)
        assert run.returncode == 0, err[-3000:]
        errors.append(err)
    waited = [e for e in errors if "another run is labelling perspective_labels" in e]
    assert len(waited) == 1, "the two runs never overlapped: neither waited for the other's lease"
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
    assert server.stats["injected_429"] > 0 and server.stats["injected_5xx"] > 0  # the storm
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

    from bsky_assets.lib.dead_runs import run_worker_pid
    from bsky_assets_tests.dagster_dev import DagsterDev, wait_for

    # 800 posts, 20 parts per 300 ms and rows written 200 at a time: the kill lands mid-step
    write_sample_day(landing_root, DAY, posts=800, batch_size=800, malformed=False)
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
            run_config={"resources": {"perspective": {"config": IN_FLIGHT}}},  # ~5 s of labelling
            tags={"dagster/partition": DAY.isoformat()},
        )
        client.ensure_table(PERSPECTIVE_LABELS)
        with dg.DagsterInstance.from_ref(InstanceRef.from_dir(str(dev.home))) as instance:
            deadline = time.monotonic() + 240
            worker = None
            while rows_written(client) < 40:
                assert time.monotonic() < deadline, dev.log.read_text()[-3000:]
                if worker is None and rows_written(client):  # found while labelling goes on
                    worker = psutil.Process(run_worker_pid(instance, run_id))
                time.sleep(0.05)
            worker = worker or psutil.Process(run_worker_pid(instance, run_id))
            killed = [*worker.children(recursive=True), worker]  # the worker and its steps
            killed_at = rows_written(client)
            for process in killed:
                process.kill()
            _, alive = psutil.wait_procs(killed, timeout=30)
            assert not alive  # the kill landed ...
            assert killed_at < valid_posts(client)  # ... mid-step

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
        rows_at_kill=killed_at,
        **figures,
    )


def test_two_ingests_of_one_day_at_once_both_finish(
    postgres, client, database_url, db_schema, landing_root, tmp_path
):
    """Two `dagster asset materialize` runs re-ingest the same day at once (held at the same
    point by a lock on the day's rows): one writes the day, the other waits, then replaces it
    with the same rows. Before, the second failed with a UniqueViolation."""
    write_sample_day(landing_root, DAY, posts=300, batch_size=100)  # with malformed lines
    defs = build_definitions(postgres=postgres, landing=LandingFolder(path=str(landing_root)))
    assert materialize_day(defs, DAY, upstream_of="preprocessed_posts").success
    tables = ("preprocessed_posts", "landing_rejects")

    def day_rows() -> dict[str, list]:
        return {
            t: client.fetch_all(
                f"SELECT * FROM {client.qualified(t)} WHERE partition_date = %s ORDER BY 2, 3",
                (DAY,),
            )
            for t in tables
        }

    before = day_rows()
    env = subprocess_env(database_url, BSKY_DB_SCHEMA=db_schema, BSKY_LANDING_DIR=str(landing_root))
    with client.engine.connect() as held:
        held.connection.driver_connection.execute(
            f"SELECT 1 FROM {client.qualified('preprocessed_posts')} WHERE partition_date = %s "
            "FOR UPDATE",
            (DAY,),
        )
        runs = [materialize_in_subprocess(env, tmp_path, ",".join(tables), DAY) for _ in "ab"]
        deleting = f"DELETE FROM {client.qualified('preprocessed_posts')}%"
        deadline = time.monotonic() + 240
        while lock_waiters(client, deleting) < 2:  # both runs at their write, one behind the other
            assert all(r.poll() is None for r in runs), runs[0].stderr.read()[-3000:]
            assert time.monotonic() < deadline, "the two ingests never met"
            time.sleep(0.1)
        held.connection.driver_connection.rollback()
    for run in runs:
        _, err = run.communicate(timeout=300)
        assert run.returncode == 0, err[-3000:]
    after = day_rows()
    assert after == before  # the same day, once: nothing duplicated, nothing lost
    report(
        "two ingests of one day at once",
        posts=len(after["preprocessed_posts"]),
        rejects=len(after["landing_rejects"]),
        runs_succeeded=2,
    )


# The peak is the process's own VmHWM: ru_maxrss would also count the parent's (pytest's) peak,
# folded in when the child execs.
INGEST_PEAK = """
import json, re
from bsky_assets.definitions import defs
import dagster as dg
job = defs.resolve_implicit_global_asset_job_def().get_subset(
    asset_selection={dg.AssetKey("preprocessed_posts"), dg.AssetKey("landing_rejects")}
)
result = job.execute_in_process(partition_key="%s", raise_on_error=False)
peak_kb = int(re.search(r"VmHWM:\\s+(\\d+) kB", open("/proc/self/status").read()).group(1))
print(json.dumps({"success": result.success, "peak_rss_mb": round(peak_kb / 1024)}))
"""


def ingest_peak(database_url, db_schema, landing_root) -> dict:
    """Ingest DAY in a process of its own; its peak RSS (the whole process: Dagster included)."""
    import sys

    env = subprocess_env(database_url, BSKY_DB_SCHEMA=db_schema, BSKY_LANDING_DIR=str(landing_root))
    completed = subprocess.run(
        [sys.executable, "-c", INGEST_PEAK % DAY.isoformat()],
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    measured = json.loads(completed.stdout.strip().splitlines()[-1])
    assert measured["success"], completed.stderr[-3000:]
    return measured


def stored(client: PostgresClient) -> dict:
    posts = client.fetch_all(
        f"SELECT count(*) FROM {client.qualified('preprocessed_posts')} WHERE partition_date = %s",
        (DAY,),
    )[0][0]
    rejects, excerpt_bytes = client.fetch_all(
        f"SELECT count(*), coalesce(sum(octet_length(raw_line)), 0) FROM "
        f"{client.qualified('landing_rejects')} WHERE partition_date = %s",
        (DAY,),
    )[0]
    return {"posts": posts, "rejects": rejects, "raw_line_bytes": int(excerpt_bytes)}


def test_a_day_whose_worst_line_is_1_gb(client, database_url, db_schema, landing_root):
    """200 good posts and one 1 GB line in a 1 MB .jsonl.gz: the line becomes one reject and
    the ingest's memory stays bounded by the per-line limit, not by the line."""
    import gzip

    from bsky_assets_tests.conftest import post

    day = landing_root / DAY.isoformat()
    day.mkdir()
    with gzip.open(day / "batch.jsonl.gz", "wb") as handle:  # the same day without the line
        for where in ("before", "after"):
            for i in range(100):
                handle.write(json.dumps(post(f"{where}-{i}")).encode() + b"\n")
    baseline = ingest_peak(database_url, db_schema, landing_root)["peak_rss_mb"]
    with gzip.open(day / "batch.jsonl.gz", "wb", compresslevel=1) as handle:
        for i in range(100):
            handle.write(json.dumps(post(f"before-{i}")).encode() + b"\n")
        huge = json.dumps(post("huge", text="")).encode()
        handle.write(huge[: huge.index(b'"text": "') + len(b'"text": "')])  # a whole post ...
        for _ in range(1024):
            handle.write(b"x" * 1024 * 1024)  # ... whose text is 1 GB
        handle.write(huge[huge.index(b'"text": "') + len(b'"text": "') :] + b"\n")
        for i in range(100):
            handle.write(json.dumps(post(f"after-{i}")).encode() + b"\n")
    sent = (day / "batch.jsonl.gz").stat().st_size
    measured = ingest_peak(database_url, db_schema, landing_root)
    figures = stored(client)
    assert measured["peak_rss_mb"] < 500
    assert figures["posts"] == 200 and figures["rejects"] == 1
    reason = client.fetch_all(f"SELECT reason FROM {client.qualified('landing_rejects')}")
    assert reason == [("line_too_long",)]
    report(
        "a 1 GB line among 200 posts (.jsonl.gz)",
        file_bytes=sent,
        peak_rss_mb_without_the_line=baseline,
        lost=0,
        **figures,
        **measured,
    )


def test_500000_contract_breaking_lines(client, database_url, db_schema, landing_root):
    """500,000 lines of 2 kB that break the contract (no timestamps), in a small .gz: a row
    each, written as they come, and a bounded sample of their text."""
    import gzip

    day = landing_root / DAY.isoformat()
    day.mkdir()
    broken = json.dumps({"uri": "at://did:plc:x/app.bsky.feed.post/1", "text": "b" * 2_000})
    with gzip.open(day / "broken.jsonl.gz", "wb") as handle:
        for _ in range(500):
            handle.write((broken + "\n").encode() * 1_000)
    sent = (day / "broken.jsonl.gz").stat().st_size
    measured = ingest_peak(database_url, db_schema, landing_root)
    figures = stored(client)
    assert measured["peak_rss_mb"] < 500
    assert figures["rejects"] == 500_000 and figures["posts"] == 0
    assert figures["raw_line_bytes"] <= 1_000 * 2_000
    report("500,000 contract-breaking lines (.gz)", file_bytes=sent, lost=0, **figures, **measured)


def step_failures(home) -> dict[str, str]:
    """The failure text (message, error and its causes) of every failed step of the one run
    recorded in DAGSTER_HOME `home`."""
    with dg.DagsterInstance.from_ref(InstanceRef.from_dir(str(home))) as instance:
        (run,) = instance.get_runs()
        failures = {}
        for record in instance.get_records_for_run(
            run.run_id, of_type=dg.DagsterEventType.STEP_FAILURE
        ).records:
            event = record.event_log_entry.dagster_event
            error = event.step_failure_data.error
            texts = [record.event_log_entry.message or ""]
            while error is not None:
                texts.append(error.to_string())
                error = error.cause or error.context
            failures[event.step_key] = "\n".join(texts)
        return failures


def test_a_terminated_step_ends_without_a_database_error(
    postgres, client, database_url, db_schema, landing_root, tmp_path, serve
):
    """SIGINT to `dagster asset materialize` (what terminating a run does to its step) while
    perspective_labels is labelling, with the unpartitioned successor in the same launch: the
    step fails with the interruption alone (no psycopg error: an interrupt mid-query used to
    leave the connection ACTIVE and the pool's ping failed on it), the lease is given back,
    the successor shows no error, and the re-run sends only the posts still missing."""
    prepare(postgres, landing_root, posts=400)
    server = serve.perspective(latency_ms=150)
    use_perspective(server.url)
    env = subprocess_env(
        database_url,
        BSKY_DB_SCHEMA=db_schema,
        BSKY_LANDING_DIR=str(landing_root),
        PERSPECTIVE_URL=server.url,
        PERSPECTIVE_REQUESTS_PER_SECOND="10000",
    )
    config = {"resources": {"perspective": {"config": IN_FLIGHT}}}
    select = "perspective_labels,perspective_successor"
    run = materialize_in_subprocess(env, tmp_path, select, DAY, config)
    deadline = time.monotonic() + 240
    while rows_written(client) < 80:
        assert run.poll() is None, run.stderr.read()[-3000:]
        assert time.monotonic() < deadline
        time.sleep(0.1)
    # The step is made to wait inside a query (a lock held on its table), then interrupted
    # there: where an interrupt lands mid-query, not between two.
    with psycopg.connect(to_libpq_url(database_url)) as blocker:
        blocker.execute(f"LOCK TABLE {client.qualified('perspective_labels')} IN EXCLUSIVE MODE")
        while not client.fetch_all(
            "SELECT 1 FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND query ILIKE %s",
            ("%perspective_labels%",),
        ):
            assert run.poll() is None, run.stderr.read()[-3000:]
            assert time.monotonic() < deadline
            time.sleep(0.1)
        os.kill(run.pid, signal.SIGINT)
        time.sleep(2)
    _out, err = run.communicate(timeout=120)
    stopped_at = rows_written(client)
    assert stopped_at < valid_posts(client), err[-4000:]  # the interrupt came mid-step
    (home,) = tmp_path.glob("home-*")
    failures = step_failures(home)
    assert set(failures) == {"perspective_labels"}, failures
    assert "Interrupted" in failures["perspective_labels"] or "interrupt" in (
        failures["perspective_labels"].lower()
    ), failures["perspective_labels"]
    assert "psycopg" not in failures["perspective_labels"], failures["perspective_labels"]
    assert "psycopg" not in err, err[-3000:]
    leases = client.fetch_all(f"SELECT * FROM {client.qualified('labelling_leases')}")
    assert leases == [], leases  # given back, not left to expire

    sent_before = server.stats["status_200"]
    rerun = cli_run(database_url, db_schema, landing_root, tmp_path, server.url)
    _out, err = rerun.communicate(timeout=300)
    assert rerun.returncode == 0, err[-3000:]
    figures = label_figures(client, server.stats["status_200"])
    assert figures["lost"] == 0 and figures["duplicated"] == 0
    assert server.stats["status_200"] - sent_before <= valid_posts(client) - stopped_at + 40
