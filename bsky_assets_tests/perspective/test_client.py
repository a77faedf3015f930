"""The batch client: the real google-api-python-client against the local server over HTTP."""

import logging
import random

import pytest

from bsky_assets.perspective.attributes import DEFAULT_ATTRIBUTE_SET
from bsky_assets.perspective.client import (
    RETRIES_EXHAUSTED,
    Comment,
    PerspectiveAuthError,
    PerspectiveClient,
    PerspectiveSettings,
)
from bsky_assets.settings import GOOGLE_PERSPECTIVE_URL as GOOGLE_URL
from bsky_assets_tests.fake_clock import FakeClock

SECRET = "fake-perspective-key-for-tests-0001"


def make_client(url: str, clock: FakeClock | None = None, **overrides) -> PerspectiveClient:
    settings = {
        "base_url": url,
        "api_key": SECRET,
        "requests_per_second": 10_000,
        "concurrency": 4,
        "max_retries": 12,
        "initial_backoff_seconds": 0.001,
        "max_backoff_seconds": 0.01,
        "timeout_seconds": 10,
    } | overrides
    if clock is None:
        return PerspectiveClient(PerspectiveSettings(**settings), rng=random.Random(1))
    return PerspectiveClient(
        PerspectiveSettings(**settings), clock=clock, sleep=clock.sleep, rng=random.Random(1)
    )


def comments(n: int) -> list[Comment]:
    return [
        Comment(f"at://did:plc:c/app.bsky.feed.post/{i}", f"comment number {i}") for i in range(n)
    ]


def collect(client: PerspectiveClient, items: list[Comment]) -> dict:
    results = [r for batch in client.analyze(items) for r in batch]
    keys = [r.key for r in results]
    assert len(keys) == len(set(keys)), "a comment was reported twice"
    return {r.key: r for r in results}


def test_mixed_batch_of_successes_and_permanent_errors(serve) -> None:
    server = serve.perspective()
    client = make_client(server.url)
    items = [*comments(3), Comment("empty", ""), Comment("long", "y" * 25_000)]
    results = collect(client, items)
    assert set(results) == {c.key for c in items}
    for c in comments(3):
        assert set(results[c.key].scores) == set(DEFAULT_ATTRIBUTE_SET.attributes)
    assert results["empty"].reason == "COMMENT_EMPTY" and not results["empty"].retryable
    assert results["long"].reason == "COMMENT_TOO_LONG" and results["long"].attempts == 1
    assert server.stats["batch_requests"] == 1  # one HTTP request for the 5 parts
    assert client.labeler == "bsky-perspective-server/synthetic-hash (synthetic)"
    assert client.labeler_version == "1"


def test_429_storm_and_5xx_lose_and_duplicate_nothing(serve) -> None:
    server = serve.perspective(fault_429_share=0.3, fault_5xx_share=0.1, seed=3)
    client = make_client(server.url, batch_size=50)
    items = comments(600)
    results = collect(client, items)
    assert set(results) == {c.key for c in items}
    assert all(r.scores is not None for r in results.values())
    stats = client.stats.as_dict()
    assert stats["status_429"] == server.stats["injected_429"] > 100
    assert stats["status_5xx"] == server.stats["injected_5xx"] > 30
    # only failed parts were re-sent: parts sent = posts + retries
    assert stats["parts_sent"] == 600 + stats["retried_parts"] == server.stats["parts"]
    assert server.stats["status_200"] == 600


def test_dropped_connections_retry_the_batch_and_nothing_is_sent_behind_the_pacing(serve) -> None:
    server = serve.perspective(drop_connection_share=0.6, seed=5)
    client = make_client(server.url, batch_size=20, concurrency=1)
    results = collect(client, comments(200))
    assert len(results) == 200 and all(r.scores for r in results.values())
    stats = client.stats.as_dict()
    assert server.stats["dropped_connections"] > 0
    assert stats["connection_errors"] == server.stats["dropped_connections"]
    # every request the server saw was one the client sent, paced and counted: httplib2's own
    # hidden re-send after a dropped connection is gone
    assert server.stats["http_requests"] == stats["http_requests"]
    assert server.stats["status_200"] == 200  # each post scored exactly once


def test_retries_exhausted_is_retryable(serve) -> None:
    server = serve.perspective(fault_5xx_share=1.0)
    client = make_client(server.url, max_retries=2)
    results = collect(client, comments(3))
    for result in results.values():
        assert (result.reason, result.retryable, result.attempts) == (RETRIES_EXHAUSTED, True, 3)
    assert server.stats["parts"] == 9


