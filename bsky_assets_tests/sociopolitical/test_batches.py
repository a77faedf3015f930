"""Batch mode (BSKY_LLM_MODE=batch) end to end: the real openai client against the local server's
Files and Batch APIs over HTTP, a real Postgres, and a run killed with SIGKILL mid-batch."""

import json
import logging
import os
import signal
import subprocess
import time
from datetime import date

import dagster as dg
import pytest

from bsky_assets.definitions import build_definitions
from bsky_assets.lib.labelling.label_sets import NOT_SENT_LABELER, LabelSet
from bsky_assets.lib.labelling.writer import LabelWriter
from bsky_assets.llm.batch import BatchApi
from bsky_assets.llm.batches import BatchLabelling
from bsky_assets.llm.client import LLMTaskClient
from bsky_assets.llm.labeller import label_row, label_set_of
from bsky_assets.llm.resource import LLMResource
from bsky_assets.llm.tables import LLM_BATCHES
from bsky_assets.posts.resource import LandingFolder
from bsky_assets.servers.llm import answers
from bsky_assets.servers.llm.answers import sociopolitical
from bsky_assets.servers.llm.batches import BatchOptions
from bsky_assets.sociopolitical.task import SOCIOPOLITICAL
from bsky_assets.tools.sample_data import write_sample_day
from bsky_assets_tests.conftest import (
    materialize_day,
    materialize_in_subprocess,
    subprocess_env,
    use_llm,
)

DAY = date(2024, 11, 5)
LOG = logging.getLogger("test")


@pytest.fixture(autouse=True)
def batch_mode(monkeypatch):
    monkeypatch.setenv("BSKY_LLM_MODE", "batch")
    monkeypatch.setenv("BSKY_LLM_BATCH_POLL_SECONDS", "0.2")


def prepare(postgres, landing_root, posts: int = 200) -> None:
    write_sample_day(landing_root, DAY, posts=posts, batch_size=posts, malformed=False)
    defs = build_definitions(postgres=postgres, landing=LandingFolder(path=str(landing_root)))
    assert materialize_day(defs, DAY, upstream_of="valid_posts").success
    postgres.get_client().ensure_table(LLM_BATCHES)  # so tests can watch it


def crash(*args, **kwargs):
    raise SystemExit("the run died here")


def crash_after(original):
    def call(*args, **kwargs):
        original(*args, **kwargs)
        crash()

    return call


def label_day(postgres, landing_root, **kwargs):
    defs = build_definitions(
        postgres=postgres,
        landing=LandingFolder(path=str(landing_root)),
        llm=LLMResource(requests_per_minute=600_000),
    )
    return materialize_day(defs, DAY, upstream_of="sociopolitical_labels", **kwargs)


def labels(client) -> dict[str, tuple]:
    rows = client.fetch_all(
        "SELECT uri, was_successfully_labeled, llm_batch_id, llm_model_name, is_sociopolitical, "
        f"political_ideology_label FROM {client.qualified('sociopolitical_labels')} "
        "WHERE partition_date = %s AND labeler <> %s",  # the rows of posts sent to the LLM
        (DAY, NOT_SENT_LABELER),
    )
    return {r[0]: r[1:] for r in rows}


def valid_texts(client) -> dict[str, str]:
    return dict(
        client.fetch_all(
            f"SELECT uri, text FROM {client.qualified('valid_posts')} "
            "WHERE partition_date = %s AND is_valid",
            (DAY,),
        )
    )


def metadata_of(result) -> dict:
    event = result.asset_materializations_for_node("sociopolitical_labels")[0]
    return {k: v.value for k, v in event.metadata.items()}


