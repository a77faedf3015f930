"""A researcher's week in `dagster dev` (issue 21), through the GraphQL API the UI itself uses: a
ranged backfill whose checks all keep their day (21.2), a one-day "Materialize all" that leaves
the unpartitioned assets alone (21.5), a sensor turned back on that launches only the day whose
batches changed (21.4), and an LLM server on another port that keeps one label set and is sent
only the new posts (21.1). The tests run in order and share one instance and one schema."""

import json
import os
import time
from datetime import date
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from dagster_graphql import DagsterGraphQLClient, DagsterGraphQLClientError

from bsky_assets.evaluation.hand_labels import import_hand_labels
from bsky_assets.lib.labelling.label_sets import NOT_SENT_LABELER
from bsky_assets.servers.llm.server import LLMServer, parse_posts
from bsky_assets.sociopolitical.task import SOCIOPOLITICAL
from bsky_assets.tools.sample_data import write_sample_day
from bsky_assets_tests.dagster_dev import DagsterDev, backfill_status, graphql, runs, wait_for
from bsky_assets_tests.evaluation.test_metrics import write_csv

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1200)]

LOCATION = "bsky_assets"
REPOSITORY = "__repository__"
DAYS = [date(2024, 7, 1), date(2024, 7, 2), date(2024, 7, 3)]  # the ranged backfill
ONE_DAY = date(2024, 7, 4)  # "Materialize all" for one day
SENSOR = {"repositoryLocationName": LOCATION, "repositoryName": REPOSITORY,
          "sensorName": "landing_sensor"}  # fmt: skip
FINISHED = {"SUCCESS", "FAILURE", "CANCELED"}


class Week:
    """One Dagster instance and one schema for the module; `restart` is `bsky-assets dev` run
    again with other settings (the same DAGSTER_HOME, a new port)."""

    def __init__(self, root: Path, environment: dict[str, str]) -> None:
        self.root = root
        self.landing = root / "landing"
        self.landing.mkdir()
        self.environment = environment | {"BSKY_LANDING_DIR": str(self.landing)}
        self.schema = environment["BSKY_DB_SCHEMA"]
        self.dev = DagsterDev(root / "home", self.environment).__enter__()

    def restart(self, **changes: str) -> None:
        self.dev.__exit__()
        self.environment |= changes
        self.dev = DagsterDev(self.root / "home", self.environment).__enter__()

    def stop(self) -> None:
        self.dev.__exit__()


@pytest.fixture(scope="module")
def week(database_url, local_perspective, local_llm, tmp_path_factory):
    environment = {
        "DATABASE_URL": database_url.render_as_string(hide_password=False),
        "BSKY_DB_SCHEMA": "dev_week",
        "PERSPECTIVE_URL": local_perspective.url,
        "PERSPECTIVE_REQUESTS_PER_SECOND": "2000",
        "OPENAI_BASE_URL": local_llm.url,
        "BSKY_LLM_REQUESTS_PER_MINUTE": "600000",
        "BSKY_LLM_TOKENS_PER_MINUTE": "100000000",
    }
    week = Week(tmp_path_factory.mktemp("week"), environment)
    try:
        yield week
    finally:
        week.stop()


def db(week: Week, database_url):
    from bsky_assets.lib.db.client import PostgresClient

    return PostgresClient(database_url, week.schema)


def sensor_state(dev: DagsterDev) -> dict:
    return graphql(
        dev,
        """query($s: SensorSelector!) { sensorOrError(sensorSelector: $s) { ... on Sensor {
        sensorState { id status ticks(limit: 20) { status timestamp runIds } } } } }""",
        {"s": SENSOR},
    )["sensorOrError"]["sensorState"]


def stop_sensor(dev: DagsterDev) -> None:
    state = sensor_state(dev)
    if state["status"] == "RUNNING":
        graphql(dev, "mutation($id: String) { stopSensor(id: $id) { __typename } }",
                {"id": state["id"]})  # fmt: skip
    assert sensor_state(dev)["status"] == "STOPPED"


def start_sensor(dev: DagsterDev) -> None:
    started = graphql(
        dev,
        """mutation($s: SensorSelector!) { startSensor(sensorSelector: $s) { __typename
        ... on Sensor { sensorState { status } } ... on PythonError { message } } }""",
        {"s": SENSOR},
    )["startSensor"]
    assert started["__typename"] == "Sensor", started
    assert started["sensorState"]["status"] == "RUNNING"


