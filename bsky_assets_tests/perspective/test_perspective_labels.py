"""perspective_labels end to end: the real google client, the local server, a real Postgres."""

import os
from datetime import date
from pathlib import Path

import dagster as dg
import pytest

from bsky_assets.definitions import build_definitions
from bsky_assets.lib.db.resource import PostgresResource
from bsky_assets.lib.labelling.writer import LabelWriter
from bsky_assets.perspective.attributes import DEFAULT_ATTRIBUTE_SET
from bsky_assets.perspective.resource import PerspectiveResource
from bsky_assets.posts.resource import LandingFolder
from bsky_assets.servers.perspective.server import PerspectiveServer, ServerOptions
from bsky_assets.tools.sample_data import write_sample_day
from bsky_assets_tests.conftest import SAMPLE_DAY, post, use_perspective, write_jsonl
from bsky_assets_tests.conftest import materialize_day as run_day


def materialize_day(defs: dg.Definitions, day: date, **kwargs) -> dg.ExecuteInProcessResult:
    return run_day(defs, day, upstream_of="perspective_labels", **kwargs)


SECRET = "fake-perspective-key-for-tests-0002"
DAY = date(2024, 11, 5)


@pytest.fixture
def server():
    with PerspectiveServer(ServerOptions(require_key=True, api_keys=(SECRET,))) as running:
        yield running


def resource(url: str, api_key: str | None = SECRET, **overrides) -> PerspectiveResource:
    use_perspective(url, api_key)
    settings = {
        "requests_per_second": 10_000,
        "initial_backoff_seconds": 0.001,
        "max_backoff_seconds": 0.01,
        "max_retries": 8,
    } | overrides
    return PerspectiveResource(**settings)


def defs_for(postgres: PostgresResource, landing: Path, perspective: PerspectiveResource):
    """The real definitions, with this test's Perspective server; only perspective_labels and
    its upstream assets run (the LLM asset has its own tests)."""
    return build_definitions(
        postgres=postgres, landing=LandingFolder(path=str(landing)), perspective=perspective
    )


def label_rows(client, day: date = DAY) -> list[tuple]:
    return client.fetch_all(
        "SELECT uri, was_successfully_labeled, reason, retryable, labeler, prob_toxic, "
        f"prob_constructive, prob_reasoning FROM {client.qualified('perspective_labels')} "
        "WHERE partition_date = %s ORDER BY uri",
        (day,),
    )


def test_a_day_end_to_end_and_a_rerun_sends_nothing(postgres, client, landing_root, server):
    write_sample_day(landing_root, DAY, posts=600, batch_size=200)
    defs = defs_for(postgres, landing_root, resource(server.url))
    result = materialize_day(defs, DAY)
    assert result.success

    valid = dict(
        client.fetch_all(
            f"SELECT uri, invalid_reason FROM {client.qualified('valid_posts')} "
            "WHERE partition_date = %s",
            (DAY,),
        )
    )
    rows = {r[0]: r for r in label_rows(client)}
    assert set(rows) == set(valid)  # exactly one row per post of the day
    for uri, invalid_reason in valid.items():
        _, ok, reason, retryable, labeler, toxic, constructive, reasoning = rows[uri]
        if invalid_reason:
            assert (ok, reason, retryable, toxic) == (False, invalid_reason, False, None)
            assert labeler == "bsky_assets.valid_posts"
        else:
            assert ok and reason is None and 0 <= toxic <= 1
            assert constructive == reasoning  # the explicit alias
            assert labeler == "bsky-perspective-server/synthetic-hash (synthetic)"
    sent = sum(1 for r in valid.values() if r is None)
    assert server.stats["status_200"] == sent

    materialization = result.asset_materializations_for_node("perspective_labels")[0]
    metadata = {k: v.value for k, v in materialization.metadata.items()}
    assert metadata["posts_sent"] == sent
    assert metadata["attribute_set"] == DEFAULT_ATTRIBUTE_SET.id
    assert metadata["partition_outcomes"]["labelled"] == sent

    before = dict(server.stats)
    again = materialize_day(defs, DAY)
    assert again.success
    assert server.stats.get("parts") == before.get("parts")  # a re-run sends zero requests
    assert server.stats.get("http_requests") == before.get("http_requests")
    assert len(label_rows(client)) == len(valid)