def test_a_batch_day_is_labelled_by_one_batch_with_progress_and_batch_prices(
    postgres, client, landing_root, serve, monkeypatch
):
    prepare(postgres, landing_root)
    server = serve.llm(batches=BatchOptions(completion_delay_seconds=1.5))
    use_llm(server.url)
    monkeypatch.setenv(
        "BSKY_LLM_PRICES", json.dumps({answers.MODEL_NAME: {"input": 1.0, "output": 2.0}})
    )
    with dg.instance_for_test() as instance:
        result = label_day(postgres, landing_root, instance=instance)
        assert result.success
        messages = [e.user_message for e in instance.all_logs(result.run_id)]

    texts = valid_texts(client)
    rows = labels(client)
    assert set(rows) == set(texts)
    batch_ids = {row[1] for row in rows.values()}
    assert len(batch_ids) == 1 and None not in batch_ids  # every post answered by the batch
    for uri, (ok, _batch, model, civic, lean) in rows.items():
        assert ok and model == answers.MODEL_NAME
        assert (civic, lean) == sociopolitical.label(texts[uri])
    assert server.stats["batches_created"] == 1
    assert server.stats.get("http_requests", 0) == 0  # nothing went through the sync API

    metadata = metadata_of(result)
    assert metadata["llm_mode"] == "batch" and metadata["llm_model"] == answers.MODEL_NAME
    assert metadata["batches"]["batches_created"] == 1
    assert metadata["batch_prompt_tokens"] == metadata["prompt_tokens"] > 0
    batch_cost = (metadata["prompt_tokens"] * 0.5 + metadata["completion_tokens"] * 1.0) / 1e6
    assert metadata["estimated_cost_usd"] == pytest.approx(batch_cost, abs=1e-6)
    assert metadata["cost_at_sync_prices_usd"] == pytest.approx(2 * batch_cost, abs=1e-6)
    # the wait is visible: progress at a steady interval, with counts and an ETA
    waits = [m for m in messages if "waiting on 1 batch(es)" in m]
    assert waits and all("requests completed" in w and "ETA" in w for w in waits)

    rerun = label_day(postgres, landing_root)
    assert rerun.success and server.stats["batches_created"] == 1  # nothing pending, no batch
    assert labels(client) == rows


def test_failed_and_expired_lines_fall_back_to_the_sync_api(postgres, client, landing_root, serve):
    prepare(postgres, landing_root)
    options = BatchOptions(completion_delay_seconds=0.5, line_failure_share=0.3, expire=True)
    server = serve.llm(batches=options)
    use_llm(server.url)
    result = label_day(postgres, landing_root)
    assert result.success

    rows = labels(client)
    assert set(rows) == set(valid_texts(client)) and all(r[0] for r in rows.values())
    from_batch = sum(1 for r in rows.values() if r[1])
    from_sync = sum(1 for r in rows.values() if r[1] is None)
    assert from_batch > 0 and from_sync > len(rows) // 2  # expiry left half of it unanswered
    assert server.stats["batch_lines_failed"] > 0 and server.stats["completions"] > 0
    assert server.stats["batches_created"] == 1


