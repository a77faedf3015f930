"""What a Perspective-compatible server does, apart from HTTP: validation in Google's error shapes,
the per-minute quota, injected faults, and scoring through a pluggable `Scorer`.
"""

from __future__ import annotations

import random
import threading
from dataclasses import dataclass, field
from typing import Any

from bsky_assets.lib.rate_limit import TokenBucket
from bsky_assets.lib.stats import Stats
from bsky_assets.perspective.attributes import ATTRIBUTE_COLUMNS, MAX_COMMENT_BYTES
from bsky_assets.perspective.discovery import discovery_document_for
from bsky_assets.perspective.scorers import Scorer, load_scorer

TOXICITY_LANGUAGES = (
    "ar", "cs", "de", "en", "es", "fr", "hi", "hi-Latn", "id", "it", "ja", "ko", "nl", "pl", "pt",
    "ru", "sv", "zh",
)  # fmt: skip
# Which request languages each attribute supports (Perspective's published table, abridged:
# the experimental bridging attributes are English-only). Configurable per server.
DEFAULT_LANGUAGE_SUPPORT: dict[str, tuple[str, ...]] = {
    attribute: TOXICITY_LANGUAGES
    if attribute
    in {"TOXICITY", "SEVERE_TOXICITY", "IDENTITY_ATTACK", "INSULT", "PROFANITY", "THREAT"}
    else ("en",)
    for attribute in ATTRIBUTE_COLUMNS
}


@dataclass
class ServerOptions:
    scorer: str = "synthetic"
    quota_per_minute: int | None = None  # parts per minute; beyond it parts get 429
    latency_ms: float = 0.0  # added to every HTTP request
    fault_429_share: float = 0.0  # share of parts answering 429 regardless of quota
    fault_5xx_share: float = 0.0  # share of parts answering 503
    drop_connection_share: float = 0.0  # share of HTTP requests whose connection is dropped
    require_key: bool = False  # answer 403 when no ?key= is given, as Google does
    api_keys: tuple[str, ...] = ()  # if given, other keys get Google's 400 API_KEY_INVALID
    language_support: dict[str, tuple[str, ...]] = field(
        default_factory=lambda: dict(DEFAULT_LANGUAGE_SUPPORT)
    )
    seed: int = 0


INVALID_KEY_MESSAGE = "API key not valid. Please pass a valid API key."
INVALID_KEY_DETAIL = {
    "@type": "type.googleapis.com/google.rpc.ErrorInfo",
    "reason": "API_KEY_INVALID",
    "domain": "googleapis.com",
}


class ApiError(Exception):
    def __init__(
        self, code: int, message: str, status: str, error_type: str | None = None, **details: Any
    ) -> None:
        super().__init__(message)
        self.code = code
        self.body: dict[str, Any] = {"code": code, "message": message, "status": status}
        if error_type:
            detail = {
                "@type": "type.googleapis.com/google.commentanalyzer.v1alpha1.Error",
                "errorType": error_type,
                **details,
            }
            self.body["details"] = [detail]

    def payload(self) -> dict[str, Any]:
        return {"error": self.body}


# one request's outcome: an error, or the prepared request and the scorer's scores
Scored = ApiError | tuple[dict[str, Any], dict[str, float]]


