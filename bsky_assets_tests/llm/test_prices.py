"""Prices: the packaged table, dated snapshots, overrides, and "unknown" rather than a guess."""

import pytest

from bsky_assets.llm.prices import cost_metadata, price_of
from bsky_assets.settings import ConfigurationError


def test_a_dated_snapshot_is_priced_as_its_family_and_batch_is_half() -> None:
    price = price_of("gpt-4o-mini-2024-07-18")
    assert price == price_of("gpt-4o-mini")
    assert price.cost(1_000_000, 1_000_000, batch=False) == pytest.approx(0.75)
    assert price.cost(1_000_000, 1_000_000, batch=True) == pytest.approx(0.375)
    assert price_of("llama3:70b") is None


def test_overrides_add_and_replace_prices(monkeypatch) -> None:
    monkeypatch.setenv(
        "BSKY_LLM_PRICES",
        '{"llama3:70b": {"input": 0.1, "output": 0.2, "batch_input": 0.1},'
        ' "gpt-4o-mini": {"input": 1, "output": 1}}',
    )
    local = price_of("llama3:70b")
    assert (local.batch_input, local.batch_output) == (0.1, 0.1)
    assert price_of("gpt-4o-mini").input == 1.0
    monkeypatch.setenv("BSKY_LLM_PRICES", '{"m": {"input": "cheap"}}')
    with pytest.raises(ConfigurationError, match="BSKY_LLM_PRICES"):
        price_of("m")


def test_cost_metadata_prices_each_mode_at_its_price_or_says_unknown() -> None:
    metadata = cost_metadata("gpt-4o-mini", (1_000_000, 0), (1_000_000, 0), posts=2_000)
    assert metadata["estimated_cost_usd"] == pytest.approx(0.15 + 0.075)
    assert metadata["cost_at_sync_prices_usd"] == pytest.approx(0.30)
    assert metadata["cost_per_1000_posts_batch_usd"] == pytest.approx(0.075)
    unknown = cost_metadata("bsky-keyword-heuristic-not-an-llm", (10, 5), (0, 0), posts=3)
    assert (
        unknown["estimated_cost_usd"] == "unknown (no price for bsky-keyword-heuristic-not-an-llm)"
    )
    assert unknown["prompt_tokens"] == 10
