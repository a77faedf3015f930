"""The LLM resource: OpenAI, or any OpenAI-compatible server (vLLM, Ollama, llama.cpp)."""

from __future__ import annotations

import dagster as dg
from pydantic import Field

from bsky_assets import settings
from bsky_assets.llm.client import LLMSettings, SociopoliticalClient


class LLMResource(dg.ConfigurableResource, LLMSettings):
    """Sociopolitical labels via the official openai client (see llm/client.py).

    Its fields are `LLMSettings`'; those that default to the environment are read when the client
    is built, in the run (see settings.py).
    """

    base_url: str | None = Field(  # type: ignore[assignment]
        default=None, description="Unset: OPENAI_BASE_URL, else OpenAI's."
    )
    model: str | None = Field(  # type: ignore[assignment]
        default=None, description="Unset: BSKY_LLM_MODEL, else gpt-4o-mini."
    )
    requests_per_minute: float | None = Field(  # type: ignore[assignment]
        default=None, gt=0, description="Unset: BSKY_LLM_REQUESTS_PER_MINUTE, else 500."
    )
    tokens_per_minute: float | None = Field(  # type: ignore[assignment]
        default=None, gt=0, description="Unset: BSKY_LLM_TOKENS_PER_MINUTE, else 200,000."
    )
    price_per_million_input_tokens: float = Field(
        default=0.15, description="USD; gpt-4o-mini's list price."
    )
    price_per_million_output_tokens: float = Field(default=0.60, description="USD.")

    def client_settings(self) -> LLMSettings:
        values = {name: getattr(self, name) for name in LLMSettings.model_fields}
        values["base_url"] = self.base_url or settings.openai_base_url()
        values["model"] = self.model or settings.llm_model()
        values["requests_per_minute"] = (
            self.requests_per_minute or settings.llm_requests_per_minute()
        )
        values["tokens_per_minute"] = self.tokens_per_minute or settings.llm_tokens_per_minute()
        return LLMSettings(**values)

    def check_ready(self) -> None:
        """Fail at once, never silently fall back, when OpenAI is selected without a key."""
        if self.client_settings().uses_openai and not self.api_key:
            raise dg.Failure(
                description=(
                    "No OpenAI API key. Either set OPENAI_API_KEY to use OpenAI, or point "
                    "OPENAI_BASE_URL at an OpenAI-compatible server (vLLM, Ollama, or "
                    "`bsky-assets serve openai`, e.g. OPENAI_BASE_URL=http://127.0.0.1:8082/v1)."
                )
            )

    def estimated_cost(self, prompt_tokens: int, completion_tokens: int) -> float:
        return (
            prompt_tokens * self.price_per_million_input_tokens
            + completion_tokens * self.price_per_million_output_tokens
        ) / 1_000_000

    def get_client(self) -> SociopoliticalClient:
        self.check_ready()
        return SociopoliticalClient(self.client_settings())
