"""The LLM resource: OpenAI, or any OpenAI-compatible server (vLLM, Ollama, llama.cpp)."""

import os

import dagster as dg
from pydantic import Field

from bsky_assets.llm.client import OPENAI_URL, LLMSettings, SociopoliticalClient, is_openai


class LLMResource(dg.ConfigurableResource):
    """Sociopolitical labels via the official openai client (see llm/client.py)."""

    api_key: str | None = Field(default=None, description="Set with EnvVar('OPENAI_API_KEY').")
    base_url: str = Field(
        default_factory=lambda: os.environ.get("OPENAI_BASE_URL") or OPENAI_URL,
        description="OPENAI_BASE_URL, the openai client's own variable.",
    )
    model: str = Field(default_factory=lambda: os.environ.get("BSKY_LLM_MODEL") or "gpt-4o-mini")
    temperature: float = 0.0
    seed: int | None = 42
    posts_per_prompt: int = Field(
        default=10,
        ge=1,
        le=20,
        description="The seed measured 0.97-1.0 accuracy up to 20 posts a prompt, collapse at 25+.",
    )
    concurrency: int = Field(
        default=32,
        ge=1,
        description="Prompts in flight. The RPM/TPM buckets bound the rate; threads only hide "
        "latency (at 500 ms per answer, 20 requests/s needs at least 10 in flight).",
    )
    requests_per_minute: float = Field(
        default_factory=lambda: float(os.environ.get("BSKY_LLM_REQUESTS_PER_MINUTE", "500")), gt=0
    )
    tokens_per_minute: float = Field(
        default_factory=lambda: float(os.environ.get("BSKY_LLM_TOKENS_PER_MINUTE", "200000")),
        gt=0,
    )
    max_retries: int = Field(default=5, ge=0)
    initial_backoff_seconds: float = Field(default=1.0, gt=0)
    max_backoff_seconds: float = Field(default=60.0, gt=0)
    timeout_seconds: float = Field(default=60.0, gt=0)
    price_per_million_input_tokens: float = Field(
        default=0.15, description="USD; gpt-4o-mini's list price."
    )
    price_per_million_output_tokens: float = Field(default=0.60, description="USD.")

    @property
    def uses_openai(self) -> bool:
        return is_openai(self.base_url)

    def check_ready(self) -> None:
        """Fail at once, never silently fall back, when OpenAI is selected without a key."""
        if self.uses_openai and not self.api_key:
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
        return SociopoliticalClient(
            LLMSettings(
                base_url=self.base_url,
                api_key=self.api_key,
                model=self.model,
                temperature=self.temperature,
                seed=self.seed,
                posts_per_prompt=self.posts_per_prompt,
                concurrency=self.concurrency,
                requests_per_minute=self.requests_per_minute,
                tokens_per_minute=self.tokens_per_minute,
                max_retries=self.max_retries,
                initial_backoff_seconds=self.initial_backoff_seconds,
                max_backoff_seconds=self.max_backoff_seconds,
                timeout_seconds=self.timeout_seconds,
            )
        )
