"""LLM labels through the official openai client, for any OpenAI-compatible server.

One client for every LLM task (llm/task.py): posts go out `posts_per_prompt` at a time under the
task's strict JSON schema; every answer entry is keyed by the post's prompt id and validated on
its own, so one bad entry fails (and retries) only its post. Requests are paced by
requests-per-minute and tokens-per-minute buckets shared by all threads, and retried here (the
openai client's own retries are off, so every attempt is paced): 429s after `retry-after`,
5xx/timeouts/connection errors with exponential backoff and jitter, malformed JSON again,
truncated output split in half, a refused multi-post prompt split into single posts.
"""

from __future__ import annotations

import json
import random
import re
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from functools import cached_property
from typing import Any
from urllib.parse import urlsplit

import openai
from openai.types.chat import ChatCompletion
from pydantic import Field

from bsky_assets.lib.calls import (
    RETRIES_EXHAUSTED,
    ApiAuthError,
    CallTuning,
    Counters,
    PacedClient,
    chunks,
)
from bsky_assets.lib.rate_limit import TokenBucket
from bsky_assets.lib.secrets import contains_secret, host_of
from bsky_assets.llm.prompt import build_messages, estimate_tokens
from bsky_assets.llm.task import LLMTask, Values
from bsky_assets.settings import DEFAULT_LLM_MODEL, OPENAI_URL

OPENAI_LABELER = "openai-api"
COMPATIBLE_LABELER = "openai-compatible"
MAX_TOLD_TO_WAIT = 100  # per prompt; beyond it a retry-after counts as a failed attempt again
MODEL_NAME = re.compile(r"[\w.:/@+\-]{1,120}")
__all__ = ["RETRIES_EXHAUSTED", "LLMAuthError", "LLMSettings", "LLMTaskClient"]


class LLMAuthError(ApiAuthError):
    """The provider refused the credentials."""


def is_openai(url: str) -> bool:
    return (urlsplit(url).hostname or "") == "api.openai.com"


class LLMTuning(CallTuning):
    """What run config may tune (the Dagster resource's fields)."""

    temperature: float = 0.0
    seed: int | None = 42
    posts_per_prompt: int = Field(
        default=10,
        ge=1,
        le=20,
        description="The seed measured 0.97-1.0 accuracy up to 20 posts a prompt, collapse at 25+.",
    )
    concurrency: int = Field(
        default=32,
        ge=1,
        description="Prompts in flight. The RPM/TPM buckets bound the rate; threads only hide "
        "latency (at 500 ms per answer, 20 requests/s needs at least 10 in flight).",
    )
    max_retries: int = Field(default=5, ge=0)
    requests_per_minute: float = Field(default=500.0, gt=0)
    tokens_per_minute: float = Field(default=200_000.0, gt=0)
    max_output_tokens_per_post: int = Field(default=40, ge=1)


class LLMSettings(LLMTuning):
    """Everything a client needs: the tuning, plus where to send, with which key, which model."""

    base_url: str = Field(default=OPENAI_URL, description="OpenAI or a compatible server.")
    api_key: str | None = Field(default=None, repr=False)
    model: str = Field(default=DEFAULT_LLM_MODEL, description="Model name sent to the server.")

    @property
    def uses_openai(self) -> bool:
        return is_openai(self.base_url)


@dataclass(frozen=True)
class Post:
    key: str
    text: str


@dataclass
class PostLabel:
    """One post's answer: the task's values, or why there is none."""

    key: str
    values: Values | None = None
    reason: str | None = None
    retryable: bool = False
    attempts: int = 0
    model: str | None = None

    @property
    def ok(self) -> bool:
        return self.reason is None


@dataclass
class LLMStats(Counters):
    requests: int = 0
    posts_sent: int = 0
    retried_posts: int = 0
    status_429: int = 0
    status_5xx: int = 0
    timeouts: int = 0
    connection_errors: int = 0
    malformed_json: int = 0
    truncated: int = 0
    refusals: int = 0
    bad_requests: int = 0
    invalid_entries: int = 0
    unknown_ids: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0


