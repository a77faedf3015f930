"""sociopolitical_labels: the sociopolitical task as a label asset, and the shares it shows."""

from __future__ import annotations

from typing import Any

from bsky_assets.lib import plots
from bsky_assets.lib.labelling import store
from bsky_assets.lib.labelling.engine import LabellingDay
from bsky_assets.llm.labeller import LLMLabeller
from bsky_assets.sociopolitical.task import SOCIOPOLITICAL

NOT_SOCIOPOLITICAL = "not sociopolitical"


def lean_metadata(day: LabellingDay, model: str | None) -> dict[str, Any]:
    """Posts by lean (and not sociopolitical) for the set's labelled rows of the day."""
    counts = store.value_counts(
        day.db, day.spec, day.label_set.id, day.day, "political_ideology_label"
    )
    leans = dict(sorted((lean or NOT_SOCIOPOLITICAL, n) for lean, n in counts.items()))
    labelled = sum(leans.values())
    return {
        "posts_by_lean": leans,
        **{f"share_{lean.replace(' ', '_')}": round(n / labelled, 4) for lean, n in leans.items()},
        "share_by_lean": plots.share_bars(leans),
        "share_by_lean_plot": plots.shares(
            leans, f"Posts by lean, {day.day}, {model or 'no model'}"
        ),
    }


SOCIOPOLITICAL_LABELLER = LLMLabeller.of(SOCIOPOLITICAL, lean_metadata)
