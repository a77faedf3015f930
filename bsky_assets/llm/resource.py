"""The LLM resource: OpenAI, or any OpenAI-compatible server (vLLM, Ollama, llama.cpp)."""

from __future__ import annotations

import dagster as dg
from pydantic import Field

from bsky_assets import settings
from bsky_assets.llm.client import LLMSettings, LLMTaskClient, LLMTuning
from bsky_assets.llm.task import LLMTask


class LLMResource(dg.ConfigurableResource, LLMTuning):
    """LLM labels via the official openai client, for every LLM task (see llm/client.py).

    Run config tunes pacing and the prompt's shape. The server, the key and the model are read
    from the environment when the run builds its client (OPENAI_BASE_URL, OPENAI_API_KEY,
    BSKY_LLM_MODEL), never from config: a run cannot send the key elsewhere or print it as a
    model name, and partial run config cannot drop it.
    """

    requests_per_minute: float | None = Field(  # type: ignore[assignment]
        default=None, gt=0, description="Unset: BSKY_LLM_REQUESTS_PER_MINUTE, else 500."
    )
    tokens_per_minute: float | None = Field(  # type: ignore[assignment]
        default=None, gt=0, description="Unset: BSKY_LLM_TOKENS_PER_MINUTE, else 200,000."
    )

    def client_settings(self) -> LLMSettings:
        values = {name: getattr(self, name) for name in LLMTuning.model_fields}
        values["requests_per_minute"] = (
            self.requests_per_minute or settings.llm_requests_per_minute()
        )
        values["tokens_per_minute"] = self.tokens_per_minute or settings.llm_tokens_per_minute()
        return LLMSettings(**values, **settings.llm_target())

    def check_ready(self, client_settings: LLMSettings | None = None) -> None:
        """Fail at once, never silently fall back, when OpenAI is selected without a key."""
        client_settings = client_settings or self.client_settings()
        if client_settings.uses_openai and not client_settings.api_key:
            raise dg.Failure(
                description=(
                    "No OpenAI API key. Either set OPENAI_API_KEY to use OpenAI, or point "
                    "OPENAI_BASE_URL at an OpenAI-compatible server (vLLM, Ollama, or "
                    "`bsky-assets serve openai`, e.g. OPENAI_BASE_URL=http://127.0.0.1:8082/v1)."
                )
            )

    def get_client(self, task: LLMTask) -> LLMTaskClient:
        """A client asking `task`; fails (once, here) when the run cannot reach a model."""
        client_settings = self.client_settings()
        self.check_ready(client_settings)
        return LLMTaskClient(client_settings, task)
