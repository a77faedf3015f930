"""A transparent keyword heuristic for the sociopolitical labels. Not an LLM, and says so.

It exists so the pipeline runs offline and in tests with labels that are plausible and fully
explainable: a post is sociopolitical when it contains a political or social-issue term; its lean
is the side (left, right, moderate cues) with the most matching cues, "unclear" on a tie or none.
Word lists are short and documented here on purpose: read them before trusting any output.
"""

from __future__ import annotations

import re
from typing import Any

SOCIOPOLITICAL_TERMS = (
    "vote", "voting", "voter", "election", "ballot", "senator", "senate", "congress", "president",
    "governor", "government", "policy", "bill", "law", "tax", "taxes", "immigration", "border",
    "abortion", "reproductive", "climate", "union", "minimum wage", "medicare", "health care",
    "gun", "second amendment", "police", "protest", "democrat", "republican", "gop", "inflation",
    "washington", "supreme court", "civil rights", "debate", "candidate", "campaign", "poverty",
    "schools", "regulation", "solidarity", "labor",
)  # fmt: skip
LEAN_CUES = {
    "left": (
        "medicare for all", "union", "solidarity", "climate change", "climate crisis",
        "reproductive rights", "minimum wage", "poverty", "labor", "democrat",
    ),
    "right": (
        "secure the border", "border", "lower taxes", "second amendment", "overreach",
        "parents, not bureaucrats", "inflation", "republican", "law-abiding",
    ),
    "moderate": (
        "both parties", "compromise", "bipartisan", "whatever your views", "not the party",
    ),
}  # fmt: skip


def _contains(text: str, term: str) -> bool:
    return re.search(rf"(?<![a-z]){re.escape(term)}(?![a-z])", text) is not None


def label(text: str) -> tuple[bool, str | None]:
    """(is_sociopolitical, political_ideology_label) for one post."""
    lowered = text.lower()
    if not any(_contains(lowered, term) for term in SOCIOPOLITICAL_TERMS):
        return False, None
    votes = {lean: sum(_contains(lowered, c) for c in cues) for lean, cues in LEAN_CUES.items()}
    best = max(votes.values())
    leaders = [lean for lean, n in votes.items() if n == best]
    return True, leaders[0] if best > 0 and len(leaders) == 1 else "unclear"


def answer(text: str) -> dict[str, Any]:
    sociopolitical, lean = label(text)
    return {"is_sociopolitical": sociopolitical, "political_ideology_label": lean}
