"""valence_labels: VADER's compound valence score and a positive / neutral / negative label.

VADER (Hutto & Gilbert, 2014) is a lexicon and rule-based sentiment model tuned on social media
text; `vaderSentiment` is its authors' own implementation, with the lexicon in the wheel (MIT,
pinned). The label uses the cut-offs its authors recommend: compound >= 0.05 positive, <= -0.05
negative, neutral between. The lexicon is English: a post whose landing `langs` names languages
and none of them English gets a failed row (`language_not_supported`), never a "neutral" that
only means "not understood"; a post without `langs` is scored.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from functools import cached_property
from importlib.metadata import version
from typing import Any

import dagster as dg
import polars as pl

from bsky_assets.lib import plots
from bsky_assets.lib.calls import chunks
from bsky_assets.lib.db.tables import Column, TableSpec
from bsky_assets.lib.labelling import store
from bsky_assets.lib.labelling.engine import LabellingDay
from bsky_assets.lib.labelling.label_sets import NOT_SENT_LABELER, LabelSet
from bsky_assets.lib.labelling.labeller import CheckSpec, Labeller, LabellingRun, Post
from bsky_assets.lib.labelling.tables import label_table

LABELER = "vader"
CUTOFF = 0.05
POSTS_PER_BATCH = 2_000
HISTOGRAM_BINS = 20
NOT_ENGLISH = "language_not_supported"

VALENCE_LABELS = label_table(
    "valence_labels",
    (
        Column("valence_compound", "double precision", pl.Float64(),
               description="VADER's compound valence: -1 most negative .. 1 most positive"),
        Column("valence_positive", "double precision", pl.Float64(),
               description="share of the text VADER reads as positive"),
        Column("valence_neutral", "double precision", pl.Float64(),
               description="share of the text VADER reads as neutral"),
        Column("valence_negative", "double precision", pl.Float64(),
               description="share of the text VADER reads as negative"),
        Column("valence_label", "text", pl.String(),
               description="positive (compound >= 0.05), negative (<= -0.05), else neutral"),
        Column("labeler", "text", pl.String(), nullable=False, description="vader"),
        Column("labeler_version", "text", pl.String(), nullable=False,
               description="the vaderSentiment release that scored the row"),
    ),
)  # fmt: skip


def valence_label(compound: float) -> str:
    if compound >= CUTOFF:
        return "positive"
    if compound <= -CUTOFF:
        return "negative"
    return "neutral"


def unsupported_language(langs: str | None) -> str | None:
    """The post's languages when they are given and none is English, else None."""
    try:
        parsed = json.loads(langs) if langs else None
    except ValueError:
        return None
    if not isinstance(parsed, list) or not parsed:
        return None
    tags = [str(tag).lower() for tag in parsed]
    if any(tag == "en" or tag.startswith("en-") for tag in tags):
        return None
    return ",".join(tags)[:40]


@dataclass
class ValenceResult:
    key: str
    scores: dict[str, float] | None = None
    reason: str | None = None


class ValenceRun(LabellingRun):
    def __init__(self) -> None:
        self.version = version("vaderSentiment")
        self.label_set = LabelSet(
            table=VALENCE_LABELS.name,
            labeler=LABELER,
            labeler_version=self.version,
            details={"cutoffs": [-CUTOFF, CUTOFF], "languages": "en"},
        )
        self.provenance = {"labeler": LABELER, "labeler_version": self.version}
        self.not_sent_provenance = {**self.provenance, "labeler": NOT_SENT_LABELER}

    @cached_property
    def analyzer(self) -> Any:
        from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

        return SentimentIntensityAnalyzer()

    def describe(self) -> str:
        return f"scoring valence with VADER {self.version} (here, no service)"

    def label(self, posts: Iterable[Post]) -> Iterator[Sequence[ValenceResult]]:
        for batch in chunks(posts, POSTS_PER_BATCH):
            yield [self._score(post) for post in batch]

    def _score(self, post: Post) -> ValenceResult:
        languages = unsupported_language(post.langs)
        if languages:
            return ValenceResult(post.key, reason=f"{NOT_ENGLISH}: {languages}")
        return ValenceResult(post.key, scores=self.analyzer.polarity_scores(post.text))

    def row(self, result: ValenceResult) -> dict[str, Any]:
        scores = result.scores or {}
        compound = scores.get("compound")
        return {
            "uri": result.key,
            "was_successfully_labeled": result.scores is not None,
            "reason": result.reason,
            "retryable": False,
            "attempts": 1,
            "valence_compound": compound,
            "valence_positive": scores.get("pos"),
            "valence_neutral": scores.get("neu"),
            "valence_negative": scores.get("neg"),
            "valence_label": valence_label(compound) if compound is not None else None,
        }

    def metadata(self, day: LabellingDay) -> dict[str, Any]:
        counts = store.value_counts(day.db, day.spec, day.label_set.id, day.day, "valence_label")
        labels = {label: counts.get(label, 0) for label in ("positive", "neutral", "negative")}
        labelled = sum(labels.values())
        bins = store.histogram(
            day.db, day.spec, day.label_set.id, day.day, "valence_compound", -1, 1, HISTOGRAM_BINS
        )
        scorer = f"VADER {self.version}"
        return {
            "labeler": LABELER,
            "labeler_version": self.version,
            "posts_by_valence": labels,
            **{
                f"share_{k}": round(n / labelled, 4) if labelled else 0.0 for k, n in labels.items()
            },
            "share_by_valence": plots.share_bars(labels),
            "valence_histogram": plots.sparkline(
                bins, "-1", "1", f"valence_compound, {sum(bins)} posts, by {scorer}"
            ),
            "valence_bins": plots.bin_table(bins, -1, 1, f"valence_compound by {scorer}"),
        }

    def checks(self, day: LabellingDay) -> list[dg.AssetCheckResult]:
        outside = store.count_outside(
            day.db, day.spec, day.label_set.id, day.day, "valence_compound", -1.0, 1.0
        )
        return [
            dg.AssetCheckResult(
                check_name="compound_in_range",
                passed=outside == 0,
                metadata={"day": str(day.day), "rows_out_of_range": outside},
            )
        ]


@dataclass(frozen=True)
class ValenceLabeller(Labeller):
    """VADER valence for every valid post: free, local, on by default."""

    table: TableSpec = VALENCE_LABELS
    description: str = (
        "VADER valence per valid post and label set: valence_compound in [-1, 1], the shares "
        "of positive, neutral and negative words, and valence_label at VADER's ±0.05 "
        "cut-offs. Computed in the step (no service, no key). English lexicon: posts whose "
        "langs name no English get a failed row (language_not_supported)."
    )
    kinds: frozenset[str] = frozenset({"postgres", "python"})
    preview_columns: tuple[str, ...] = ("valence_label", "valence_compound")
    out_of_scope: tuple[str, ...] = (NOT_ENGLISH,)
    check_specs: tuple[CheckSpec, ...] = (
        CheckSpec("compound_in_range", "Every valence_compound of the day is within [-1, 1]."),
    )

    def start(self, context: dg.AssetExecutionContext) -> ValenceRun:
        return ValenceRun()
