"""Pluggable scorers behind the Perspective-compatible server.

A scorer declares the attributes it can score and returns scores only for those; the server,
not the scorer, speaks the protocol. Adding an open model (Detoxify) or LLM-rubric scoring of the
bridging attributes is a new subclass registered here (or named as `module:Class`), with no change
to the protocol code. A scorer never invents a number for an attribute it does not model: such an
attribute is reported as unsupported (an error, or a dropped attribute the label row records).
"""

from __future__ import annotations

import hashlib
import importlib
from abc import ABC, abstractmethod
from collections.abc import Sequence
from functools import cached_property
from importlib.metadata import version

from bsky_assets.perspective.attributes import ATTRIBUTE_COLUMNS


class Scorer(ABC):
    name: str
    synthetic: bool
    supported_attributes: frozenset[str]

    @property
    @abstractmethod
    def version(self) -> str: ...

    @abstractmethod
    def score(self, texts: Sequence[str]) -> list[dict[str, float]]:
        """For each text, a probability in [0, 1] per supported attribute."""

    @property
    def labeler(self) -> str:
        kind = "synthetic" if self.synthetic else "model"
        return f"bsky-perspective-server/{self.name} ({kind})"

    @property
    def coverage(self) -> str:
        """How many of Perspective's attributes it fills: said wherever the scorer is named."""
        total = len(ATTRIBUTE_COLUMNS)
        filled = len(self.supported_attributes & set(ATTRIBUTE_COLUMNS))
        return f"scores {filled} of {total} attributes" + (
            ", synthetic numbers" if self.synthetic else ""
        )


class SyntheticScorer(Scorer):
    """Deterministic pseudo-scores from a hash of the text: for tests, benchmarks, demos of the
    plumbing. Its labeler name says `synthetic`; these numbers mean nothing about the text."""

    name = "synthetic-hash"
    synthetic = True
    supported_attributes = frozenset(ATTRIBUTE_COLUMNS)

    @property
    def version(self) -> str:
        return "1"

    def score(self, texts: Sequence[str]) -> list[dict[str, float]]:
        results = []
        for text in texts:
            digest = hashlib.blake2b(text.encode("utf-8"), digest_size=32).digest()
            results.append(
                {
                    attribute: round(digest[i] / 255, 4)
                    for i, attribute in enumerate(sorted(self.supported_attributes))
                }
            )
        return results


class ProfanityCheckScorer(Scorer):
    """alt-profanity-check's shipped linear SVM (trained on offensive-language data), offline.

    It models one thing, offensive/profane language: one number per text, reported as
    PROFANITY. TOXICITY is not copied from it (two columns holding one number would read as two
    signals measured): it and every other attribute are unsupported rather than guessed, so
    prob_toxic stays NULL and the rows list TOXICITY in unscored_attributes.
    """

    name = "alt-profanity-check"
    synthetic = False
    supported_attributes = frozenset({"PROFANITY"})

    @property
    def version(self) -> str:
        # "+profanity-only": before, the scorer also copied its number into TOXICITY; its rows
        # differ, so it is a new label set and days it labelled are labelled again (offline, free)
        return f"{version('alt-profanity-check')}+profanity-only"

    @cached_property
    def _predict_prob(self):
        from profanity_check import predict_prob

        return predict_prob

    def score(self, texts: Sequence[str]) -> list[dict[str, float]]:
        if not texts:
            return []
        probabilities = self._predict_prob(list(texts))
        return [{"PROFANITY": round(float(p), 6)} for p in probabilities]


SCORERS: dict[str, type[Scorer]] = {
    "synthetic": SyntheticScorer,
    "profanity-check": ProfanityCheckScorer,
}


def load_scorer(name: str) -> Scorer:
    """A registered scorer by name, `distilled:MODEL` (a model id, `latest`, `latest-fast`,
    `latest-full`, or a folder), or
    any Scorer subclass given as `package.module:Class`."""
    if name in SCORERS:
        return SCORERS[name]()
    if name.startswith("distilled:"):  # the successor's own scorer (successor/scorer.py)
        from bsky_assets.successor.registry import resolve_model
        from bsky_assets.successor.scorer import DistilledScorer

        return DistilledScorer(resolve_model(name.removeprefix("distilled:")))
    if ":" in name:
        module, _, attribute = name.partition(":")
        cls = getattr(importlib.import_module(module), attribute)
        if not (isinstance(cls, type) and issubclass(cls, Scorer)):
            raise TypeError(f"{name} is not a Scorer subclass")
        return cls()
    raise ValueError(
        f"unknown scorer {name!r}; choose one of {sorted(SCORERS)}, distilled:MODEL or module:Class"
    )