def test_request_files_stay_within_the_limits_and_are_matched_by_custom_id(
    postgres, client, landing_root, serve
):
    prepare(postgres, landing_root, posts=90)
    server = serve.llm(batches=BatchOptions(completion_delay_seconds=0.1))
    api, label_set = configured_labeler(server, posts_per_prompt=4)
    client.ensure_table(SOCIOPOLITICAL.table)
    batches = BatchLabelling(
        client, api, label_set, DAY, LOG, poll_seconds=0.05, max_requests_per_file=5,
        work_dir=landing_root / "work",
    )  # fmt: skip
    texts = valid_texts(client)
    batches.submit(sorted(texts.items()))
    writer = LabelWriter(client, SOCIOPOLITICAL.table, label_set.id, DAY, _provenance(api))
    batches.wait_and_collect(writer, lambda label, text_hash: {
        **label_row(SOCIOPOLITICAL, label), "text_sha256": text_hash})  # fmt: skip

    requests = -(-len(texts) // 4)
    assert server.stats["batches_created"] == -(-requests // 5)  # five prompts a file
    rows = labels(client)
    assert set(rows) == set(texts)
    for uri, (ok, _batch, _model, civic, lean) in rows.items():
        assert ok and (civic, lean) == sociopolitical.label(texts[uri])  # the right post's answer
    assert not list((landing_root / "work").iterdir())  # uploaded files are not kept


def _provenance(api) -> dict:
    return {"prompt_version": SOCIOPOLITICAL.prompt_version, "labeler": api.labeler}


def configured_labeler(server, **tuning) -> tuple[LLMTaskClient, LabelSet]:
    """The client and label set the asset would use against `server`."""
    use_llm(server.url)
    api = LLMResource(**tuning).get_client(SOCIOPOLITICAL)
    return api, label_set_of(SOCIOPOLITICAL, api)


def _recorded(client) -> list[tuple]:
    return client.fetch_all(
        f"SELECT request_file, input_file_id, batch_id FROM {client.qualified(LLM_BATCHES.name)}"
    )


def test_a_batch_created_but_not_recorded_is_found_not_paid_twice(
    postgres, client, landing_root, serve, monkeypatch
):
    """The narrowest crash: after batches.create answered, before its id reached Postgres."""
    prepare(postgres, landing_root, posts=30)
    server = serve.llm(batches=BatchOptions(completion_delay_seconds=0.2))
    api, label_set = configured_labeler(server)
    batches = BatchLabelling(client, api, label_set, DAY, LOG, poll_seconds=0.05)

    monkeypatch.setattr(BatchApi, "create", crash_after(BatchApi.create))
    with pytest.raises(SystemExit):
        batches.submit(sorted(valid_texts(client).items()))
    monkeypatch.undo()
    [(_, input_file_id, batch_id)] = _recorded(client)
    assert input_file_id and batch_id is None and server.stats["batches_created"] == 1

    resumed = BatchLabelling(client, api, label_set, DAY, LOG, poll_seconds=0.05)
    resumed.resume()
    assert resumed.totals.batches_adopted == 1 and server.stats["batches_created"] == 1
    [(_, _, adopted)] = _recorded(client)
    assert adopted is not None


def test_a_request_file_never_uploaded_is_discarded_and_its_posts_pending(
    postgres, client, landing_root, serve, monkeypatch
):
    prepare(postgres, landing_root, posts=30)
    server = serve.llm()
    api, label_set = configured_labeler(server)
    work = landing_root / "work"
    batches = BatchLabelling(client, api, label_set, DAY, LOG, work_dir=work)
    monkeypatch.setattr(BatchApi, "upload", crash)
    with pytest.raises(SystemExit):
        batches.submit(sorted(valid_texts(client).items()))
    monkeypatch.undo()
    assert len(_recorded(client)) == 1 and len(list(work.iterdir())) == 1
    BatchLabelling(client, api, label_set, DAY, LOG, work_dir=work).resume()
    assert _recorded(client) == [] and server.stats.get("files_stored", 0) == 0
    assert not list(work.iterdir())  # the local copy went with it


def _cli_run(database_url, db_schema, landing_root, tmp_path, url: str) -> subprocess.Popen:
    env = subprocess_env(
        database_url,
        BSKY_DB_SCHEMA=db_schema,
        BSKY_LANDING_DIR=str(landing_root),
        BSKY_DATA_DIR=str(tmp_path / "data"),
        OPENAI_BASE_URL=url,
        BSKY_LLM_MODE="batch",
        BSKY_LLM_BATCH_POLL_SECONDS="0.2",
    )
    return materialize_in_subprocess(env, tmp_path, "sociopolitical_labels", DAY)


@pytest.mark.slow
def test_kill_9_while_the_batch_is_in_flight_resumes_without_a_second_batch(
    postgres, client, database_url, db_schema, landing_root, tmp_path, serve
):
    prepare(postgres, landing_root)
    server = serve.llm(batches=BatchOptions(completion_delay_seconds=20))
    run = _cli_run(database_url, db_schema, landing_root, tmp_path, server.url)
    deadline = time.monotonic() + 240
    while not any(batch_id for _, _, batch_id in _recorded(client)):
        assert run.poll() is None, run.stderr.read()[-3000:]
        assert time.monotonic() < deadline
        time.sleep(0.1)
    os.killpg(run.pid, signal.SIGKILL)
    run.wait(timeout=30)
    assert server.stats["batches_created"] == 1 and labels(client) == {}

    rerun = _cli_run(database_url, db_schema, landing_root, tmp_path, server.url)
    out, err = rerun.communicate(timeout=300)
    assert rerun.returncode == 0, err[-3000:]
    assert "resuming the wait on batch" in out + err
    assert server.stats["batches_created"] == 1  # the rerun waited on the same batch
    rows = labels(client)
    assert set(rows) == set(valid_texts(client))
    assert len({r[1] for r in rows.values()}) == 1 and all(r[0] for r in rows.values())
    assert server.stats.get("http_requests", 0) == 0


def test_switching_back_to_sync_collects_open_batches_first(
    postgres, client, landing_root, serve, monkeypatch
):
    prepare(postgres, landing_root, posts=60)
    server = serve.llm(batches=BatchOptions(completion_delay_seconds=0.5))
    api, label_set = configured_labeler(server)
    BatchLabelling(client, api, label_set, DAY, LOG).submit(
        sorted(valid_texts(client).items())
    )  # a batch-mode run that died while its batch was out
    monkeypatch.setenv("BSKY_LLM_MODE", "sync")
    assert label_day(postgres, landing_root).success
    rows = labels(client)
    assert set(rows) == set(valid_texts(client)) and all(r[1] for r in rows.values())
    assert server.stats.get("http_requests", 0) == 0  # nothing paid for twice
    assert server.stats["batches_created"] == 1
