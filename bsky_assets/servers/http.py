"""What the project's two local API servers share: request counters, the limits that keep a
hostile client from holding them, and running a ThreadingHTTPServer in a background thread or
the foreground.

A client the server does not trust yet gets little: its request head must arrive within
`ConnectionLimits.request_head_seconds` (a watchdog closes connections that are idle or drip a
byte at a time), its body is never read before the handler has checked the key, a body over
`max_body_bytes` is answered 413 unread, and at most `max_connections` connections are served
at once (the rest wait in the listen queue, so the process never runs out of descriptors).
"""

from __future__ import annotations

import contextlib
import json
import resource
import signal
import socket
import threading
import time
from dataclasses import dataclass
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


@dataclass(frozen=True)
class ConnectionLimits:
    """How long and how much one client may take of a server."""

    request_head_seconds: float = 10.0  # a new connection's request line and headers
    keepalive_seconds: float = 300.0  # a served connection waiting for (and sending) its next head
    body_seconds: float = 120.0  # an accepted body, once the key was checked
    max_body_bytes: int = 32 * 1024 * 1024  # a batch of 100 of the longest comments is ~13 MB
    max_connections: int = 256  # and never more than the descriptors allow


class Deadlines:
    """Closes connections whose current read outlives its deadline.

    A socket timeout bounds each recv, not a whole request head: a client dripping one byte
    every few seconds would hold a connection for ever. One thread per server checks the armed
    deadlines and shuts the late sockets down, which ends the blocked read at once."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._due: dict[socket.socket, float] = {}
        self._stopped = threading.Event()
        threading.Thread(target=self._watch, daemon=True, name="http-deadlines").start()

    def arm(self, sock: socket.socket, seconds: float) -> None:
        with self._lock:
            self._due[sock] = time.monotonic() + seconds

    def disarm(self, sock: socket.socket) -> None:
        with self._lock:
            self._due.pop(sock, None)

    def stop(self) -> None:
        self._stopped.set()

    def _watch(self) -> None:
        while not self._stopped.wait(0.2):
            now = time.monotonic()
            with self._lock:
                late = [sock for sock, due in self._due.items() if due <= now]
                for sock in late:
                    del self._due[sock]
            for sock in late:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)


def _connection_slots(wanted: int) -> int:
    """At most `wanted` connections at once, leaving descriptors for everything else."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return wanted
    return max(1, min(wanted, (soft - 32) // 2))


class QuietServer(ThreadingHTTPServer):
    """A threading HTTP server holding the service its handlers call, within `limits`."""

    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128  # connections beyond max_connections wait here, not in a thread

    def __init__(
        self,
        address: tuple[str, int],
        handler: type[BaseHTTPRequestHandler],
        service: Any,
        verbose: bool,
        limits: ConnectionLimits | None = None,
    ) -> None:
        super().__init__(address, handler)
        self.service = service
        self.verbose = verbose
        self.limits = limits or ConnectionLimits()
        self.deadlines = Deadlines()
        self._slots = threading.BoundedSemaphore(_connection_slots(self.limits.max_connections))
        self._closing = threading.Event()

    def process_request(self, request: Any, client_address: Any) -> None:
        """Serve a connection once a slot is free (the accept loop waits; new connections queue
        in the kernel's listen queue until then)."""
        while not self._slots.acquire(timeout=0.5):
            if self._closing.is_set():
                self.shutdown_request(request)
                return
        try:
            super().process_request(request, client_address)
        except Exception:  # the thread did not start, so it will never release its slot
            self._slots.release()
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self.deadlines.disarm(request)
            self._slots.release()

    def shutdown(self) -> None:
        self._closing.set()
        super().shutdown()

    def server_close(self) -> None:
        self.deadlines.stop()
        super().server_close()

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
        """Serve in the foreground until SIGINT or SIGTERM, whatever dispositions the process
        inherited (a parent started in the background ignores SIGINT, and Dagster's in-process
        runs copy that onto SIGTERM, so a supervisor's `terminate()` went unheard).

        The signal asks for an orderly `shutdown()` rather than raising KeyboardInterrupt into
        whatever the accept loop was doing: raised inside `Thread.start()`, it once left a
        handler's slot released twice, and socketserver swallowed the error with the stop."""

        def stop(_signo: int, _frame: object) -> None:
            # shutdown() waits for this loop to end, so it cannot run on the loop's own thread
            threading.Thread(target=self._server.shutdown, daemon=True).start()

        stopping = (signal.SIGINT, signal.SIGTERM)
        inherited = {signo: signal.signal(signo, stop) for signo in stopping}
        try:
            self._server.serve_forever()
        finally:
            for signo, handler in inherited.items():
                signal.signal(signo, handler)
            self._server.server_close()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class GuardedHandler(BaseHTTPRequestHandler):
    """What both servers' handlers share: JSON answers, and reading a request only as far as
    the client is trusted (see the module docstring). Subclasses check the key, then call
    `read_body()`; a refusal before the body is read closes the connection."""

    protocol_version = "HTTP/1.1"  # keep-alive, as clients expect
    server: QuietServer

    def setup(self) -> None:
        super().setup()
        self._served = 0

    def log_message(self, format: str, *args: Any) -> None:  # quiet unless verbose
        if self.server.verbose:
            super().log_message(format, *args)

    def handle_one_request(self) -> None:
        limits = self.server.limits
        wait = limits.keepalive_seconds if self._served else limits.request_head_seconds
        self.server.deadlines.arm(self.connection, wait)
        try:
            super().handle_one_request()
        finally:
            self.server.deadlines.disarm(self.connection)
        self._served += 1

    def parse_request(self) -> bool:
        parsed = super().parse_request()  # the request line and headers are in
        self.server.deadlines.disarm(self.connection)
        return parsed

    def send_bytes(
        self, code: int, body: bytes, content_type: str, headers: dict[str, str] | None = None
    ) -> None:
        self.send_response(code)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(body)

    def send_json(self, code: int, payload: Any, headers: dict[str, str] | None = None) -> None:
        self.send_bytes(code, json.dumps(payload).encode(), self.json_type, headers)

    json_type = "application/json"

    def refuse(self, code: int, payload: Any, headers: dict[str, str] | None = None) -> None:
        """Answer without reading the body, and close: what is left of the request is never
        read (a short, bounded drain first, so the client still receives the answer)."""
        self.close_connection = True
        self.send_json(code, payload, headers)
        self.wfile.flush()
        with contextlib.suppress(OSError):
            self.connection.shutdown(socket.SHUT_WR)
            self.connection.settimeout(1.0)
            drained = 0
            while drained < 1024 * 1024 and (chunk := self.connection.recv(65536)):
                drained += len(chunk)

    def body_length(self) -> int | None:
        """The declared body length, or None when it is not a number (answered 400)."""
        declared = self.headers.get("Content-Length") or "0"
        if not declared.isdigit():
            return None
        return int(declared)

    def read_body(self, limit: int | None = None) -> bytes | None:
        """The body of a request the handler has authorised, or None when it was refused
        (413 over `limit`, 400 for a malformed length) and the connection is closing."""
        length = self.body_length()
        limit = self.server.limits.max_body_bytes if limit is None else limit
        if length is None:
            self.refuse(400, self.error_payload(400, "Malformed Content-Length."))
            return None
        if length > limit:
            message = f"Request body of {length:,} bytes exceeds the limit of {limit:,} bytes."
            self.refuse(413, self.error_payload(413, message))
            return None
        self.server.deadlines.arm(self.connection, self.server.limits.body_seconds)
        try:
            body = self.rfile.read(length)
        finally:
            self.server.deadlines.disarm(self.connection)
        if len(body) < length:  # the client went away, or was too slow
            self.close_connection = True
            return None
        return body

    def error_payload(self, code: int, message: str) -> Any:
        """The server's error shape (Google's or OpenAI's)."""
        return {"error": {"code": code, "message": message}}
