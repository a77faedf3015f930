"""Perspective-compatible servers started per test, on loopback."""

from collections.abc import Callable, Iterator

import pytest

from bsky_assets.perspective.server import PerspectiveServer, ServerOptions


@pytest.fixture
def perspective_server() -> Iterator[Callable[..., PerspectiveServer]]:
    started: list[PerspectiveServer] = []

    def start(**options) -> PerspectiveServer:
        server = PerspectiveServer(ServerOptions(**options)).start()
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()
