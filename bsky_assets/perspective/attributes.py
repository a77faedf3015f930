"""Which Perspective attributes fill which label columns (the seed's 22 columns).

`prob_constructive` is an explicit alias: Perspective retired CONSTRUCTIVE_EXPERIMENTAL, so the
seed filled it from REASONING_EXPERIMENTAL. The alias is kept for continuity with the seed's data
and recorded in every row's attribute set, so nobody mistakes it for a separate model.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass

MAX_COMMENT_BYTES = 20_480  # Perspective's limit on one comment's UTF-8 text

ATTRIBUTE_COLUMNS: dict[str, str] = {
    "TOXICITY": "prob_toxic",
    "SEVERE_TOXICITY": "prob_severe_toxic",
    "IDENTITY_ATTACK": "prob_identity_attack",
    "INSULT": "prob_insult",
    "PROFANITY": "prob_profanity",
    "THREAT": "prob_threat",
    "AFFINITY_EXPERIMENTAL": "prob_affinity",
    "COMPASSION_EXPERIMENTAL": "prob_compassion",
    "CURIOSITY_EXPERIMENTAL": "prob_curiosity",
    "NUANCE_EXPERIMENTAL": "prob_nuance",
    "PERSONAL_STORY_EXPERIMENTAL": "prob_personal_story",
    "REASONING_EXPERIMENTAL": "prob_reasoning",
    "RESPECT_EXPERIMENTAL": "prob_respect",
    "ALIENATION_EXPERIMENTAL": "prob_alienation",
    "FEARMONGERING_EXPERIMENTAL": "prob_fearmongering",
    "GENERALIZATION_EXPERIMENTAL": "prob_generalization",
    "MORAL_OUTRAGE_EXPERIMENTAL": "prob_moral_outrage",
    "SCAPEGOATING_EXPERIMENTAL": "prob_scapegoating",
    "SEXUALLY_EXPLICIT": "prob_sexually_explicit",
    "FLIRTATION": "prob_flirtation",
    "SPAM": "prob_spam",
}
# Column filled from another column's attribute (the seed's CONSTRUCTIVE_EXPERIMENTAL stand-in).
COLUMN_ALIASES: dict[str, str] = {"prob_constructive": "REASONING_EXPERIMENTAL"}

PROB_COLUMNS: list[str] = [*ATTRIBUTE_COLUMNS.values(), *COLUMN_ALIASES]
DEFAULT_ATTRIBUTES: list[str] = list(ATTRIBUTE_COLUMNS)


@dataclass(frozen=True)
class AttributeSet:
    """The attributes requested and how they map to columns; its id goes on every label row."""

    attributes: tuple[str, ...]

    def __post_init__(self) -> None:
        unknown = [a for a in self.attributes if a not in ATTRIBUTE_COLUMNS]
        if unknown:
            raise ValueError(
                f"unknown Perspective attributes {unknown}; known: {DEFAULT_ATTRIBUTES}"
            )
        if len(set(self.attributes)) != len(self.attributes):
            raise ValueError("attributes must not repeat")

    @property
    def column_sources(self) -> dict[str, str]:
        """Column → attribute for every column this set fills (aliases included)."""
        sources = {ATTRIBUTE_COLUMNS[a]: a for a in self.attributes}
        for column, attribute in COLUMN_ALIASES.items():
            if attribute in self.attributes:
                sources[column] = attribute
        return sources

    @property
    def id(self) -> str:
        """Short, stable id of the mapping, e.g. `perspective-22@1a2b3c4d`."""
        canonical = json.dumps(self.column_sources, sort_keys=True)
        digest = hashlib.sha256(canonical.encode()).hexdigest()[:8]
        return f"perspective-{len(self.column_sources)}@{digest}"

    def columns_from_scores(self, scores: dict[str, float]) -> dict[str, float | None]:
        """Fill every prob_* column from attribute scores; unrequested or unscored stay None."""
        sources = self.column_sources
        return {c: scores.get(sources[c]) if c in sources else None for c in PROB_COLUMNS}


DEFAULT_ATTRIBUTE_SET = AttributeSet(tuple(DEFAULT_ATTRIBUTES))