def run_details(dev: DagsterDev, run_id: str) -> dict:
    return graphql(
        dev,
        """query($id: ID!) { runOrError(runId: $id) { ... on Run { runId status jobName
        tags { key value } stepStats { stepKey status }
        assetMaterializations { assetKey { path } partition } } } }""",
        {"id": run_id},
    )["runOrError"]


def step_messages(dev: DagsterDev, run_id: str, step: str) -> list[str]:
    events = graphql(
        dev,
        """query($id: ID!) { logsForRun(runId: $id) { ... on EventConnection {
        events { ... on MessageEvent { message stepKey } } } } }""",
        {"id": run_id},
    )["logsForRun"]["events"]
    return [e["message"] for e in events if e.get("stepKey") == step and e.get("message")]


def wait_for_run(dev: DagsterDev, run_id: str, timeout: float = 240) -> dict:
    client = DagsterGraphQLClient("127.0.0.1", port_number=dev.port)

    def finished():
        try:
            status = client.get_run_status(run_id)
        except DagsterGraphQLClientError:
            return None
        return status.value if status.value in FINISHED else None

    wait_for(finished, timeout, f"run {run_id}")
    return run_details(dev, run_id)


def asset_nodes(dev: DagsterDev) -> list[dict]:
    return graphql(
        dev, "{ assetNodes { assetKey { path } groupName isPartitioned isMaterializable } }"
    )["assetNodes"]


def launch_run(dev: DagsterDev, job: str, day: date, assets: list[str] | None = None) -> str:
    """What the UI's launch does for one day: a run of `job` tagged with the day's partition."""
    client = DagsterGraphQLClient("127.0.0.1", port_number=dev.port)
    return client.submit_job_execution(
        job,
        repository_location_name=LOCATION,
        repository_name=REPOSITORY,
        tags={"dagster/partition": day.isoformat()},
        asset_selection=[[name] for name in assets] if assets else None,
    )


def add_batch(week: Week, day: date, name: str, posts: int, marker: str) -> list[str]:
    """A new batch for a day already landed: `posts` posts with new uris and texts that carry
    `marker` (so a prompt that holds one is recognised); written then renamed in, its mtime
    in the past (settled at once). Returns the texts."""
    scratch = week.root / f"scratch-{name}"
    sample = write_sample_day(scratch, day, posts=posts, batch_size=posts, seed=99, malformed=False)
    records = [json.loads(line) for path in sample.files for line in path.read_text().splitlines()]
    texts = []
    for number, record in enumerate(records):
        record["uri"] += f"-{name}"
        record["text"] += f" ({marker} {number})"
        texts.append(record["text"])
    folder = week.landing / day.isoformat()
    temporary = folder / f".{name}.jsonl.tmp"
    temporary.write_text("".join(json.dumps(r) + "\n" for r in records))
    past = time.time() - 60
    os.utime(temporary, (past, past))
    temporary.rename(folder / f"{name}.jsonl")
    return texts