def test_invalid_posts_get_failed_rows_before_any_call(postgres, client, landing_root, server):
    write_jsonl(
        landing_root / SAMPLE_DAY.isoformat() / "b.jsonl",
        [post("ok", "long enough to be sent"), post("short", "tiny"), post("empty", "")],
    )
    wrong_key = resource(server.url, api_key="fake-perspective-key-wrong-0003")
    result = materialize_day(
        defs_for(postgres, landing_root, wrong_key), SAMPLE_DAY, raise_on_error=False
    )
    assert not result.success  # the key was refused: the run fails, posts are not blamed
    rows = {r[0].rsplit("/", 1)[1]: r for r in label_rows(client, SAMPLE_DAY)}
    assert set(rows) == {"short", "empty"}
    assert rows["short"][2] == rows["empty"][2] == "text_too_short"


def test_crash_mid_run_resumes_without_duplicates(
    postgres, client, landing_root, server, monkeypatch
):
    write_sample_day(landing_root, DAY, posts=400, batch_size=400, malformed=False)
    perspective = resource(server.url, batch_size=20, concurrency=1)
    defs = defs_for(postgres, landing_root, perspective)
    real_write = LabelWriter.write
    writes = {"n": 0}

    def crashing_write(self, rows):
        writes["n"] += 1
        if writes["n"] == 4:
            raise RuntimeError("the machine went down")
        real_write(self, rows)

    monkeypatch.setattr(LabelWriter, "write", crashing_write)
    assert not materialize_day(defs, DAY, raise_on_error=False).success
    kept = label_rows(client)
    labelled_before = [r for r in kept if r[1]]
    assert len(labelled_before) == 3 * 20  # the batches completed before the crash were kept

    monkeypatch.setattr(LabelWriter, "write", real_write)
    parts_before = server.stats["parts"]
    assert materialize_day(defs, DAY).success
    rows = label_rows(client)
    uris = [r[0] for r in rows]
    assert len(uris) == len(set(uris))
    valid_count = client.fetch_all(
        f"SELECT count(*) FILTER (WHERE is_valid), count(*) FROM {client.qualified('valid_posts')}"
    )[0]
    assert len(rows) == valid_count[1]
    assert sum(1 for r in rows if r[1]) == valid_count[0]
    # only the posts not labelled before the crash were sent again (plus the lost batch)
    assert server.stats["parts"] - parts_before == valid_count[0] - len(labelled_before)


def test_exhausted_retries_are_retried_next_run_permanent_failures_never(
    postgres, client, landing_root
):
    write_jsonl(
        landing_root / SAMPLE_DAY.isoformat() / "b.jsonl",
        [post("fine", "an ordinary post"), post("french", "un message en français")],
    )
    options = {"require_key": True, "api_keys": (SECRET,), "fault_5xx_share": 1.0}
    with PerspectiveServer(ServerOptions(**options)) as failing:
        perspective = resource(failing.url, max_retries=1, languages=[])
        assert materialize_day(defs_for(postgres, landing_root, perspective), SAMPLE_DAY).success
    rows = {r[0].rsplit("/", 1)[1]: r for r in label_rows(client, SAMPLE_DAY)}
    assert {k: (r[2], r[3]) for k, r in rows.items()} == {
        "fine": ("retries_exhausted", True),
        "french": ("retries_exhausted", True),
    }

    # Healthy again; the French post asks for English-only bridging attributes: a 400.
    with PerspectiveServer(ServerOptions(require_key=True, api_keys=(SECRET,))) as healthy:
        perspective = resource(healthy.url, languages=["fr"], drop_unsupported_attributes=False)
        defs = defs_for(postgres, landing_root, perspective)
        assert materialize_day(defs, SAMPLE_DAY).success
        assert healthy.stats["parts"] == 2
        rows = {r[0].rsplit("/", 1)[1]: r for r in label_rows(client, SAMPLE_DAY)}
        assert rows["fine"][2] == rows["french"][2] == "LANGUAGE_NOT_SUPPORTED_BY_ATTRIBUTE"
        assert rows["french"][3] is False
        assert materialize_day(defs, SAMPLE_DAY).success
        assert healthy.stats["parts"] == 2  # permanent failures are never sent again


