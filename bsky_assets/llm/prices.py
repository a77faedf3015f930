"""What a model's tokens cost, so every run can say what the day cost.

List prices in USD per million tokens for the synchronous API, from OpenAI's pricing page
(2026-11); the Batch API costs half of both for the same model. Names OpenAI answers with carry a
snapshot date (`gpt-4o-mini-2024-07-18`) and are priced as their family. A model missing here
(a local server, vLLM, a fine-tune) has no price: the UI says "unknown" rather than guess.
Researchers with other contracts override or add prices with BSKY_LLM_PRICES, a JSON object
`{"model": {"input": 0.15, "output": 0.6, "batch_input": 0.075, "batch_output": 0.3}}` (the
batch prices default to half).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from bsky_assets import settings

BATCH_DISCOUNT = 0.5
_SNAPSHOT = re.compile(r"-\d{4}-\d{2}-\d{2}$")


@dataclass(frozen=True)
class Price:
    """USD per million tokens."""

    input: float
    output: float
    batch_input: float
    batch_output: float

    @classmethod
    def listed(cls, input: float, output: float) -> Price:
        return cls(input, output, input * BATCH_DISCOUNT, output * BATCH_DISCOUNT)

    def cost(self, prompt_tokens: int, completion_tokens: int, batch: bool) -> float:
        per_in, per_out = (
            (self.batch_input, self.batch_output)
            if batch
            else (
                self.input,
                self.output,
            )
        )
        return (prompt_tokens * per_in + completion_tokens * per_out) / 1_000_000


LIST_PRICES: dict[str, Price] = {
    "gpt-4o-mini": Price.listed(0.15, 0.60),
    "gpt-4o": Price.listed(2.50, 10.00),
    "gpt-4.1": Price.listed(2.00, 8.00),
    "gpt-4.1-mini": Price.listed(0.40, 1.60),
    "gpt-4.1-nano": Price.listed(0.10, 0.40),
    "gpt-4-turbo": Price.listed(10.00, 30.00),
    "gpt-3.5-turbo": Price.listed(0.50, 1.50),
}


def _overrides() -> dict[str, Price]:
    raw = settings.llm_prices()
    if not raw:
        return {}
    try:
        table = json.loads(raw)
        prices = {}
        for model, entry in table.items():
            input, output = float(entry["input"]), float(entry["output"])
            prices[str(model)] = Price(
                input,
                output,
                float(entry.get("batch_input", input * BATCH_DISCOUNT)),
                float(entry.get("batch_output", output * BATCH_DISCOUNT)),
            )
        return prices
    except (ValueError, TypeError, KeyError, AttributeError) as error:
        raise settings.ConfigurationError(
            "BSKY_LLM_PRICES must be a JSON object of "
            '{"model": {"input": <USD per 1M tokens>, "output": <USD per 1M tokens>}} '
            f"({type(error).__name__})"
        ) from None


def price_of(model: str) -> Price | None:
    """The price of `model` (or of its family, for a dated snapshot); None when unknown."""
    prices = {**LIST_PRICES, **_overrides()}
    return prices.get(model) or prices.get(_SNAPSHOT.sub("", model))


def cost_metadata(
    model: str | None,
    sync_tokens: tuple[int, int],
    batch_tokens: tuple[int, int],
    posts: int,
) -> dict[str, Any]:
    """What a run's tokens cost at `model`'s prices: as spent (each mode at its price), and all
    of them at sync and at batch prices, per run and per 1,000 posts; "unknown" without a price."""
    prompt = sync_tokens[0] + batch_tokens[0]
    completion = sync_tokens[1] + batch_tokens[1]
    price = price_of(model) if model else None
    metadata: dict[str, Any] = {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "batch_prompt_tokens": batch_tokens[0],
        "batch_completion_tokens": batch_tokens[1],
        "priced_as": model or "no model answered",
    }
    if price is None:
        unknown = f"unknown (no price for {model})" if model else "unknown"
        for key in ("estimated_cost_usd", "cost_at_sync_prices_usd", "cost_at_batch_prices_usd",
                    "cost_per_1000_posts_sync_usd", "cost_per_1000_posts_batch_usd"):  # fmt: skip
            metadata[key] = unknown
        return metadata
    spent = price.cost(*sync_tokens, batch=False) + price.cost(*batch_tokens, batch=True)
    at_sync = price.cost(prompt, completion, batch=False)
    at_batch = price.cost(prompt, completion, batch=True)
    metadata.update(
        estimated_cost_usd=round(spent, 6),
        cost_at_sync_prices_usd=round(at_sync, 6),
        cost_at_batch_prices_usd=round(at_batch, 6),
        cost_per_1000_posts_sync_usd=round(at_sync / posts * 1000, 6) if posts else 0.0,
        cost_per_1000_posts_batch_usd=round(at_batch / posts * 1000, 6) if posts else 0.0,
    )
    return metadata
