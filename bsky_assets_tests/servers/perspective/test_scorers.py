"""Scorers: the registered ones, and any `package.module:Class` a researcher brings."""

from collections.abc import Sequence

import pytest

from bsky_assets.perspective.scorers import Scorer, load_scorer


class ConstantScorer(Scorer):
    """A researcher's own scorer, loaded by name as module:Class."""

    name = "constant"
    synthetic = False
    supported_attributes = frozenset({"TOXICITY"})

    @property
    def version(self) -> str:
        return "0.1"

    def score(self, texts: Sequence[str]) -> list[dict[str, float]]:
        return [{"TOXICITY": 0.25} for _ in texts]


class NotAScorer:
    pass


def test_module_class_scorers_are_loaded_and_serve_what_they_declare(serve) -> None:
    scorer = load_scorer(f"{__name__}:ConstantScorer")
    assert isinstance(scorer, ConstantScorer)
    assert scorer.labeler == "bsky-perspective-server/constant (model)"
    server = serve.perspective(scorer=f"{__name__}:ConstantScorer")
    answers = server.service.analyze_many(
        [({"comment": {"text": "hello there"}, "requestedAttributes": {"TOXICITY": {}}}, None)]
    )
    code, payload = answers[0]
    assert code == 200
    assert payload["attributeScores"]["TOXICITY"]["summaryScore"]["value"] == 0.25


def test_a_class_that_is_not_a_scorer_or_an_unknown_name_is_refused() -> None:
    with pytest.raises(TypeError, match="not a Scorer subclass"):
        load_scorer(f"{__name__}:NotAScorer")
    with pytest.raises(ValueError, match="unknown scorer"):
        load_scorer("no-such-scorer")
