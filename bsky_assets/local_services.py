"""Use the real labelling services when they are configured, local servers otherwise.

A service counts as configured when its key or its URL is set in the environment
(PERSPECTIVE_API_KEY / PERSPECTIVE_URL, OPENAI_API_KEY / OPENAI_BASE_URL). Otherwise the project's
own servers start in this process (the offline trained scorer for Perspective, the keyword
heuristic for the LLM), and the environment is pointed at them so every Dagster process started
from here (runs, `dagster dev`) labels through them too.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass, field

from bsky_assets.llm.server import LLMServer
from bsky_assets.perspective.server import PerspectiveServer, ServerOptions


@dataclass
class Services:
    perspective: str  # human-readable: which labeler, and where
    llm: str
    environment: dict[str, str] = field(default_factory=dict)


@contextlib.contextmanager
def labelling_services(
    perspective_port: int = 0, llm_port: int = 0, scorer: str = "profanity-check"
) -> Iterator[Services]:
    with contextlib.ExitStack() as stack:
        environment: dict[str, str] = {}
        if os.environ.get("PERSPECTIVE_API_KEY") or os.environ.get("PERSPECTIVE_URL"):
            perspective = f"configured: {os.environ.get('PERSPECTIVE_URL') or 'Google'}"
        else:
            server = stack.enter_context(
                PerspectiveServer(ServerOptions(scorer=scorer), port=perspective_port)
            )
            environment["PERSPECTIVE_URL"] = server.url
            environment.setdefault("PERSPECTIVE_REQUESTS_PER_SECOND", "500")
            scorer_info = server.service.scorer
            perspective = (
                f"local server {server.url}, scorer {scorer_info.name} {scorer_info.version} "
                "(not Google's Perspective)"
            )
        if os.environ.get("OPENAI_API_KEY") or os.environ.get("OPENAI_BASE_URL"):
            llm = f"configured: {os.environ.get('OPENAI_BASE_URL') or 'OpenAI'}"
        else:
            llm_server = stack.enter_context(LLMServer(port=llm_port))
            environment["OPENAI_BASE_URL"] = llm_server.url
            environment.setdefault("BSKY_LLM_REQUESTS_PER_MINUTE", "60000")  # no provider limits
            environment.setdefault("BSKY_LLM_TOKENS_PER_MINUTE", "100000000")
            llm = f"local server {llm_server.url}, keyword heuristic (not an LLM)"
        environment = {k: v for k, v in environment.items() if k not in os.environ}
        previous = {k: os.environ.get(k) for k in environment}
        os.environ.update(environment)
        try:
            yield Services(perspective, llm, environment)
        finally:
            for key, value in previous.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value
