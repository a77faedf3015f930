"""Batched AnalyzeComment calls through google-api-python-client, paced, retried per part.

The service is built from the bundled discovery document pointed at the configured server (see
`discovery.py`): the client sends batches to `rootUrl + "batch"`, so that is the only way to
guarantee no request for a self-hosted server ever reaches Google.
"""

from __future__ import annotations

import http.client
import json
import math
import random
import re
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import google.auth.api_key
import google_auth_httplib2
import httplib2
from googleapiclient.discovery import build_from_document
from googleapiclient.errors import HttpError
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
from bsky_assets.perspective.attributes import DEFAULT_ATTRIBUTES, AttributeSet
from bsky_assets.perspective.discovery import discovery_document_for, is_google
from bsky_assets.settings import GOOGLE_PERSPECTIVE_URL

# httplib2 re-sends a request after some connection errors. Such a retry bypasses the rate limiter
# although every part counts against the quota, so its general retry is turned off (a process-wide
# setting of httplib2's module global) and retries are PerspectiveClient's, paced and counted.
httplib2.RETRIES = 1


class _NoResend:
    """httplib2 still re-sends once, whatever RETRIES says, when the first response is missing
    (`BadStatusLine`: its rule for stale keep-alive connections). Reporting that as a dropped
    connection instead makes it one of this client's own retries: paced, counted, bounded."""

    def getresponse(self):
        try:
            return super().getresponse()  # type: ignore[misc]
        except (http.client.BadStatusLine, http.client.ResponseNotReady) as error:
            self.close()  # type: ignore[attr-defined]
            raise ConnectionResetError(f"no response: {type(error).__name__}") from None


class _HTTPConnection(_NoResend, httplib2.HTTPConnectionWithTimeout):
    pass


class _HTTPSConnection(_NoResend, httplib2.HTTPSConnectionWithTimeout):
    pass


class NoResendHttp(httplib2.Http):
    def request(
        self, uri, method="GET", body=None, headers=None, redirections=5, connection_type=None
    ):
        if connection_type is None:
            secure = str(uri).lower().startswith("https")
            connection_type = _HTTPSConnection if secure else _HTTPConnection
        return super().request(uri, method, body, headers, redirections, connection_type)


GOOGLE_LABELER = "google-perspective-api"
TRANSIENT_STATUSES = {408, 429, 500, 502, 503, 504}
ERROR_TYPE = re.compile(r"[A-Z][A-Z0-9_]{0,63}")  # Perspective's errorType shape: COMMENT_EMPTY
DECLARED_NAME = re.compile(r"[\w .()/@:+\-]{1,120}")
__all__ = ["RETRIES_EXHAUSTED", "PerspectiveAuthError", "PerspectiveClient", "PerspectiveSettings"]


class PerspectiveAuthError(ApiAuthError):
    """Perspective refused the credentials."""


class PerspectiveTuning(CallTuning):
    """What run config may tune (the Dagster resource's fields)."""

    attributes: list[str] = Field(default_factory=lambda: list(DEFAULT_ATTRIBUTES))
    languages: list[str] = Field(default_factory=lambda: ["en"])
    do_not_store: bool = Field(default=True, description="These are other people's posts.")
    drop_unsupported_attributes: bool | None = Field(
        default=None,
        description="Ask the server to drop attributes it cannot score instead of failing the "
        "post; dropped attributes are recorded per row in unscored_attributes. Default: on for "
        "compatible servers (their scorers may model only some attributes), off for Google.",
    )
    batch_size: int = Field(default=50, ge=1, le=100, description="Parts per batch request.")
    requests_per_second: float = Field(
        default=1.0,
        gt=0,
        description="Comments per second across all threads (each batch part counts). "
        "Google's default quota is 1/s.",
    )

    @property
    def attribute_set(self) -> AttributeSet:
        return AttributeSet(tuple(self.attributes))


class PerspectiveSettings(PerspectiveTuning):
    """Everything a client needs: the tuning, plus where to send and with which key."""

    base_url: str = Field(
        default=GOOGLE_PERSPECTIVE_URL,
        description="Google's API or a Perspective-compatible server.",
    )
    api_key: str | None = Field(default=None, repr=False)

    @property
    def uses_google(self) -> bool:
        return is_google(self.base_url)

    @property
    def drops_unsupported(self) -> bool:
        if self.drop_unsupported_attributes is None:
            return not self.uses_google
        return self.drop_unsupported_attributes


@dataclass(frozen=True)
class Comment:
    key: str
    text: str


@dataclass
class CommentResult:
    key: str
    scores: dict[str, float] | None = None  # attribute → summary score
    reason: str | None = None  # why it failed (errorType or message), None when scored
    retryable: bool = False  # True only for retries_exhausted: the next run tries again
    attempts: int = 0
    unscored: tuple[str, ...] = ()  # requested attributes the server dropped (unsupported)


@dataclass
class ClientStats(Counters):
    http_requests: int = 0
    parts_sent: int = 0
    retried_parts: int = 0
    status_429: int = 0
    status_5xx: int = 0
    connection_errors: int = 0
    outer_batch_failures: int = 0
    malformed_parts: int = 0


