"""What the project's two local API servers share: request counters, and running a
ThreadingHTTPServer in a background thread or the foreground."""

from __future__ import annotations

import socket
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self


def free_port() -> int:
    """A TCP port free on loopback now (for servers started by the bench and the tests)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def port_is_free(port: int, host: str = "127.0.0.1") -> bool:
    """Whether a server could bind `port` on `host` now."""
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the servers bind
        try:
            sock.bind((host, port))
        except OSError:
            return False
        return True


class Stats:
    """Free-form request counters, readable over HTTP at /stats."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.counts: Counter[str] = Counter()
        self.started = time.monotonic()

    def add(self, **counts: int) -> None:
        with self._lock:
            self.counts.update(counts)

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return {**self.counts, "uptime_seconds": time.monotonic() - self.started}

    def reset(self) -> None:
        with self._lock:
            self.counts.clear()
            self.started = time.monotonic()


class QuietServer(ThreadingHTTPServer):
    """A threading HTTP server holding the service its handlers call."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(
        self,
        address: tuple[str, int],
        handler: type[BaseHTTPRequestHandler],
        service: Any,
        verbose: bool,
    ) -> None:
        super().__init__(address, handler)
        self.service = service
        self.verbose = verbose

    @property
    def address(self) -> str:
        host, port = self.server_address[:2]
        return f"{host}:{port}"


class BackgroundServer:
    """Run a QuietServer in a background thread (tests, demo) or in the foreground (CLI)."""

    def __init__(self, server: QuietServer) -> None:
        self._server = server

    @property
    def stats(self) -> dict[str, Any]:
        return self._server.service.stats.snapshot()

    def start(self) -> Self:
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def serve_forever(self) -> None:
        self._server.serve_forever()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
