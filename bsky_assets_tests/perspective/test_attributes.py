"""The attribute → column mapping and the explicit prob_constructive alias."""

import pytest

from bsky_assets.perspective.attributes import (
    DEFAULT_ATTRIBUTE_SET,
    PROB_COLUMNS,
    AttributeSet,
)


def test_default_set_fills_the_seeds_22_columns() -> None:
    assert len(PROB_COLUMNS) == 22
    sources = DEFAULT_ATTRIBUTE_SET.column_sources
    assert set(sources) == set(PROB_COLUMNS)
    assert sources["prob_constructive"] == sources["prob_reasoning"] == "REASONING_EXPERIMENTAL"
    assert len(DEFAULT_ATTRIBUTE_SET.attributes) == 21  # constructive is no separate request


def test_scores_map_to_columns_and_the_alias() -> None:
    columns = DEFAULT_ATTRIBUTE_SET.columns_from_scores(
        {"TOXICITY": 0.9, "REASONING_EXPERIMENTAL": 0.4}
    )
    assert columns["prob_toxic"] == 0.9
    assert columns["prob_reasoning"] == columns["prob_constructive"] == 0.4
    assert columns["prob_spam"] is None  # not scored: null, never a made-up number


def test_subset_ids_differ_and_unknown_attributes_are_refused() -> None:
    toxicity_only = AttributeSet(("TOXICITY",))
    assert toxicity_only.id != DEFAULT_ATTRIBUTE_SET.id
    assert toxicity_only.id.startswith("perspective-1@")
    assert toxicity_only.columns_from_scores({"TOXICITY": 0.2})["prob_constructive"] is None
    with pytest.raises(ValueError, match="unknown Perspective attributes"):
        AttributeSet(("CONSTRUCTIVE_EXPERIMENTAL",))
