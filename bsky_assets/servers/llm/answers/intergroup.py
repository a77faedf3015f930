"""A transparent keyword heuristic for the intergroup task. Not an LLM, and says so.

A post is intergroup when it names two different social groups, or one group together with a
word that sets groups against each other or compares them. Word lists are short and documented
here on purpose: read them before trusting any output.
"""

from __future__ import annotations

import re
from typing import Any

GROUPS = (
    "democrats", "republicans", "liberals", "conservatives", "progressives", "the left",
    "the right", "immigrants", "migrants", "americans", "muslims", "christians", "jews",
    "atheists", "women", "men", "boomers", "millennials", "gen z", "workers", "bosses",
    "billionaires", "the rich", "the poor", "police", "protesters", "unions", "voters", "elites",
)  # fmt: skip
RELATIONS = (
    "versus", "vs", "against", "than", "blame", "blames", "hate", "hates", "attack", "attacks",
    "fight", "unlike", "together with", "side with", "us and them",
)  # fmt: skip


def _found(text: str, terms: tuple[str, ...]) -> set[str]:
    return {t for t in terms if re.search(rf"(?<![a-z]){re.escape(t)}(?![a-z])", text)}


def label(text: str) -> bool:
    lowered = text.lower()
    groups = _found(lowered, GROUPS)
    return len(groups) >= 2 or (len(groups) == 1 and bool(_found(lowered, RELATIONS)))


def answer(text: str) -> dict[str, Any]:
    return {"is_intergroup": label(text)}