class RetryPrompt(Exception):
    """A whole request failed transiently; `wait` seconds are required before retrying."""

    def __init__(self, reason: str, wait: float | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.wait = wait


class LLMTaskClient(PacedClient):
    """Asks one task of posts, `posts_per_prompt` at a time, paced, retried, validated."""

    def __init__(
        self,
        settings: LLMSettings,
        task: LLMTask,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        rng: random.Random | None = None,
    ) -> None:
        super().__init__(settings, settings.api_key, sleep, rng)
        self.settings = settings
        self.task = task
        rpm, tpm = settings.requests_per_minute, settings.tokens_per_minute
        # Empty at start, as per-minute limits require (see TokenBucket).
        self.requests_bucket = TokenBucket(
            rpm / 60, max(rpm / 60, 1), clock, sleep, initial_tokens=0
        )
        self.tokens_bucket = TokenBucket(tpm / 60, max(tpm / 60, 8_000), clock, sleep)
        self.stats = LLMStats()
        self.openai = openai.OpenAI(
            api_key=settings.api_key or "no-key-for-a-local-server",
            base_url=settings.base_url,
            max_retries=0,  # every retry goes through this client's rate limits
            timeout=settings.timeout_seconds,
        )
        # Who labels is the service and the model, never where it listens: the same model
        # behind another port or host is the same labeller (the endpoint is provenance).
        self.labeler = OPENAI_LABELER if is_openai(settings.base_url) else COMPATIBLE_LABELER
        self.endpoint = host_of(settings.base_url)

    @cached_property
    def served_model(self) -> str:
        """The model that answers requests for the configured one, by the server's own model
        list (free, no tokens): the configured model when the server lists it, else the one
        model a single-model server (vLLM, llama.cpp, the local heuristic) serves, else the
        configured one. It names the label set, so swapping what serves a name is a new set."""
        try:
            listed = [m.id for m in self.openai.models.list()]
        except (openai.OpenAIError, ValueError, TypeError):  # no /v1/models: trust the name
            return self.settings.model
        names = [name for name in listed if _model_name(name)]
        if self.settings.model in names or len(names) != 1:
            return self.settings.model
        return names[0]

    # -- orchestration ---------------------------------------------------------------------------

    def label(self, posts: Iterable[Post]) -> Iterator[list[PostLabel]]:
        """Yield final labels prompt by prompt, with `concurrency` prompts in flight."""
        groups = chunks(posts, self.settings.posts_per_prompt)
        yield from self.in_flight(groups, self._label_group, "llm")

    def _label_group(self, posts: list[Post]) -> list[PostLabel]:
        results: dict[str, PostLabel] = {}
        attempts: Counter[str] = Counter()
        told_to_wait = 0  # 429s that said how long to wait: pacing, not failures
        queue: list[list[Post]] = [posts]
        while queue:
            group = queue.pop()
            for post in group:
                attempts[post.key] += 1
            self.stats.add(posts_sent=len(group))
            try:
                answers, model = self._request(group)
            except RetryPrompt as retry:
                if retry.wait is not None and told_to_wait < MAX_TOLD_TO_WAIT:
                    told_to_wait += 1
                    for post in group:  # a wait the server asked for is not a failed attempt
                        attempts[post.key] -= 1
                if max(attempts[p.key] for p in group) > self.settings.max_retries:
                    reason = retry.reason if retry.reason != "truncated" else "truncated_output"
                    for post in group:
                        results[post.key] = self._failed(post, RETRIES_EXHAUSTED, True, attempts)
                        results[post.key].reason = f"{RETRIES_EXHAUSTED}: {reason}"
                    continue
                if retry.reason == "truncated" and len(group) > 1:
                    middle = len(group) // 2
                    queue += [group[:middle], group[middle:]]  # smaller prompts, shorter answers
                    continue
                self.stats.add(retried_posts=len(group))
                attempt = max(attempts[p.key] for p in group)
                # A server's retry-after is obeyed up to max_backoff_seconds, never longer.
                wait = self.backoff(attempt) if retry.wait is None else retry.wait
                self._sleep(min(max(wait, 0.0), self.settings.max_backoff_seconds))
                queue.append(group)
                continue
            except PromptRefused as refused:  # a refusal, or a 400 for this prompt
                if refused.is_refusal:
                    self.stats.add(refusals=1)
                else:
                    self.stats.add(bad_requests=1)
                if len(group) > 1:  # find the post it concerns: ask one at a time
                    queue += [[p] for p in group]
                else:
                    results[group[0].key] = self._failed(group[0], refused.reason, False, attempts)
                continue
            for post in group:
                answer = answers.get(post.key)
                if isinstance(answer, PostLabel):
                    answer.attempts = attempts[post.key]
                    answer.model = model
                    results[post.key] = answer
                elif attempts[post.key] > self.settings.max_retries:
                    results[post.key] = self._failed(post, str(answer), True, attempts)
                else:
                    self.stats.add(retried_posts=1)
                    queue.append([post])  # only this post, alone
        return [results[p.key] for p in posts]

    def _failed(
        self, post: Post, reason: str, retryable: bool, attempts: Counter[str]
    ) -> PostLabel:
        return PostLabel(post.key, reason=reason, retryable=retryable, attempts=attempts[post.key])

    # -- one request -----------------------------------------------------------------------------

    def request_body(self, group: list[Post]) -> tuple[dict[str, str], dict[str, Any]]:
        """One prompt for `group`: its prompt ids (→ post keys) and the chat-completions body.
        The same body goes to the synchronous API and into Batch API request files."""
        ids = {f"p{i}": post.key for i, post in enumerate(group)}
        body = {
            "model": self.settings.model,
            "messages": build_messages(
                self.task, [(pid, post.text) for pid, post in zip(ids, group, strict=True)]
            ),
            "response_format": self.task.response_format,
            "temperature": self.settings.temperature,
            "seed": self.settings.seed,
            "max_tokens": 50 + self.settings.max_output_tokens_per_post * len(group),
        }
        return ids, body

    def _request(self, group: list[Post]) -> tuple[dict[str, Any], str]:
        """Send one prompt; return (post key → PostLabel or failure reason, model name)."""
        ids, body = self.request_body(group)
        estimate = sum(estimate_tokens(m["content"]) for m in body["messages"])
        self.requests_bucket.acquire(1)
        self.tokens_bucket.acquire(min(estimate + body["max_tokens"], self.tokens_bucket.capacity))
        self.stats.add(requests=1)
        try:
            # The body is built in wire form, so it is posted as it is: the same JSON to the
            # same endpoint, parsed into the same ChatCompletion, with the same errors, but
            # without `create` walking every message through its TypedDict transform (a fifth
            # of a request's CPU, in a step that is CPU-bound at 1,000,000 posts a day).
            response = self.openai.post("/chat/completions", body=body, cast_to=ChatCompletion)
        except (openai.AuthenticationError, openai.PermissionDeniedError) as error:
            raise LLMAuthError(self.scrub(f"{type(error).__name__}: {error.message}")) from None
        except openai.RateLimitError as error:
            self.stats.add(status_429=1)
            raise RetryPrompt("rate_limited", _retry_after(error.response)) from None
        except openai.InternalServerError:
            self.stats.add(status_5xx=1)
            raise RetryPrompt("server_error") from None
        except openai.APITimeoutError:
            self.stats.add(timeouts=1)
            raise RetryPrompt("timeout") from None
        except openai.APIConnectionError:
            self.stats.add(connection_errors=1)
            raise RetryPrompt("connection_error") from None
        except openai.BadRequestError as error:
            reason = self.scrub(f"bad_request: {error.message}")[:300]
            raise PromptRefused(reason, is_refusal=False) from None
        except openai.APIStatusError as error:  # 404, 409, 422, ...: the configuration, not a post
            raise RuntimeError(
                self.scrub(f"{type(error).__name__} (HTTP {error.status_code}): {error.message}")
            ) from None
        return self.read_completion(response, ids)

    def read_completion(
        self, response: ChatCompletion, ids: dict[str, str]
    ) -> tuple[dict[str, Any], str]:
        """Validate one answer, from either API: (post key → PostLabel or reason, model name).
        Raises RetryPrompt (truncated, malformed) or PromptRefused for the whole prompt."""
        if response.usage:
            self.stats.add(
                prompt_tokens=response.usage.prompt_tokens,
                completion_tokens=response.usage.completion_tokens,
            )
        choice = response.choices[0] if response.choices else None
        if choice is None or choice.message is None:  # nothing to read: as malformed, retried
            self.stats.add(malformed_json=1)
            raise RetryPrompt("malformed_json")
        if choice.message.refusal:
            raise PromptRefused(self.scrub(f"refusal: {choice.message.refusal}")[:300])
        if choice.finish_reason == "length":
            self.stats.add(truncated=1)
            raise RetryPrompt("truncated")
        try:
            entries = json.loads(choice.message.content or "")["labels"]
            if not isinstance(entries, list):
                raise TypeError
        except (ValueError, KeyError, TypeError):
            self.stats.add(malformed_json=1)
            raise RetryPrompt("malformed_json") from None
        return self._validate(entries, ids), _model_name(response.model) or self.settings.model

    def _validate(self, entries: list[Any], ids: dict[str, str]) -> dict[str, Any]:
        """Per post key, a PostLabel or the reason its entry was unusable."""
        by_id: dict[str, list[Any]] = {}
        for entry in entries:
            entry_id = entry.get("id") if isinstance(entry, dict) else None
            if not isinstance(entry_id, str) or entry_id not in ids:  # a list, a number, ...
                self.stats.add(unknown_ids=1)
                continue
            by_id.setdefault(entry_id, []).append(entry)
        results: dict[str, Any] = {}
        for prompt_id, key in ids.items():
            found = by_id.get(prompt_id, [])
            if not found:
                results[key] = "missing_in_response"
            elif len(found) > 1:
                results[key] = "duplicate_id"
            else:
                values = self.task.read_entry(found[0])
                results[key] = PostLabel(key, values) if isinstance(values, dict) else values
            if not isinstance(results[key], PostLabel):
                self.stats.add(invalid_entries=1)
        return results


class PromptRefused(Exception):
    """The server will not answer this prompt: a refusal, or a 400 (`is_refusal=False`)."""

    def __init__(self, reason: str, is_refusal: bool = True) -> None:
        super().__init__(reason)
        self.reason = reason
        self.is_refusal = is_refusal


def _model_name(value: object) -> str | None:
    """The model a server says answered, if it is a plain name holding no secret this process
    knows (it lands in every row, the metadata and the logs)."""
    if isinstance(value, str) and MODEL_NAME.fullmatch(value) and not contains_secret(value):
        return value
    return None


def _retry_after(response: Any) -> float | None:
    headers = getattr(response, "headers", {}) or {}
    try:
        if headers.get("retry-after-ms"):
            return float(headers["retry-after-ms"]) / 1000
        if headers.get("retry-after"):
            return float(headers["retry-after"])
    except ValueError:
        return None
    return None
