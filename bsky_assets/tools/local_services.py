"""Use the real labelling services when they are configured, local servers otherwise.

A service counts as configured when its key or its URL is set in the environment
(PERSPECTIVE_API_KEY / PERSPECTIVE_URL, OPENAI_API_KEY / OPENAI_BASE_URL). Otherwise the project's
own servers start in this process (the offline scorer for Perspective, the keyword heuristic for
the LLM), and the environment is pointed at them so every Dagster process started from here
(runs, `dagster dev`) labels through them too. The environment is restored on exit.
"""

from __future__ import annotations

import contextlib
import secrets
from collections.abc import Iterator
from dataclasses import dataclass, field

from bsky_assets import settings
from bsky_assets.lib.secrets import redact_url
from bsky_assets.servers.llm.server import LLMServer, LLMServerOptions
from bsky_assets.servers.perspective.server import PerspectiveServer, ServerOptions

FALLBACK_SCORER = "profanity-check"


def default_scorer() -> str:
    """The newest distilled successor when one exists (all attributes it learned, on
    Perspective's scale), else alt-profanity-check (PROFANITY only: 1 of 22 attributes)."""
    from bsky_assets.successor.registry import latest_model_exists

    return "distilled:latest" if latest_model_exists() else FALLBACK_SCORER


@dataclass
class Services:
    perspective: str  # human-readable: which labeler, and where
    llm: str
    environment: dict[str, str] = field(default_factory=dict)


@contextlib.contextmanager
def labelling_services(
    perspective_port: int = 0, llm_port: int = 0, scorer: str | None = None
) -> Iterator[Services]:
    with contextlib.ExitStack() as stack:
        environment: dict[str, str] = {}
        if settings.perspective_configured():
            perspective = f"configured: {redact_url(settings.perspective_url())}"
        else:
            key = secrets.token_urlsafe(24)  # only this project's runs may use the server
            options = ServerOptions(
                scorer=scorer or default_scorer(), require_key=True, api_keys=(key,)
            )
            server = stack.enter_context(PerspectiveServer(options, port=perspective_port))
            environment["PERSPECTIVE_URL"] = server.url
            environment[settings.PERSPECTIVE_SERVER_API_KEY] = key
            environment["PERSPECTIVE_REQUESTS_PER_SECOND"] = "500"
            scorer_info = server.service.scorer
            environment["BSKY_PERSPECTIVE_LABELER"] = (
                f"the project's local server, scorer {scorer_info.name} {scorer_info.version} "
                f"(not Google's Perspective; {scorer_info.coverage})"
            )
            perspective = (
                f"local server {server.url}, scorer {scorer_info.name} {scorer_info.version} "
                "(not Google's Perspective)"
            )
        if settings.llm_configured():
            llm = f"configured: {redact_url(settings.openai_base_url())}"
        else:
            key = secrets.token_urlsafe(24)
            llm_server = stack.enter_context(
                LLMServer(LLMServerOptions(api_keys=(key,)), port=llm_port)
            )
            environment["OPENAI_BASE_URL"] = llm_server.url
            environment[settings.OPENAI_API_KEY] = key
            environment["BSKY_LLM_REQUESTS_PER_MINUTE"] = "60000"  # no provider limits
            environment["BSKY_LLM_TOKENS_PER_MINUTE"] = "100000000"
            llm = f"local server {llm_server.url}, keyword heuristic (not an LLM)"
        previous = settings.overlay(environment)
        try:
            yield Services(perspective, llm, {k: environment[k] for k in previous})
        finally:
            settings.restore(previous)
