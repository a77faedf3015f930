"""The demo's and `dev`'s local servers: used only when nothing is configured, and the
environment is exactly as it was afterwards."""

import os

from bsky_assets.tools.local_services import labelling_services

VARIABLES = (
    "PERSPECTIVE_URL", "PERSPECTIVE_REQUESTS_PER_SECOND", "OPENAI_BASE_URL",
    "BSKY_LLM_REQUESTS_PER_MINUTE", "BSKY_LLM_TOKENS_PER_MINUTE",
)  # fmt: skip


def test_local_servers_start_and_the_environment_is_restored(monkeypatch) -> None:
    for name in (*VARIABLES, "PERSPECTIVE_API_KEY", "OPENAI_API_KEY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("BSKY_LLM_REQUESTS_PER_MINUTE", "123")  # the user's own setting wins
    before = dict(os.environ)
    with labelling_services(scorer="synthetic") as services:
        assert os.environ["PERSPECTIVE_URL"].startswith("http://127.0.0.1:")
        assert os.environ["OPENAI_BASE_URL"].endswith("/v1")
        assert os.environ["BSKY_LLM_REQUESTS_PER_MINUTE"] == "123"
        assert "not Google's Perspective" in services.perspective
        assert "BSKY_LLM_REQUESTS_PER_MINUTE" not in services.environment
    assert dict(os.environ) == before


def test_a_configured_service_is_used_as_it_is(monkeypatch) -> None:
    monkeypatch.setenv("PERSPECTIVE_URL", "http://127.0.0.1:9")
    monkeypatch.setenv("OPENAI_BASE_URL", "http://127.0.0.1:9/v1")
    before = dict(os.environ)
    with labelling_services() as services:
        assert services.perspective == "configured: http://127.0.0.1:9"
        assert services.llm == "configured: http://127.0.0.1:9/v1"
        assert services.environment == {}
        assert dict(os.environ) == before