def test_per_minute_quota_is_respected_by_retrying(serve) -> None:
    server = serve.perspective(quota_per_minute=6_000)  # 100 parts/s, burst 100
    client = make_client(
        server.url,
        batch_size=50,
        concurrency=2,
        initial_backoff_seconds=0.2,
        max_backoff_seconds=0.5,
    )
    results = collect(client, comments(300))
    assert all(r.scores for r in results.values())
    assert server.stats["quota_429"] > 0  # the client was configured above the quota...
    assert server.stats["status_200"] == 300  # ...and still labelled everything once


def test_pacing_with_a_controllable_clock(serve) -> None:
    """At 100 parts/s, starting empty, 1,000 posts in batches of 50 take 1,000 / 100 s."""
    server = serve.perspective()
    clock = FakeClock()
    client = make_client(server.url, clock, requests_per_second=100, batch_size=50, concurrency=1)
    collect(client, comments(1_000))
    assert server.stats["batch_requests"] == 20
    assert client.bucket.waited_seconds == pytest.approx(10.0)
    assert clock.now == pytest.approx(10.0)
    assert clock.sleeps == pytest.approx([0.5] * 20)  # one batch every half second, no burst


def test_attributes_a_scorer_cannot_score_are_recorded_not_invented(serve) -> None:
    server = serve.perspective(scorer="profanity-check")
    client = make_client(server.url, drop_unsupported_attributes=True)
    result = collect(client, [Comment("a", "you absolute idiot, shut up")])["a"]
    assert set(result.scores) == {"PROFANITY"}  # one signal, never copied into TOXICITY
    assert {"NUANCE_EXPERIMENTAL", "TOXICITY"} <= set(result.unscored)
    assert client.labeler == "bsky-perspective-server/alt-profanity-check (model)"


def test_wrong_key_fails_the_run_without_leaking_it(serve, caplog) -> None:
    server = serve.perspective(require_key=True, api_keys=("the-right-key",))
    client = make_client(server.url)
    with caplog.at_level(logging.DEBUG), pytest.raises(PerspectiveAuthError) as raised:
        collect(client, comments(2))
    assert "API key not valid" in str(raised.value)
    assert SECRET not in str(raised.value) and SECRET not in repr(raised.value)
    assert SECRET not in caplog.text


def test_a_local_server_cannot_claim_to_be_google(serve, monkeypatch) -> None:
    server = serve.perspective()
    monkeypatch.setattr(
        server.service.scorer.__class__, "labeler", property(lambda self: "google-perspective-api")
    )
    client = make_client(server.url)
    assert client.labeler.startswith("perspective-compatible@127.0.0.1")


def test_google_url_keeps_googles_root_and_a_custom_url_never_does() -> None:
    google = PerspectiveClient(
        PerspectiveSettings(base_url=GOOGLE_URL, api_key="x", attributes=["TOXICITY"])
    )
    assert google.discovery["rootUrl"] == "https://commentanalyzer.googleapis.com/"
    assert google.labeler == "google-perspective-api"
    local = PerspectiveClient(
        PerspectiveSettings(base_url="http://127.0.0.1:9", api_key="x", attributes=["TOXICITY"])
    )
    assert "googleapis" not in str(local.discovery.get("rootUrl")) + str(local.discovery["baseUrl"])
    assert local.labeler == "perspective-compatible@127.0.0.1:9"  # no server there to declare one


def test_the_in_process_transport_reads_what_the_http_client_reads(serve) -> None:
    """Scored in the step or over HTTP, a comment gets the same scores and the same error:
    the in-process path reads the service's scores without building the API's response, so
    its rows must still be the ones HTTP would store. (Dropped attributes: test_asset.py's
    distilled model, which scores only some.)"""
    from bsky_assets.perspective.client import PerspectiveTuning
    from bsky_assets.perspective.in_process import InProcessPerspectiveClient

    attributes = [*DEFAULT_ATTRIBUTE_SET.attributes]
    server = serve.perspective(scorer="synthetic")
    items = [*comments(5), Comment("empty", ""), Comment("long", "y" * 25_000)]
    over_http = collect(make_client(server.url, attributes=attributes), items)
    in_process = InProcessPerspectiveClient(PerspectiveTuning(attributes=attributes), "synthetic")
    in_step = {r.key: r for batch in in_process.analyze(items) for r in batch}
    assert in_step == over_http
    assert over_http["long"].reason == "COMMENT_TOO_LONG"
    assert over_http["empty"].reason == "COMMENT_EMPTY"
    assert set(over_http[items[0].key].scores) == set(attributes)