_TRANSIENT = object()


class PerspectiveClient(PacedClient):
    """Send comments in batches; yield each batch's final results as it completes."""

    def __init__(
        self,
        settings: PerspectiveSettings,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        rng: random.Random | None = None,
    ) -> None:
        super().__init__(settings, settings.api_key, sleep, rng)
        self.settings = settings
        # Start empty and burst at most one batch: the quota is counted per minute, and a full
        # bucket at start (or a bigger burst) could exceed it within the first window.
        self.bucket = TokenBucket(
            settings.requests_per_second, settings.batch_size, clock, sleep, initial_tokens=0
        )
        self.stats = ClientStats()
        self._local = threading.local()
        self.attribute_set = settings.attribute_set
        self.discovery = discovery_document_for(self.root_url)
        self.labeler, self.labeler_version = self._identify()

    # -- set-up ----------------------------------------------------------------------------------

    @property
    def root_url(self) -> str:
        return self.settings.base_url.rstrip("/") + "/"

    def _identify(self) -> tuple[str, str]:
        """Who produces the scores: Google, or the compatible server's declared scorer."""
        if is_google(self.root_url):
            return GOOGLE_LABELER, self.discovery["version"]
        url = self.root_url + "$discovery/rest?version=v1alpha1"
        try:
            response, content = self._http().request(url, "GET")
            served = json.loads(content) if response.status == 200 else {}
        except (OSError, httplib2.HttpLib2Error, ValueError):
            served = {}
        served = served if isinstance(served, dict) else {}
        declared = served.get("x-bskyLabeler")
        declared = declared if isinstance(declared, dict) else {}
        fallback = f"perspective-compatible@{host_of(self.root_url)}"
        labeler = _declared(declared.get("labeler")) or fallback
        if labeler.startswith(GOOGLE_LABELER):  # emulated scores must never pass for Google's
            labeler = fallback
        version = _declared(declared.get("version")) or _declared(served.get("revision"))
        return labeler, version or "unknown"

    def _http(self) -> httplib2.Http:
        """One Http (and service) per thread: httplib2 is not thread-safe.

        The key travels in the `x-goog-api-key` header (google-auth's API-key credentials), not
        in the URL, so no request line, proxy log or error text carries it."""
        if getattr(self._local, "http", None) is None:
            http = NoResendHttp(timeout=self.settings.timeout_seconds)
            if self.settings.api_key:
                credentials = google.auth.api_key.Credentials(self.settings.api_key)
                http = google_auth_httplib2.AuthorizedHttp(credentials, http=http)
            self._local.http = http
        return self._local.http

    def _service(self):
        if getattr(self._local, "service", None) is None:
            self._local.service = build_from_document(self.discovery, http=self._http())
        return self._local.service

    # -- sending ---------------------------------------------------------------------------------

    def analyze(self, comments: Iterable[Comment]) -> Iterator[list[CommentResult]]:
        """Yield final results batch by batch, keeping `concurrency` batches in flight."""
        batches = chunks(comments, self.settings.batch_size)
        yield from self.in_flight(batches, self._run_batch, "perspective")

    def _request_body(self, comment: Comment) -> dict[str, Any]:
        body: dict[str, Any] = {
            "comment": {"text": comment.text, "type": "PLAIN_TEXT"},
            "requestedAttributes": {a: {} for a in self.attribute_set.attributes},
            "doNotStore": self.settings.do_not_store,
        }
        if self.settings.languages:
            body["languages"] = list(self.settings.languages)
        if self.settings.drops_unsupported:
            body["dropUnsupportedAttributes"] = True
        return body

    def _send(self, comments: list[Comment]) -> dict[str, Any]:
        """One HTTP batch request; per comment either (response, None) or (None, HttpError)."""
        service = self._service()
        outcome: dict[str, Any] = {}

        def callback(request_id: str, response: Any, exception: Exception | None) -> None:
            outcome[request_id] = (response, exception)

        batch = service.new_batch_http_request(callback=callback)
        for comment in comments:
            batch.add(
                service.comments().analyze(body=self._request_body(comment)), request_id=comment.key
            )
        self.stats.add(http_requests=1, parts_sent=len(comments))
        batch.execute(http=self._http())
        return outcome

    def _run_batch(self, comments: list[Comment]) -> list[CommentResult]:
        pending = {c.key: c for c in comments}
        results: dict[str, CommentResult] = {}
        attempts = dict.fromkeys(pending, 0)
        while pending:
            self.bucket.acquire(len(pending))  # every part counts against the quota
            for key in pending:
                attempts[key] += 1
            try:
                outcome = self._send(list(pending.values()))
            except HttpError as error:  # the batch request itself was refused
                status = error.resp.status
                if status in (401, 403):
                    raise PerspectiveAuthError(self._auth_message(error)) from None
                self.stats.add(outer_batch_failures=1)
                outcome = dict.fromkeys(pending, (None, _TRANSIENT))
            except (OSError, httplib2.HttpLib2Error, ConnectionError):  # timeouts, drops
                self.stats.add(outer_batch_failures=1, connection_errors=1)
                self._local.http = None  # a dropped connection can leave the Http unusable
                self._local.service = None
                outcome = dict.fromkeys(pending, (None, _TRANSIENT))
            for key in list(pending):
                response, error = outcome.get(key, (None, _TRANSIENT))
                result = self._classify(key, response, error, attempts[key])
                if result is not None:
                    results[key] = result
                    del pending[key]
            if pending:
                self.stats.add(retried_parts=len(pending))
                self._sleep(self.backoff(max(attempts[k] for k in pending)))
        return [results[c.key] for c in comments]

    def _classify(self, key: str, response: Any, error: Any, attempts: int) -> CommentResult | None:
        """A final result for the comment, or None when it should be retried."""
        if error is None:
            scores = _scores(response, self.attribute_set.attributes)
            if scores == MALFORMED:  # a garbled part: the transport's fault, not the post's
                self.stats.add(malformed_parts=1)
                if attempts <= self.settings.max_retries:
                    return None
                reason = f"{RETRIES_EXHAUSTED}: {MALFORMED}"
                return CommentResult(key, reason=reason, retryable=True, attempts=attempts)
            if isinstance(scores, str):  # a value that is not a probability: never a success
                return CommentResult(key, reason=scores, attempts=attempts)
            requested = self.attribute_set.attributes
            unscored = tuple(a for a in requested if a not in scores)
            return CommentResult(key, scores=scores, attempts=attempts, unscored=unscored)
        if isinstance(error, HttpError):
            status = error.resp.status
            if status in (401, 403) or _is_invalid_key(error):
                raise PerspectiveAuthError(self._auth_message(error))
            if status == 429:
                self.stats.add(status_429=1)
            elif status >= 500:
                self.stats.add(status_5xx=1)
            if status not in TRANSIENT_STATUSES:
                return CommentResult(key, reason=self._reason(error), attempts=attempts)
        if attempts > self.settings.max_retries:
            return CommentResult(key, reason=RETRIES_EXHAUSTED, retryable=True, attempts=attempts)
        return None

    def _reason(self, error: HttpError) -> str:
        """The API's errorType when it gives one (COMMENT_EMPTY, ...), else its message."""
        try:
            payload = json.loads(error.content)["error"]
        except (ValueError, KeyError, TypeError):
            return f"http_{error.resp.status}"
        for detail in payload.get("details") or [] if isinstance(payload, dict) else []:
            error_type = detail.get("errorType") if isinstance(detail, dict) else None
            if isinstance(error_type, str) and ERROR_TYPE.fullmatch(error_type):
                return error_type
        message = payload.get("message", "") if isinstance(payload, dict) else ""
        return self.scrub(f"http_{error.resp.status}: {message}")[:500]

    def _auth_message(self, error: HttpError) -> str:
        try:
            message = json.loads(error.content)["error"]["message"]
        except (ValueError, KeyError, TypeError):
            message = ""
        return self.scrub(
            f"Perspective refused the request (HTTP {error.resp.status}): {message} "
            "Check PERSPECTIVE_API_KEY and PERSPECTIVE_URL."
        )