def test_a_ranged_backfill_keeps_every_check_on_its_day(week):
    """21.2: "Materialize all" over a 3-day range is a backfill of every partitioned asset; it
    launches one run per day, and every check of every asset has a result on each day (none on
    no partition, none shown as skipped)."""
    dev = week.dev
    stop_sensor(dev)  # the runs of this module are the ones it launches itself (until 21.4)
    for day in DAYS:
        write_sample_day(week.landing, day, posts=30, batch_size=30, malformed=False)
    partitioned = [
        n["assetKey"]["path"][-1]
        for n in asset_nodes(dev)
        if n["isPartitioned"] and n["isMaterializable"]
    ]
    assert {"preprocessed_posts", "perspective_labels", "sociopolitical_labels"} <= set(partitioned)
    backfill = graphql(
        dev,
        """mutation($params: LaunchBackfillParams!) { launchPartitionBackfill(backfillParams:
        $params) { __typename ... on LaunchBackfillSuccess { backfillId }
        ... on PythonError { message } } }""",
        {
            "params": {
                "partitionNames": [d.isoformat() for d in DAYS],
                "assetSelection": [{"path": [name]} for name in partitioned],
            }
        },
    )["launchPartitionBackfill"]
    assert backfill["__typename"] == "LaunchBackfillSuccess", backfill

    ended = wait_for(
        lambda: backfill_status(dev, backfill["backfillId"]), 600, "the backfill", every=3
    )
    assert ended in {"COMPLETED", "COMPLETED_SUCCESS"}

    launched = [r for r in runs(dev) if r["tags"].get("dagster/backfill") == backfill["backfillId"]]
    # One run per day, each tagged with its day (a single ranged run tags only range start/end,
    # and its check results have no partition).
    assert sorted(r["tags"].get("dagster/partition") for r in launched) == [
        d.isoformat() for d in DAYS
    ], [r["tags"] for r in launched]
    assert all(r["status"] == "SUCCESS" for r in launched), launched
    assert not any("dagster/asset_partition_range_start" in r["tags"] for r in launched)

    checked = 0
    for name in partitioned:
        checks = graphql(
            dev,
            """query($key: AssetKeyInput!) { assetNodeOrError(assetKey: $key) { ... on AssetNode {
            assetChecksOrError { ... on AssetChecks { checks { name partitionStatuses {
            ... on AssetCheckTimePartitionStatuses { ranges { startKey endKey status } } } } } }
            } } }""",
            {"key": {"path": [name]}},
        )["assetNodeOrError"]["assetChecksOrError"].get("checks", [])
        for check in checks:
            checked += 1
            executions = graphql(
                dev,
                """query($key: AssetKeyInput!, $check: String!) { assetCheckExecutions(
                assetKey: $key, checkName: $check, limit: 50) { runId partition status
                evaluation { success } } }""",
                {"key": {"path": [name]}, "check": check["name"]},
            )["assetCheckExecutions"]
            where = f"{name}:{check['name']}"
            # Each day's result carries that day: none lost its partition, none is missing.
            assert sorted(e["partition"] or "—" for e in executions) == [
                d.isoformat() for d in DAYS
            ], (where, executions)
            assert all(e["evaluation"] is not None for e in executions), (where, executions)
            # The check's partition view (the Checks tab) marks each day with its result.
            ranges = check["partitionStatuses"]["ranges"]
            for day in DAYS:
                key = day.isoformat()
                status = next(
                    (r["status"] for r in ranges if r["startKey"] <= key <= r["endKey"]), None
                )
                assert status in {"SUCCEEDED", "FAILED"}, (where, key, ranges)
    assert checked >= 4  # the checks of the ingest and the labellers


def test_materialize_all_for_one_day_leaves_the_unpartitioned_assets_alone(week, database_url):
    """21.5: "Materialize all" for one day (the asset job, every asset, the day's partition tag)
    neither retrains the successor nor re-runs an evaluation, though hand labels are there to
    evaluate on; the label_posts job does not even hold their steps."""
    dev = week.dev
    # Hand labels exist, so an evaluation swept into the run would materialize.
    import_hand_labels(SOCIOPOLITICAL, db(week, database_url), write_csv(week.root / "hand.csv"))
    write_sample_day(week.landing, ONE_DAY, posts=30, batch_size=30, malformed=False)
    nodes = asset_nodes(dev)
    unpartitioned = {
        n["assetKey"]["path"][-1] for n in nodes if n["isMaterializable"] and not n["isPartitioned"]
    }
    assert {"perspective_successor", "sociopolitical_evaluation"} <= unpartitioned
    everything = [n["assetKey"]["path"][-1] for n in nodes if n["isMaterializable"]]
    run = wait_for_run(dev, launch_run(dev, "__ASSET_JOB", ONE_DAY, everything))
    assert run["status"] == "SUCCESS", run
    materialized = {m["assetKey"]["path"][-1] for m in run["assetMaterializations"]}
    assert {"preprocessed_posts", "perspective_labels", "sociopolitical_labels"} <= materialized
    assert not materialized & unpartitioned, materialized & unpartitioned
    for step in {s["stepKey"] for s in run["stepStats"]} & unpartitioned:
        messages = step_messages(dev, run["runId"], step)
        assert any(f"this run was launched for {ONE_DAY.isoformat()}" in m for m in messages), (
            step, messages
        )  # fmt: skip

    run = wait_for_run(dev, launch_run(dev, "label_posts", DAYS[-1]))
    assert run["status"] == "SUCCESS", run
    steps = {s["stepKey"] for s in run["stepStats"]}
    assert "perspective_labels" in steps
    assert not steps & unpartitioned, steps & unpartitioned
    assert not {m["assetKey"]["path"][-1] for m in run["assetMaterializations"]} & unpartitioned