class PerspectiveService:
    """Protocol-independent behaviour: validation, quota, faults, scoring."""

    def __init__(self, options: ServerOptions) -> None:
        self.options = options
        self.scorer: Scorer = load_scorer(options.scorer)
        self.stats = Stats()
        self._random = random.Random(options.seed)
        self._random_lock = threading.Lock()
        quota = options.quota_per_minute
        # A per-minute quota enforced continuously: refilled at quota/60 per second, holding at
        # most one second's worth, so bursts cannot borrow from the rest of the minute.
        self._quota = TokenBucket(quota / 60, capacity=max(quota / 60, 1)) if quota else None

    def chance(self, share: float) -> bool:
        if share <= 0:
            return False
        with self._random_lock:
            return self._random.random() < share

    def _take_quota(self) -> bool:
        return self._quota is None or self._quota.try_acquire(1) is None

    def discovery_document(self, root_url: str) -> dict[str, Any]:
        document = discovery_document_for(root_url)
        document["revision"] = f"{self.scorer.name}-{self.scorer.version}"
        document["x-bskyLabeler"] = {
            "labeler": self.scorer.labeler,
            "scorer": self.scorer.name,
            "version": self.scorer.version,
            "synthetic": self.scorer.synthetic,
            "supportedAttributes": sorted(self.scorer.supported_attributes),
        }
        return document

    def analyze_many(
        self, requests: list[tuple[dict | None, str | None]]
    ) -> list[tuple[int, dict]]:
        """Answer several AnalyzeComment requests (the parts of a batch) with one scorer call."""
        return [
            (outcome.code, outcome.payload())
            if isinstance(outcome, ApiError)
            else (200, self._response(*outcome))
            for outcome in self.score_many(requests)
        ]

    def score_many(self, requests: list[tuple[dict | None, str | None]]) -> list[Scored]:
        """Validate and score several AnalyzeComment requests with one scorer call: each an
        `ApiError`, or the prepared request and its scores. `analyze_many` shapes these as the
        API's responses; the in-process transport reads the scores without building them."""
        prepared: list[Any] = []
        for body, key in requests:
            try:
                prepared.append(self._prepare(body, key))
            except ApiError as error:
                prepared.append(error)
        to_score = [p for p in prepared if not isinstance(p, ApiError)]
        scores = iter(self.scorer.score([p["text"] for p in to_score]))
        outcomes: list[Scored] = [
            item if isinstance(item, ApiError) else (item, next(scores)) for item in prepared
        ]
        for outcome in outcomes:
            code = outcome.code if isinstance(outcome, ApiError) else 200
            self.stats.add(**{f"status_{code}": 1})
        return outcomes

    def _prepare(self, body: dict | None, key: str | None) -> dict[str, Any]:
        self.stats.add(parts=1)
        if self.options.require_key and not key:
            raise ApiError(
                403,
                "The request is missing a valid API key.",
                "PERMISSION_DENIED",
            )
        if key and self.options.api_keys and key not in self.options.api_keys:
            error = ApiError(400, INVALID_KEY_MESSAGE, "INVALID_ARGUMENT")
            error.body["details"] = [INVALID_KEY_DETAIL]
            raise error
        if self.chance(self.options.fault_429_share):
            self.stats.add(injected_429=1)
            raise _quota_error()
        if self.chance(self.options.fault_5xx_share):
            self.stats.add(injected_5xx=1)
            raise ApiError(503, "The service is currently unavailable.", "UNAVAILABLE")
        if not self._take_quota():
            self.stats.add(quota_429=1)
            raise _quota_error()
        if not isinstance(body, dict):
            raise ApiError(400, "Invalid JSON payload received.", "INVALID_ARGUMENT")
        text = (body.get("comment") or {}).get("text")
        if not isinstance(text, str) or not text:
            raise ApiError(400, "Comment must be non-empty.", "INVALID_ARGUMENT", "COMMENT_EMPTY")
        if len(text.encode("utf-8")) > MAX_COMMENT_BYTES:
            raise ApiError(
                400,
                f"Comment text too long: {MAX_COMMENT_BYTES} bytes maximum.",
                "INVALID_ARGUMENT",
                "COMMENT_TOO_LONG",
            )
        requested = body.get("requestedAttributes") or {}
        if not isinstance(requested, dict) or not requested:
            raise ApiError(
                400, "No requested attributes.", "INVALID_ARGUMENT", "NO_REQUESTED_ATTRIBUTE"
            )
        unknown = [a for a in requested if a not in self.options.language_support]
        if unknown:
            raise ApiError(
                400, f"Unknown attribute: {unknown[0]}", "INVALID_ARGUMENT", "UNKNOWN_ATTRIBUTE"
            )
        languages = body.get("languages") or ["en"]  # no detector: undetected text counts as en
        drop = bool(body.get("dropUnsupportedAttributes"))
        attributes = []
        for attribute in requested:
            supported = self.options.language_support[attribute]
            unsupported_language = [lang for lang in languages if lang not in supported]
            if unsupported_language:
                if drop:
                    continue
                raise ApiError(
                    400,
                    f"Attribute {attribute} does not support request languages: "
                    f"{','.join(unsupported_language)}",
                    "INVALID_ARGUMENT",
                    "LANGUAGE_NOT_SUPPORTED_BY_ATTRIBUTE",
                    languageNotSupportedByAttributeError={
                        "detectedLanguages": languages,
                        "attribute": attribute,
                    },
                )
            if attribute not in self.scorer.supported_attributes:
                if drop:
                    continue
                raise ApiError(
                    400,
                    f"Attribute {attribute} is not scored by {self.scorer.name}; set "
                    "dropUnsupportedAttributes to receive the attributes it does score.",
                    "INVALID_ARGUMENT",
                    "ATTRIBUTE_NOT_SUPPORTED_BY_SCORER",
                )
            attributes.append(attribute)
        return {
            "text": text,
            "attributes": attributes,
            "languages": languages,
            "clientToken": body.get("clientToken"),
        }

    def _response(self, prepared: dict[str, Any], scores: dict[str, float]) -> dict[str, Any]:
        end = len(prepared["text"].encode("utf-16-le")) // 2
        attribute_scores = {}
        for attribute in prepared["attributes"]:
            value = scores[attribute]
            score = {"value": value, "type": "PROBABILITY"}
            attribute_scores[attribute] = {
                "spanScores": [{"begin": 0, "end": end, "score": score}],
                "summaryScore": score,
            }
        response: dict[str, Any] = {
            "attributeScores": attribute_scores,
            "languages": prepared["languages"],
            "detectedLanguages": prepared["languages"],
        }
        if prepared["clientToken"] is not None:
            response["clientToken"] = prepared["clientToken"]
        return response


def _quota_error() -> ApiError:
    return ApiError(
        429,
        "Quota exceeded for quota metric 'Analysis requests (AnalyzeComment)' and limit "
        "'Analysis requests (AnalyzeComment) per minute' of service "
        "'commentanalyzer.googleapis.com'.",
        "RESOURCE_EXHAUSTED",
    )
