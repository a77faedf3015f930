"""What both local API servers owe a hostile client, over real sockets: the key is checked
before a body is read, bodies are capped, idle and slow connections are closed, /stats needs
the key, and connections that never send a body cannot starve the server."""

import contextlib
import json
import os
import resource
import signal
import socket
import socketserver
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import pytest

from bsky_assets.servers.http import QuietServer, free_port

PERSPECTIVE_KEY = "perspective-server-key-0021"
LLM_KEY = "llm-server-key-0022"
HUGE = 250 * 1024 * 1024  # declared, never sent


def head(path: str, length: int, **headers: str) -> bytes:
    lines = [f"POST {path} HTTP/1.1", "Host: 127.0.0.1", f"Content-Length: {length}"]
    lines += [f"{name.replace('_', '-')}: {value}" for name, value in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def answer(sock: socket.socket, timeout: float = 10) -> tuple[int, bytes]:
    """The status and body the server sends back (read until it closes or the body is in)."""
    sock.settimeout(timeout)
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    status_line, _, rest = data.partition(b"\r\n")
    return int(status_line.split()[1]), rest


def closed_by_server(sock: socket.socket, within: float) -> bool:
    """Whether the server closes the connection within `within` seconds (what it still had to
    send is read on the way)."""
    deadline = time.monotonic() + within
    try:
        while (left := deadline - time.monotonic()) > 0:
            sock.settimeout(left)
            if sock.recv(65536) == b"":
                return True
    except TimeoutError:
        return False
    except ConnectionResetError:
        return True
    return False


def wait_until_serving(process: subprocess.Popen, port: int, seconds: float = 60) -> None:
    """Until the spawned server answers /healthz (any HTTP answer counts)."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1)
            return
        except urllib.error.HTTPError:
            return
        except OSError:
            assert process.poll() is None, "the server exited"
            assert time.monotonic() < deadline, "the server did not start"
            time.sleep(0.2)


def servers(serve):
    """(server, path to POST to, headers carrying the right key, status for a missing key)"""
    perspective = serve.perspective(require_key=True, api_keys=(PERSPECTIVE_KEY,))
    llm = serve.llm(api_keys=(LLM_KEY,))
    return [
        (perspective, "/batch", {"x_goog_api_key": PERSPECTIVE_KEY}, 403),
        (perspective, "/v1alpha1/comments:analyze", {"x_goog_api_key": PERSPECTIVE_KEY}, 403),
        (llm, "/v1/chat/completions", {"Authorization": f"Bearer {LLM_KEY}"}, 401),
        (llm, "/v1/files", {"Authorization": f"Bearer {LLM_KEY}"}, 401),
    ]


def address(server) -> tuple[str, int]:
    host, port = server.url.removeprefix("http://").split("/")[0].split(":")
    return host, int(port)


def test_the_key_is_checked_before_a_body_is_read(serve) -> None:
    """A request without the key declaring a 250 MB body is refused at once, its body unread."""
    for server, path, _, refused in servers(serve):
        with socket.create_connection(address(server)) as sock:
            sock.sendall(head(path, HUGE, Content_Type="application/json"))
            status, _ = answer(sock, timeout=5)
            assert status == refused, path
            assert closed_by_server(sock, within=5), path


def test_bodies_over_the_cap_are_refused_with_413(serve) -> None:
    for server, path, keyed, _ in servers(serve):
        with socket.create_connection(address(server)) as sock:
            sock.sendall(head(path, HUGE, Content_Type="application/json", **keyed))
            status, _ = answer(sock, timeout=5)
            assert status == 413, path
            assert closed_by_server(sock, within=5), path


def test_stats_need_the_key(serve) -> None:
    perspective = serve.perspective(require_key=True, api_keys=(PERSPECTIVE_KEY,))
    llm = serve.llm(api_keys=(LLM_KEY,))
    for url, keyed in [
        (perspective.url + "/stats", {"x-goog-api-key": PERSPECTIVE_KEY}),
        (llm.url.removesuffix("/v1") + "/stats", {"Authorization": f"Bearer {LLM_KEY}"}),
    ]:
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(url, timeout=5)
        assert refused.value.code in (401, 403)
        request = urllib.request.Request(url, headers=keyed)
        with urllib.request.urlopen(request, timeout=5) as response:
            assert "uptime_seconds" in json.load(response)


@pytest.mark.slow
def test_idle_and_slow_connections_are_closed(serve) -> None:
    """A connection that sends nothing, and one that drips its request head a byte at a time,
    are closed by the server (default limits: a request head within 10 s)."""
    for server, path, _, _ in servers(serve)[::2]:
        idle = socket.create_connection(address(server))
        slow = socket.create_connection(address(server))
        dripped = head(path, 10)
        started = time.monotonic()
        closed = False
        with idle, slow:
            for byte in dripped * 100:  # far more than the head: the server must stop it
                if time.monotonic() - started > 20:
                    break
                try:
                    slow.send(bytes([byte]))
                except OSError:
                    closed = True
                    break
                time.sleep(0.25)
            closed = closed or closed_by_server(slow, within=1)
            assert closed, f"{path}: a slow head was read for 20 s"
            assert closed_by_server(idle, within=1), f"{path}: an idle connection stayed open"


@pytest.mark.slow
def test_header_only_connections_cannot_starve_a_keyed_request(tmp_path) -> None:
    """A real `serve perspective` process with 64 file descriptors: 120 connections that send a
    head declaring a body and then nothing used to hold a descriptor each, for ever, until the
    server could accept nobody. Refused before their bodies, they free their slots at once."""
    port = free_port()

    def few_descriptors() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (64, 64))

    env = {**os.environ, "BSKY_SERVER_API_KEY": PERSPECTIVE_KEY}
    command = [sys.executable, "-m", "bsky_assets.cli", "serve", "perspective",
               "--scorer", "synthetic", "--port", str(port)]  # fmt: skip
    process = subprocess.Popen(
        command,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        preexec_fn=few_descriptors,
    )
    attackers: list[socket.socket] = []
    try:
        wait_until_serving(process, port)
        for _ in range(120):
            with contextlib.suppress(OSError):
                sock = socket.create_connection(("127.0.0.1", port), timeout=2)
                sock.sendall(head("/batch", HUGE, Content_Type="multipart/mixed; boundary=b"))
                attackers.append(sock)
        body = json.dumps(
            {"comment": {"text": "a friendly comment"}, "requestedAttributes": {"TOXICITY": {}}}
        ).encode()
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/v1alpha1/comments:analyze",
            body,
            {"Content-Type": "application/json", "x-goog-api-key": PERSPECTIVE_KEY},
            method="POST",
        )
        with urllib.request.urlopen(request, timeout=30) as response:
            assert "TOXICITY" in json.load(response)["attributeScores"]
        assert process.poll() is None
    finally:
        for sock in attackers:
            sock.close()
        process.terminate()
        process.wait(timeout=10)


@pytest.mark.parametrize("stop", ["TERM", "INT"])
@pytest.mark.parametrize("kind", ["perspective", "openai"])
def test_a_server_stops_on_a_signal_it_inherited_ignored_even_mid_accept(kind, stop) -> None:
    """A test suite or bench started in the background ignores SIGINT; Dagster's in-process runs
    copy that SIG_IGN onto SIGTERM, and every server spawned after it ignored `terminate()`.
    A client keeps connecting meanwhile, so the signal lands while connections are accepted."""
    port = free_port()
    serve = f"exec {sys.executable} -m bsky_assets.cli serve {kind} --port {port}"
    process = subprocess.Popen(  # the shell's `trap ''` is inherited by exec as SIG_IGN
        ["/bin/sh", "-c", f"trap '' TERM INT; {serve}"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    connecting = threading.Event()
    done = threading.Event()

    def keep_connecting() -> None:
        while not done.is_set():
            with contextlib.suppress(OSError):
                urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1).close()
            connecting.set()

    client = threading.Thread(target=keep_connecting, daemon=True)
    try:
        wait_until_serving(process, port)
        status = Path(f"/proc/{process.pid}/status").read_text().splitlines()
        ignored = int(next(line for line in status if line.startswith("SigIgn")).split()[1], 16)
        assert ignored & (1 << (signal.SIGTERM - 1)) == 0  # the server took both back
        assert ignored & (1 << (signal.SIGINT - 1)) == 0
        client.start()
        assert connecting.wait(10)
        process.send_signal(getattr(signal, f"SIG{stop}"))
        assert process.wait(timeout=10) == 0  # an orderly shutdown, not a traceback
    finally:
        done.set()
        if process.poll() is None:
            process.kill()
            process.wait()


def test_an_interrupt_while_a_handler_thread_starts_is_not_swallowed(monkeypatch) -> None:
    """KeyboardInterrupt raised inside `Thread.start()` (the thread already running) once made
    the accept loop release that connection's slot twice; socketserver swallowed the
    ValueError, and with it the interrupt, so the server went on serving."""

    class NoContent(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(204)
            self.end_headers()

        def log_message(self, format: str, *args: object) -> None:
            pass

    started = socketserver.ThreadingMixIn.process_request

    def interrupted_once_served(self, request, client_address) -> None:
        started(self, request, client_address)
        deadline = time.monotonic() + 10
        while self._slots._value != slots:  # the handler has answered and given its slot back
            assert time.monotonic() < deadline, "the connection's slot was never released"
            time.sleep(0.01)
        raise KeyboardInterrupt  # as a signal landing in Thread.start()'s wait, at the latest

    server = QuietServer(("127.0.0.1", 0), NoContent, service=None, verbose=False)
    slots = server._slots._value
    try:
        monkeypatch.setattr(socketserver.ThreadingMixIn, "process_request", interrupted_once_served)
        with socket.create_connection(server.server_address[:2], timeout=10) as sock:
            sock.sendall(b"GET /x HTTP/1.0\r\n\r\n")
            with pytest.raises(KeyboardInterrupt):
                server._handle_request_noblock()
            assert answer(sock)[0] == 204
        assert server._slots._value == slots
    finally:
        server.server_close()