def _declared(value: object) -> str | None:
    """A name a server declares for itself, if it is a plain, short one holding no secret this
    process knows (it lands in rows, label sets, metadata and logs)."""
    if isinstance(value, str | int) and not isinstance(value, bool):
        text = str(value)
        if DECLARED_NAME.fullmatch(text) and not contains_secret(text):
            return text
    return None


MALFORMED = "malformed_response"


def _scores(response: Any, requested: tuple[str, ...]) -> dict[str, float] | str:
    """The summary scores of a part's answer for the requested attributes, or why it has none:
    `malformed_response` (not the documented shape) or `invalid_score: ATTRIBUTE` (a value that
    is not a probability: out of [0, 1], NaN, infinite). Total: any shape gives one or the
    other, so answers already paid for are never lost to an exception."""
    attribute_scores = response.get("attributeScores") if isinstance(response, dict) else None
    if attribute_scores is None:
        attribute_scores = {}
    if not isinstance(attribute_scores, dict):
        return MALFORMED
    scores: dict[str, float] = {}
    for attribute in requested:  # only names we asked for reach a row or a reason
        if attribute not in attribute_scores:
            continue
        entry = attribute_scores[attribute]
        summary = entry.get("summaryScore") if isinstance(entry, dict) else None
        value = summary.get("value") if isinstance(summary, dict) else None
        if isinstance(value, bool) or not isinstance(value, int | float):
            return MALFORMED
        if not math.isfinite(value) or not 0.0 <= value <= 1.0:
            return f"invalid_score: {attribute}"
        scores[attribute] = float(value)
    return scores


def _is_invalid_key(error: HttpError) -> bool:
    """Google answers a wrong key with 400 API_KEY_INVALID: a run failure, not the post's."""
    try:
        details = json.loads(error.content)["error"].get("details") or []
    except (ValueError, KeyError, TypeError, AttributeError):
        return False
    return any(isinstance(d, dict) and d.get("reason") == "API_KEY_INVALID" for d in details)
