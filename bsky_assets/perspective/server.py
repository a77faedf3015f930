"""A Perspective-compatible HTTP server that google-api-python-client cannot tell from Google's.

It speaks the same wire protocol (discovery document, `comments:analyze`, and the multipart/mixed
`/batch` endpoint), returns Google's response and error shapes, and scores with a pluggable
`Scorer`. It is the test double, the offline demo's labeler, and the way research keeps running
after Google shuts the API down on 2026-12-31.

Built on the standard library's ThreadingHTTPServer on purpose: fault injection must be able to
drop a connection mid-request, which needs the raw socket an ASGI framework does not expose.
"""

from __future__ import annotations

import copy
import email.parser
import json
import random
import socket
import threading
import time
import uuid
from dataclasses import dataclass, field
from functools import cache
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler
from importlib.resources import files
from typing import Any
from urllib.parse import parse_qs, urlsplit

from bsky_assets.http_service import BackgroundServer, QuietServer, Stats
from bsky_assets.perspective.attributes import ATTRIBUTE_COLUMNS
from bsky_assets.perspective.scorers import Scorer, load_scorer
from bsky_assets.rate_limit import TokenBucket

MAX_COMMENT_BYTES = 20_480
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


@cache
def bundled_discovery_document() -> dict[str, Any]:
    """The faithful copy of Google's commentanalyzer v1alpha1 discovery document."""
    path = files("bsky_assets.perspective").joinpath("commentanalyzer.v1alpha1.json")
    return json.loads(path.read_text(encoding="utf-8"))


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
        document = copy.deepcopy(bundled_discovery_document())
        document["rootUrl"] = root_url
        document["baseUrl"] = root_url
        document.pop("mtlsRootUrl", None)
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
        prepared: list[Any] = []
        for body, key in requests:
            try:
                prepared.append(self._prepare(body, key))
            except ApiError as error:
                prepared.append(error)
        to_score = [p for p in prepared if not isinstance(p, ApiError)]
        scores = iter(self.scorer.score([p["text"] for p in to_score]))
        answers: list[tuple[int, dict]] = []
        for item in prepared:
            if isinstance(item, ApiError):
                answers.append((item.code, item.payload()))
            else:
                answers.append((200, self._response(item, next(scores))))
        for code, _ in answers:
            self.stats.add(**{f"status_{code}": 1})
        return answers

    def _prepare(self, body: dict | None, key: str | None) -> dict[str, Any]:
        self.stats.add(parts=1)
        if self.options.require_key and not key:
            raise ApiError(
                403,
                "The request is missing a valid API key.",
                "PERMISSION_DENIED",
            )
        if key and self.options.api_keys and key not in self.options.api_keys:
            error = ApiError(
                400, "API key not valid. Please pass a valid API key.", "INVALID_ARGUMENT"
            )
            error.body["details"] = [
                {
                    "@type": "type.googleapis.com/google.rpc.ErrorInfo",
                    "reason": "API_KEY_INVALID",
                    "domain": "googleapis.com",
                }
            ]
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


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as clients expect
    server: QuietServer

    def log_message(self, format: str, *args: Any) -> None:  # quiet unless verbose
        if self.server.verbose:
            super().log_message(format, *args)

    # -- helpers ---------------------------------------------------------------------------------

    def _send(self, code: int, body: bytes, content_type: str) -> None:
        self.send_response(code)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _send_json(self, code: int, payload: Any) -> None:
        self._send(code, json.dumps(payload).encode(), "application/json; charset=UTF-8")

    def _body(self) -> bytes:
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def _begin(self) -> bool:
        """Apply latency and connection drops; False when the connection was dropped."""
        service = self.server.service
        service.stats.add(http_requests=1)
        if service.options.latency_ms:
            time.sleep(service.options.latency_ms / 1000)
        if service.chance(service.options.drop_connection_share):
            service.stats.add(dropped_connections=1)
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_RDWR)
            return False
        return True

    # -- routes ----------------------------------------------------------------------------------

    def do_GET(self) -> None:
        url = urlsplit(self.path)
        service = self.server.service
        if url.path in ("/$discovery/rest", "/discovery/v1/apis/commentanalyzer/v1alpha1/rest"):
            root = f"http://{self.headers.get('Host') or self.server.address}/"
            self._send_json(200, service.discovery_document(root))
        elif url.path == "/stats":
            self._send_json(200, service.stats.snapshot())
        elif url.path == "/healthz":
            self._send_json(200, {"ok": True, "labeler": service.scorer.labeler})
        else:
            self._send_json(404, ApiError(404, "Not found.", "NOT_FOUND").payload())

    def do_POST(self) -> None:
        url = urlsplit(self.path)
        service = self.server.service
        body = self._body()
        if url.path == "/stats/reset":
            service.stats.reset()
            self._send_json(200, {"ok": True})
            return
        if not self._begin():
            return
        if url.path == "/v1alpha1/comments:analyze":
            service.stats.add(single_requests=1)
            code, payload = service.analyze_many([(_json_or_none(body), _key(url.query))])[0]
            self._send_json(code, payload)
        elif url.path.startswith("/batch"):
            service.stats.add(batch_requests=1)
            self._batch(body)
        else:
            self._send_json(404, ApiError(404, "Not found.", "NOT_FOUND").payload())

    def _batch(self, body: bytes) -> None:
        content_type = self.headers.get("Content-Type", "")
        # compat32, as googleapiclient itself parses batches: the HTTP policy's header registry
        # costs several times more, and Content-IDs are unfolded below anyway.
        message = email.parser.BytesParser().parsebytes(
            b"Content-Type: " + content_type.encode() + b"\r\n\r\n" + body
        )
        if not message.is_multipart():
            self._send_json(
                400,
                ApiError(400, "Batch body must be multipart/mixed.", "INVALID_ARGUMENT").payload(),
            )
            return
        parts = []
        for part in message.get_payload():
            content_id = str(part.get("Content-ID", "")).replace("\r\n", "").replace("\n", "")
            inner = part.get_payload(decode=True) or b""
            head, _, inner_body = inner.partition(b"\r\n\r\n")
            if not _:
                head, _, inner_body = inner.partition(b"\n\n")
            request_line = head.split(b"\n", 1)[0].decode("latin-1").strip()
            _method, target, *_ = request_line.split(" ")
            parts.append((content_id, urlsplit(target), inner_body))
        answers = self.server.service.analyze_many(
            [(_json_or_none(b), _key(target.query)) for _, target, b in parts]
        )
        boundary = f"batch_{uuid.uuid4().hex}"
        chunks = []
        for (content_id, _, _), (code, payload) in zip(parts, answers, strict=True):
            inner_json = json.dumps(payload)
            response_id = "<response-" + content_id.strip().lstrip("<").rstrip(">") + ">"
            chunks.append(
                f"--{boundary}\r\n"
                "Content-Type: application/http\r\n"
                f"Content-ID: {response_id}\r\n\r\n"
                f"HTTP/1.1 {code} {HTTPStatus(code).phrase}\r\n"
                "Content-Type: application/json; charset=UTF-8\r\n"
                f"Content-Length: {len(inner_json.encode())}\r\n\r\n"
                f"{inner_json}\r\n"
            )
        chunks.append(f"--{boundary}--\r\n")
        self._send(200, "".join(chunks).encode(), f"multipart/mixed; boundary={boundary}")


def _json_or_none(body: bytes) -> Any:
    try:
        return json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError):
        return None


def _key(query: str) -> str | None:
    return (parse_qs(query).get("key") or [None])[0]


class PerspectiveServer(BackgroundServer):
    """The Perspective-compatible server, in a background thread or the foreground."""

    def __init__(
        self,
        options: ServerOptions | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        verbose: bool = False,
    ) -> None:
        self.service = PerspectiveService(options or ServerOptions())
        super().__init__(QuietServer((host, port), _Handler, self.service, verbose))

    @property
    def url(self) -> str:
        return f"http://{self._server.address}"