def test_the_sensor_turned_back_on_launches_only_the_changed_day(week):
    """21.4: days materialized from the UI while the sensor was off (the backfill, the runs
    above) are not launched again when it is turned on; the day with a new batch is."""
    dev = week.dev
    assert sensor_state(dev)["status"] == "STOPPED"
    changed = DAYS[1]
    add_batch(week, changed, "batch-late", posts=10, marker="late")
    started = time.time()
    start_sensor(dev)

    def sensor_runs():
        return [r for r in runs(dev) if r["tags"].get("dagster/sensor_name") == "landing_sensor"]

    def changed_day_done():
        done = [r for r in sensor_runs() if r["status"] in FINISHED]
        return done if any(r["tags"].get("dagster/partition") == changed.isoformat()
                           for r in done) else None  # fmt: skip

    wait_for(changed_day_done, 300, "the sensor's run for the changed day", every=2)
    finished_at = time.time()

    def later_tick():  # a tick after that run: the sensor has looked at every folder again
        ticks = sensor_state(dev)["ticks"]
        return any(t["timestamp"] > finished_at and t["status"] != "STARTED" for t in ticks)

    wait_for(later_tick, 120, "a sensor tick after the run", every=2)
    ticks = [t for t in sensor_state(dev)["ticks"] if t["timestamp"] >= started - 1]
    launched = sensor_runs()
    assert [r["tags"].get("dagster/partition") for r in launched] == [changed.isoformat()], (
        [r["tags"] for r in launched], ticks
    )  # fmt: skip
    assert launched[0]["status"] == "SUCCESS"


def label_sets(client) -> list[tuple]:
    return client.fetch_all(
        f"SELECT label_set, labeler, labeler_version FROM {client.qualified('label_sets')} "
        "WHERE label_table = %s AND labeler <> %s ORDER BY label_set",
        (SOCIOPOLITICAL.table_name, NOT_SENT_LABELER),
    )


def labelled(client, day: date) -> list[tuple]:
    """The day's rows the LLM answered: (uri, label set, endpoint)."""
    return client.fetch_all(
        f"SELECT uri, label_set, llm_endpoint FROM {client.qualified(SOCIOPOLITICAL.table_name)} "
        "WHERE partition_date = %s AND labeler <> %s",
        (day, NOT_SENT_LABELER),
    )


def test_an_llm_server_on_another_port_keeps_one_label_set(week, database_url, local_llm):
    """21.1: `dev` restarted with the LLM server on another port (the sensor still on, as the
    researcher left it) sends nothing for the days already labelled, and a new batch on a
    labelled day sends only its own posts, into the same label set."""
    client = db(week, database_url)
    before = label_sets(client)
    assert len(before) == 1, before
    day = DAYS[0]
    rows_before = labelled(client, day)
    assert rows_before and {r[1] for r in rows_before} == {before[0][0]}

    sent: list[str] = []
    with LLMServer() as moved:
        assert urlsplit(moved.url).port != urlsplit(local_llm.url).port
        answer = moved.service.complete

        def recording(body):
            user = next(m["content"] for m in reversed(body["messages"]) if m["role"] == "user")
            sent.extend(text for _, text in parse_posts(user))
            return answer(body)

        moved.service.complete = recording
        week.restart(OPENAI_BASE_URL=moved.url)
        dev = week.dev
        assert sensor_state(dev)["status"] == "RUNNING"
        texts = add_batch(week, day, "batch-after-restart", posts=12, marker="after restart")

        def day_run_done():
            return next(
                (
                    r
                    for r in runs(dev)
                    if r["tags"].get("dagster/sensor_name") == "landing_sensor"
                    and r["tags"].get("dagster/partition") == day.isoformat()
                    and r["status"] in FINISHED
                ),
                None,
            )

        run = wait_for(day_run_done, 300, "the sensor's run for the day with a new batch", 2)
        assert run["status"] == "SUCCESS", run

    after = label_sets(client)
    assert after == before, (before, after)  # one label set: the service and its model
    rows_after = labelled(client, day)
    new = len(rows_after) - len(rows_before)
    assert new > 0
    # Only the new batch's posts went to the moved server, each once.
    assert sent and set(sent) <= set(texts), [t for t in sent if t not in texts][:5]
    assert len(sent) == len(set(sent)) == new, (len(sent), new)
    assert {r[1] for r in rows_after} == {before[0][0]}
    endpoints = {r[2] for r in rows_after}
    assert f"127.0.0.1:{urlsplit(moved.url).port}" in endpoints, endpoints
    assert f"127.0.0.1:{urlsplit(local_llm.url).port}" in endpoints, endpoints
    sensor_days = {
        r["tags"].get("dagster/partition")
        for r in runs(dev)
        if r["tags"].get("dagster/sensor_name") == "landing_sensor"
    }
    assert sensor_days == {DAYS[1].isoformat(), day.isoformat()}  # nothing else re-run