def test_no_key_and_googles_url_fails_at_once_naming_both_fixes(postgres, landing_root):
    write_jsonl(landing_root / SAMPLE_DAY.isoformat() / "b.jsonl", [post("a")])
    os.environ["PERSPECTIVE_URL"] = "https://commentanalyzer.googleapis.com"
    google = PerspectiveResource()
    result = materialize_day(
        defs_for(postgres, landing_root, google), SAMPLE_DAY, raise_on_error=False
    )
    assert not result.success
    failure = next(e for e in result.all_events if e.event_type_value == "STEP_FAILURE")
    message = str(failure.event_specific_data.error)
    assert "PERSPECTIVE_API_KEY" in message and "PERSPECTIVE_URL" in message


def test_the_key_never_reaches_rows_metadata_or_logs(postgres, client, landing_root, capfd, caplog):
    write_jsonl(
        landing_root / SAMPLE_DAY.isoformat() / "b.jsonl",
        [post(str(i), f"post number {i} with text") for i in range(40)] + [post("e", " " * 9)],
    )
    options = ServerOptions(
        require_key=True, api_keys=(SECRET,), fault_429_share=0.3, fault_5xx_share=0.2, seed=2
    )
    with dg.instance_for_test() as instance, PerspectiveServer(options) as server:
        import logging

        caplog.set_level(logging.DEBUG)
        perspective = resource(server.url, max_retries=1)
        result = materialize_day(
            defs_for(postgres, landing_root, perspective), SAMPLE_DAY, instance=instance
        )
        assert result.success
        assert server.stats.get("status_429", 0) > 0  # errors happened, and were logged
        event_text = "\n".join(str(e) for e in instance.all_logs(result.run_id))
    dump = client.fetch_all(f"SELECT * FROM {client.qualified('perspective_labels')}")
    captured = capfd.readouterr()
    for place in (repr(dump), event_text, captured.out, captured.err, caplog.text):
        assert SECRET not in place
    assert "retries_exhausted" in repr(dump)  # the error path did write rows


def test_a_post_whose_text_changed_is_labelled_again(postgres, client, landing_root, server):
    """Each row records the sha256 of the text it scored; a re-landed post with new text is sent
    again and its row replaced, an unchanged post is not."""
    day_folder = landing_root / DAY.isoformat()
    write_jsonl(day_folder / "a.jsonl", [post("1", "the first version of this post"), post("2")])
    defs = defs_for(postgres, landing_root, resource(server.url))
    assert materialize_day(defs, DAY).success
    before = dict(
        client.fetch_all(
            f"SELECT uri, text_sha256 FROM {client.qualified('perspective_labels')} ORDER BY uri"
        )
    )
    edited = post("1", "the second, edited version", preprocessing_timestamp="2024-06-01T13:00:00Z")
    write_jsonl(day_folder / "b.jsonl", [edited])
    result = materialize_day(defs, DAY)
    metadata = result.asset_materializations_for_node("perspective_labels")[-1].metadata
    assert metadata["posts_sent"].value == 1  # only the edited post
    after = dict(
        client.fetch_all(
            f"SELECT uri, text_sha256 FROM {client.qualified('perspective_labels')} ORDER BY uri"
        )
    )
    assert len(after) == 2
    assert after[post("1")["uri"]] != before[post("1")["uri"]]
    assert after[post("2")["uri"]] == before[post("2")["uri"]]
