"""The sociopolitical client: the real openai client against the local server over HTTP."""

import logging
import random
import time

import pytest

from bsky_assets.llm.client import (
    LLMAuthError,
    LLMSettings,
    LLMTaskClient,
    Post,
)
from bsky_assets.servers.llm import answers
from bsky_assets.servers.llm.answers import sociopolitical
from bsky_assets.sociopolitical.task import SOCIOPOLITICAL
from bsky_assets_tests.fake_clock import FakeClock

SECRET = "fake-openai-key-for-tests-0004"
TEXTS = [
    "Secure the border now. Ohio cannot take another year of this policy.",
    "Medicare for all would save lives. Call your senator about the housing bill.",
    "Both parties should sit down and pass the budget bill; compromise is not a dirty word.",
    "Made sourdough for the first time this weekend and it actually rose!",
    "The debate last night was long.",
    "Our cat has decided the new box is her home now.",
]


def make_client(url: str, clock: FakeClock | None = None, **overrides) -> LLMTaskClient:
    settings = {
        "base_url": url,
        "api_key": SECRET,
        "model": "test-model",
        "requests_per_minute": 60_000,
        "tokens_per_minute": 10_000_000,
        "max_retries": 8,
        "initial_backoff_seconds": 0.001,
        "max_backoff_seconds": 0.01,
        "timeout_seconds": 10,
    } | overrides
    if clock is None:
        return LLMTaskClient(LLMSettings(**settings), SOCIOPOLITICAL, rng=random.Random(0))
    return LLMTaskClient(
        LLMSettings(**settings),
        SOCIOPOLITICAL,
        clock=clock,
        sleep=clock.sleep,
        rng=random.Random(0),
    )


def posts(n: int) -> list[Post]:
    return [Post(f"at://p/{i}", f"{TEXTS[i % len(TEXTS)]} #{i}") for i in range(n)]


def collect(client: LLMTaskClient, items: list[Post]) -> dict:
    results = [r for batch in client.label(items) for r in batch]
    keys = [r.key for r in results]
    assert len(keys) == len(set(keys)), "a post was reported twice"
    assert set(keys) == {p.key for p in items}, "a post was lost"
    return {r.key: r for r in results}


def test_answers_are_matched_by_id_not_position(serve) -> None:
    server = serve.llm(shuffle_output=True, seed=4)
    client = make_client(server.url, posts_per_prompt=6)
    items = posts(30)
    results = collect(client, items)
    for post in items:
        expected = sociopolitical.label(post.text)
        got = results[post.key]
        assert (got.values["is_sociopolitical"], got.values["political_ideology_label"]) == expected
        assert got.model == answers.MODEL_NAME and got.reason is None
    assert server.stats["completions"] == 5
    assert client.labeler == "openai-compatible"
    assert client.endpoint.startswith("127.0.0.1:")


@pytest.mark.parametrize(
    "fault",
    [
        "fault_5xx_share",
        "fault_malformed_json_share",
        "fault_missing_id_share",
        "fault_extra_id_share",
        "fault_truncation_share",
    ],
)
def test_each_fault_loses_and_duplicates_nothing(serve, fault) -> None:
    server = serve.llm(**{fault: 0.4}, seed=7)
    client = make_client(server.url, posts_per_prompt=5)
    results = collect(client, posts(60))
    assert all(r.reason is None for r in results.values()), [
        r.reason for r in results.values() if r.reason
    ]
    injected = {k: v for k, v in server.stats.items() if k.startswith("injected_")}
    assert sum(injected.values()) > 0


def test_missing_entries_are_retried_alone(serve) -> None:
    server = serve.llm(fault_missing_id_share=1.0)  # every answer drops one entry
    client = make_client(server.url, posts_per_prompt=5, max_retries=2)
    results = collect(client, posts(5))
    ok = [r for r in results.values() if r.reason is None]
    failed = [r for r in results.values() if r.reason]
    # 4 answered in the first prompt; the 5th retried alone, and dropped again each time
    assert len(ok) == 4 and len(failed) == 1
    assert failed[0].reason == "missing_in_response" and failed[0].retryable
    assert failed[0].attempts == 3
    assert client.stats.as_dict()["retried_posts"] == 2


