"""The day's labelling lease: one run at a time per (table, day), across database restarts
(issue 20 point 1), dead holders, and a lease lost to a takeover."""

from __future__ import annotations

import logging
import subprocess
import sys
import threading
import time
from datetime import date

import pytest

from bsky_assets.definitions import build_definitions
from bsky_assets.lib.db.embedded import (
    ensure_embedded_server,
    restart_embedded_server,
    stop_embedded_server,
)
from bsky_assets.lib.db.resource import PostgresResource
from bsky_assets.lib.labelling import store
from bsky_assets.lib.labelling.lease import DayLease, LeaseLost, holder_is_dead
from bsky_assets.lib.labelling.tables import LABELLING_LEASES
from bsky_assets.perspective.labeller import PerspectiveLabeller
from bsky_assets.perspective.resource import PerspectiveResource
from bsky_assets.perspective.tables import PERSPECTIVE_LABELS
from bsky_assets.posts.resource import LandingFolder
from bsky_assets.tools.sample_data import write_sample_day
from bsky_assets_tests.conftest import materialize_day, materialize_in_subprocess, subprocess_env

DAY = date(2024, 7, 1)
LOG = logging.getLogger("test")


def test_a_second_holder_waits_for_the_first(client) -> None:
    order: list[str] = []
    first = DayLease(client, "t", DAY, LOG, heartbeat_seconds=0.2)
    with first:

        def second() -> None:
            with DayLease(client, "t", DAY, LOG, heartbeat_seconds=0.2):
                order.append("second")

        waiter = threading.Thread(target=second)
        waiter.start()
        time.sleep(1.0)
        order.append("first done")
    waiter.join(timeout=10)
    assert order == ["first done", "second"]


def test_a_dead_holder_on_this_machine_frees_the_day_at_once(client) -> None:
    code = (
        "import os, sys; from datetime import date; "
        "from bsky_assets.lib.labelling.lease import DayLease; "
        "from bsky_assets.lib.db.client import PostgresClient; "
        "from sqlalchemy.engine import make_url; "
        f"c = PostgresClient(make_url(sys.argv[1]), {client.schema!r}); "
        f"DayLease(c, 't', date({DAY.year}, {DAY.month}, {DAY.day}), None).__enter__(); "
        "print('held', flush=True); os._exit(0)"  # dies holding it, as kill -9 would
    )
    url = client.url.render_as_string(hide_password=False)
    done = subprocess.run([sys.executable, "-c", code, url], capture_output=True, text=True)
    assert "held" in done.stdout, done.stderr[-2000:]
    holder = store.lease_holder(client, "t", DAY)
    assert holder is not None and holder_is_dead(holder[0])
    started = time.monotonic()
    with DayLease(client, "t", DAY, LOG):
        assert time.monotonic() - started < 5  # not the 30 s heartbeat timeout


def test_a_lease_taken_over_stops_the_sending_and_fails_the_run(client) -> None:
    lease = DayLease(client, "t", DAY, LOG, heartbeat_seconds=0.1)
    with pytest.raises(LeaseLost), lease:
        # Another run takes the day (as it may once our heartbeat is older than the TTL).
        assert list(lease.guard(range(3))) == [0, 1, 2]  # ours: every post may be sent
        client.execute(
            f"UPDATE {client.qualified(LABELLING_LEASES.name)} SET holder = 'elsewhere:1:1:x'"
        )
        time.sleep(0.5)  # the heartbeat finds the lease is not ours
        assert list(lease.guard(range(10))) == []  # nothing more is drawn to send
        lease.verify()


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_a_postgres_restart_does_not_let_a_second_run_pay_again(
    tmp_path, landing_root, serve
) -> None:
    """Issue 20.1: run A labelling a day, Postgres restarted, run B started. B must wait for A
    (the lease row outlives the restart) and send nothing: every post is paid for once."""
    pgdata = tmp_path / "pg" / "postgres"
    url = ensure_embedded_server(pgdata)
    postgres = PostgresResource(
        database_url=url.render_as_string(hide_password=False), db_schema="lease"
    )
    client = postgres.get_client()
    try:
        write_sample_day(landing_root, DAY, posts=240, batch_size=240, malformed=False)
        defs = build_definitions(
            postgres=postgres,
            landing=LandingFolder(path=str(landing_root)),
            perspective=PerspectiveResource(requests_per_second=10_000),
            labellers=(PerspectiveLabeller(),),
        )
        assert materialize_day(defs, DAY, upstream_of="valid_posts").success
        client.ensure_table(PERSPECTIVE_LABELS)
        server = serve.perspective(latency_ms=1500)  # A takes ~30 s: B starts well before
        env = subprocess_env(
            url,
            BSKY_DB_SCHEMA="lease",
            BSKY_LANDING_DIR=str(landing_root),
            PERSPECTIVE_URL=server.url,
            PERSPECTIVE_REQUESTS_PER_SECOND="10000",
            BSKY_LABELLERS="perspective",
        )
        config = {"resources": {"perspective": {"config": {"batch_size": 5, "concurrency": 2}}}}
        run_a = materialize_in_subprocess(env, tmp_path, "perspective_labels", DAY, config)
        while server.stats.get("status_200", 0) < 30:  # A is labelling
            assert run_a.poll() is None, run_a.communicate()[1][-3000:]
            time.sleep(0.05)
        before = client.fetch_all("SELECT pg_postmaster_start_time()")[0][0]
        restart_embedded_server(pgdata)
        after = client.fetch_all("SELECT pg_postmaster_start_time()")[0][0]
        assert after > before  # the fault happened: Postgres restarted while A was labelling
        assert run_a.poll() is None  # ... and A is still at it
        run_b = materialize_in_subprocess(env, tmp_path, "perspective_labels", DAY, config)
        for run in (run_a, run_b):
            _, err = run.communicate(timeout=300)
            assert run.returncode == 0, err[-3000:]

        posts = client.fetch_all(
            f"SELECT count(*) FROM {client.qualified('valid_posts')} WHERE is_valid"
        )[0][0]
        labelled = client.fetch_all(
            f"SELECT count(*) FROM {client.qualified('perspective_labels')} "
            "WHERE was_successfully_labeled"
        )[0][0]
        assert labelled == posts
        assert server.stats["status_200"] == posts  # each post paid for once, by run A
    finally:
        stop_embedded_server(pgdata)
