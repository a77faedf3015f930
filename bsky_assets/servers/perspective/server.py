"""A Perspective-compatible HTTP server that google-api-python-client cannot tell from Google's.

It speaks the same wire protocol (discovery document, `comments:analyze`, and the multipart/mixed
`/batch` endpoint), returns Google's response and error shapes, and scores with a pluggable
`Scorer`. It is the test double, the offline demo's labeler, and the way research keeps running
after Google shuts the API down on 2026-12-31.

Built on the standard library's ThreadingHTTPServer on purpose: fault injection must be able to
drop a connection mid-request, which needs the raw socket an ASGI framework does not expose.
"""

from __future__ import annotations

import socket
import time
from typing import Any
from urllib.parse import parse_qs, urlsplit

from bsky_assets.perspective.service import (
    INVALID_KEY_DETAIL,
    INVALID_KEY_MESSAGE,
    ApiError,
    PerspectiveService,
    ServerOptions,
)
from bsky_assets.servers.http import (
    BackgroundServer,
    ConnectionLimits,
    GuardedHandler,
    QuietServer,
)
from bsky_assets.servers.perspective.protocol import (
    MalformedBatch,
    format_batch_response,
    json_or_none,
    parse_batch,
)

__all__ = ["PerspectiveServer", "ServerOptions"]


class _Handler(GuardedHandler):
    json_type = "application/json; charset=UTF-8"

    def error_payload(self, code: int, message: str) -> Any:
        status = "INVALID_ARGUMENT" if code < 500 else "INTERNAL"
        return ApiError(code, message, status).payload()

    # -- helpers ---------------------------------------------------------------------------------

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

    def _key(self) -> str | None:
        return self.headers.get("x-goog-api-key") or _api_key(urlsplit(self.path).query)

    def _refused(self, invalid_status: int = 403) -> bool:
        """Refuse, before any body is read, a request without a key this server accepts.

        A wrong key on comments:analyze gets Google's 400 API_KEY_INVALID; on a whole batch
        (or /stats) a 403, which clients take as a refusal of the credentials, not of a post."""
        options = self.server.service.options
        if not (options.require_key or options.api_keys):
            return False
        key = self._key()
        if not key:
            error = ApiError(403, "The request is missing a valid API key.", "PERMISSION_DENIED")
        elif options.api_keys and key not in options.api_keys:
            status = "INVALID_ARGUMENT" if invalid_status == 400 else "PERMISSION_DENIED"
            error = ApiError(invalid_status, INVALID_KEY_MESSAGE, status)
            error.body["details"] = [INVALID_KEY_DETAIL]
        else:
            return False
        self.server.service.stats.add(**{f"refused_{error.code}": 1})
        self.refuse(error.code, error.payload())
        return True

    # -- routes ----------------------------------------------------------------------------------

    def do_GET(self) -> None:
        url = urlsplit(self.path)
        service = self.server.service
        if url.path in ("/$discovery/rest", "/discovery/v1/apis/commentanalyzer/v1alpha1/rest"):
            root = f"http://{self.headers.get('Host') or self.server.address}/"
            self.send_json(200, service.discovery_document(root))
        elif url.path == "/stats":
            if not self._refused():
                self.send_json(200, service.stats.snapshot())
        elif url.path == "/healthz":
            self.send_json(200, {"ok": True, "labeler": service.scorer.labeler})
        else:
            self.send_json(404, ApiError(404, "Not found.", "NOT_FOUND").payload())

    def do_POST(self) -> None:
        url = urlsplit(self.path)
        service = self.server.service
        single = url.path == "/v1alpha1/comments:analyze"
        if self._refused(invalid_status=400 if single else 403):
            return
        body = self.read_body()
        if body is None:
            return
        if url.path == "/stats/reset":
            service.stats.reset()
            self.send_json(200, {"ok": True})
            return
        if not self._begin():
            return
        if single:
            service.stats.add(single_requests=1)
            code, payload = service.analyze_many([(json_or_none(body), self._key())])[0]
            self.send_json(code, payload)
        elif url.path.startswith("/batch"):
            service.stats.add(batch_requests=1)
            self._batch(body)
        else:
            self.send_json(404, ApiError(404, "Not found.", "NOT_FOUND").payload())

    def _batch(self, body: bytes) -> None:
        try:
            parts = parse_batch(self.headers.get("Content-Type", ""), body)
        except MalformedBatch as error:
            self.send_json(400, ApiError(400, str(error), "INVALID_ARGUMENT").payload())
            return
        outer_key = self.headers.get("x-goog-api-key")
        answers = self.server.service.analyze_many(
            [(p.json(), p.api_key or outer_key) for p in parts]
        )
        content, content_type = format_batch_response(parts, answers)
        self.send_bytes(200, content, content_type)


def _api_key(query: str) -> str | None:
    return (parse_qs(query).get("key") or [None])[0]


class PerspectiveServer(BackgroundServer):
    """The Perspective-compatible server, in a background thread or the foreground."""

    def __init__(
        self,
        options: ServerOptions | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        verbose: bool = False,
        limits: ConnectionLimits | None = None,
    ) -> None:
        self.service = PerspectiveService(options or ServerOptions())
        limits = limits or ConnectionLimits()
        super().__init__(QuietServer((host, port), _Handler, self.service, verbose, limits))

    @property
    def url(self) -> str:
        return f"http://{self._server.address}"