def test_429_waits_for_retry_after(serve) -> None:
    server = serve.llm(requests_per_minute=600)  # 10/s, burst 10; the client asks for more
    slept: list[float] = []

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        time.sleep(seconds)

    settings = LLMSettings(
        base_url=server.url,
        api_key=SECRET,
        requests_per_minute=60_000,
        tokens_per_minute=100_000_000,  # neither client bucket waits: every sleep is a retry
        posts_per_prompt=1,
        concurrency=4,
        max_retries=20,
    )
    client = LLMTaskClient(settings, SOCIOPOLITICAL, sleep=sleep)
    results = collect(client, posts(30))
    assert all(r.reason is None for r in results.values())
    assert server.stats["status_429"] > 0
    assert client.stats.as_dict()["status_429"] == server.stats["status_429"]
    # each 429 was followed by one sleep of the server's retry-after (0 < wait <= 0.1 s at 10/s)
    waits = [s for s in slept if s > 0]
    assert len(waits) == server.stats["status_429"]
    assert all(0 < w <= 0.101 for w in waits)


def test_rpm_pacing_with_a_controllable_clock(serve) -> None:
    server = serve.llm()
    clock = FakeClock()
    client = make_client(server.url, clock, requests_per_minute=60, concurrency=1)
    collect(client, posts(100))  # 10 prompts of 10 posts at 1 request per second
    assert server.stats["completions"] == 10
    assert clock.now == pytest.approx(10.0)  # one request per second, starting empty


def test_a_refusal_is_recorded_for_the_refused_post_only(serve) -> None:
    server = serve.llm(refuse_containing="#3")
    client = make_client(server.url, posts_per_prompt=5)
    results = collect(client, posts(5))
    refused = results["at://p/3"]
    assert refused.reason.startswith("refusal:") and not refused.retryable
    assert all(results[f"at://p/{i}"].reason is None for i in (0, 1, 2, 4))


def test_a_400_fails_only_its_post_and_is_not_counted_as_a_refusal(serve) -> None:
    server = serve.llm(reject_containing="#2")
    client = make_client(server.url, posts_per_prompt=4)
    results = collect(client, posts(4))
    rejected = results["at://p/2"]
    assert rejected.reason.startswith("bad_request:") and "flagged" in rejected.reason
    assert not rejected.retryable
    assert all(results[f"at://p/{i}"].reason is None for i in (0, 1, 3))
    stats = client.stats.as_dict()
    assert stats["bad_requests"] == 2 and stats["refusals"] == 0  # the group of 4, then p2 alone
    assert server.stats["status_400"] == 2


def test_exhausted_server_errors_are_retryable_failures(serve) -> None:
    server = serve.llm(fault_5xx_share=1.0)
    client = make_client(server.url, max_retries=1, posts_per_prompt=3)
    results = collect(client, posts(3))
    assert {r.reason for r in results.values()} == {"retries_exhausted: server_error"}
    assert all(r.retryable and r.attempts == 2 for r in results.values())


def test_the_key_is_never_logged_and_auth_errors_are_scrubbed(serve, caplog) -> None:
    caplog.set_level(logging.DEBUG)
    server = serve.llm(fault_5xx_share=0.3, seed=1)
    collect(make_client(server.url), posts(20))
    assert SECRET not in caplog.text
    refusing = serve.llm(api_keys=("sk-the-right-key",))
    with pytest.raises(LLMAuthError) as raised:
        collect(make_client(refusing.url), posts(1))
    assert "AuthenticationError" in str(raised.value) and "Incorrect API key" in str(raised.value)
    assert SECRET not in str(raised.value) and SECRET not in caplog.text


def test_a_429_that_says_how_long_to_wait_is_not_a_failed_attempt(serve) -> None:
    server = serve.llm(requests_per_minute=600)  # 10/s: 429s with retry-after certainly follow
    client = LLMTaskClient(
        LLMSettings(
            base_url=server.url,
            requests_per_minute=600_000,  # the client does not pace: the server's 429s do
            tokens_per_minute=100_000_000,
            posts_per_prompt=1,
            concurrency=4,
            max_retries=0,  # no failed attempt allowed at all
        ),
        SOCIOPOLITICAL,
    )
    results = collect(client, posts(30))
    assert server.stats["status_429"] > 0
    assert all(r.reason is None for r in results.values())
