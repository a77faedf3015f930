"""OpenAI-compatible servers started per test, on loopback."""

from collections.abc import Callable, Iterator

import pytest

from bsky_assets.llm.server import LLMServer, LLMServerOptions


@pytest.fixture
def llm_server() -> Iterator[Callable[..., LLMServer]]:
    started: list[LLMServer] = []

    def start(**options) -> LLMServer:
        server = LLMServer(LLMServerOptions(**options)).start()
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()
