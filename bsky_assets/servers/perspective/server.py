"""A Perspective-compatible HTTP server that google-api-python-client cannot tell from Google's.

It speaks the same wire protocol (discovery document, `comments:analyze`, and the multipart/mixed
`/batch` endpoint), returns Google's response and error shapes, and scores with a pluggable
`Scorer`. It is the test double, the offline demo's labeler, and the way research keeps running
after Google shuts the API down on 2026-12-31.

Built on the standard library's ThreadingHTTPServer on purpose: fault injection must be able to
drop a connection mid-request, which needs the raw socket an ASGI framework does not expose.
"""

from __future__ import annotations

import json
import socket
import time
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import parse_qs, urlsplit

from bsky_assets.servers.http import BackgroundServer, QuietServer
from bsky_assets.servers.perspective.protocol import (
    MalformedBatch,
    format_batch_response,
    json_or_none,
    parse_batch,
)
from bsky_assets.servers.perspective.service import ApiError, PerspectiveService, ServerOptions

__all__ = ["PerspectiveServer", "ServerOptions"]


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
            key = self.headers.get("x-goog-api-key") or _api_key(url.query)
            if service.options.api_keys and key not in service.options.api_keys:
                self._send_json(403, ApiError(403, "Forbidden.", "PERMISSION_DENIED").payload())
                return
            service.stats.reset()
            self._send_json(200, {"ok": True})
            return
        if not self._begin():
            return
        if url.path == "/v1alpha1/comments:analyze":
            service.stats.add(single_requests=1)
            key = self.headers.get("x-goog-api-key") or _api_key(url.query)
            code, payload = service.analyze_many([(json_or_none(body), key)])[0]
            self._send_json(code, payload)
        elif url.path.startswith("/batch"):
            service.stats.add(batch_requests=1)
            self._batch(body)
        else:
            self._send_json(404, ApiError(404, "Not found.", "NOT_FOUND").payload())

    def _batch(self, body: bytes) -> None:
        try:
            parts = parse_batch(self.headers.get("Content-Type", ""), body)
        except MalformedBatch as error:
            self._send_json(400, ApiError(400, str(error), "INVALID_ARGUMENT").payload())
            return
        outer_key = self.headers.get("x-goog-api-key")
        answers = self.server.service.analyze_many(
            [(p.json(), p.api_key or outer_key) for p in parts]
        )
        content, content_type = format_batch_response(parts, answers)
        self._send(200, content, content_type)


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
    ) -> None:
        self.service = PerspectiveService(options or ServerOptions())
        super().__init__(QuietServer((host, port), _Handler, self.service, verbose))

    @property
    def url(self) -> str:
        return f"http://{self._server.address}"
