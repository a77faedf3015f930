"""perspective_labels: toxicity and bridging scores for every valid post of the day.

The labeller only says what is Perspective's own: the client and its label set (labeler, version,
attribute set), how a scored comment becomes a row of prob_* columns, and what the UI shows about
coverage and the toxicity distribution. The engine (lib/labelling) does the rest.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from importlib.metadata import version
from typing import Any

import dagster as dg

from bsky_assets.lib import plots
from bsky_assets.lib.db.tables import TableSpec
from bsky_assets.lib.labelling import store
from bsky_assets.lib.labelling.engine import LabellingDay
from bsky_assets.lib.labelling.label_sets import NOT_SENT_LABELER, LabelSet
from bsky_assets.lib.labelling.labeller import CheckSpec, Labeller, LabellingRun, Post
from bsky_assets.lib.labelling.metadata import markdown_cell
from bsky_assets.perspective import checks
from bsky_assets.perspective.attributes import COLUMN_ALIASES, PROB_COLUMNS, AttributeSet
from bsky_assets.perspective.client import (
    GOOGLE_LABELER,
    Comment,
    CommentResult,
    PerspectiveClient,
)
from bsky_assets.perspective.sunset import active_labeler, sunset_notice
from bsky_assets.perspective.tables import PERSPECTIVE_ATTRIBUTE_SETS, PERSPECTIVE_LABELS

PREVIEW_COLUMNS = ("labeler", "prob_toxic", "prob_reasoning", "prob_affinity")
HISTOGRAM_BINS = 20
DESCRIPTION = """Perspective scores per valid post and label set: up to 22 prob_* columns,
filled as far as the labeler scores them (see the `coverage` metadata and the
`every_column_scored` check); failed rows say why.

Every row records the labeler and version that actually scored it (`labeler`,
`labeler_version`, `label_set`); each materialization names them.

**{sunset}**

Invalid posts get failed rows first; then only posts without a final row from the configured
label set are sent, and each completed batch is written at once, so re-runs resume and never
duplicate. Another labeler (Google's API, a distilled successor) adds its own rows."""


def perspective_label_set(labeler: str, labeler_version: str, attribute_set: str) -> LabelSet:
    """A Perspective label set: who scored, which version, which attribute → column mapping."""
    return LabelSet(
        table=PERSPECTIVE_LABELS.name,
        labeler=labeler,
        labeler_version=labeler_version,
        details={"attribute_set": attribute_set},
        emulated=labeler != GOOGLE_LABELER,
    )


def label_set_of(client: PerspectiveClient) -> LabelSet:
    return perspective_label_set(client.labeler, client.labeler_version, client.attribute_set.id)


def label_row(result: CommentResult, attribute_set: AttributeSet) -> dict[str, Any]:
    row: dict[str, Any] = {
        "uri": result.key,
        "was_successfully_labeled": result.scores is not None,
        "reason": result.reason,
        "retryable": result.retryable,
        "attempts": result.attempts,
        "unscored_attributes": ",".join(result.unscored) or None,
    }
    row.update(attribute_set.columns_from_scores(result.scores or {}))
    return row


class PerspectiveRun(LabellingRun):
    def __init__(self, client: PerspectiveClient) -> None:
        self.client = client
        self.attribute_set = client.attribute_set
        self.label_set = label_set_of(client)
        self.provenance = {
            "labeler": client.labeler,
            "labeler_version": client.labeler_version,
            "attribute_set": self.attribute_set.id,
        }
        self.not_sent_provenance = {
            **self.provenance,
            "labeler": NOT_SENT_LABELER,
            "labeler_version": version("bsky_assets"),
        }
        self.scorer = f"{client.labeler} {client.labeler_version}"

    def legacy_label_set(self, row: dict[str, Any]) -> LabelSet:
        return perspective_label_set(row["labeler"], row["labeler_version"], row["attribute_set"])

    def prepare(self, day: LabellingDay) -> None:
        """Keep the column → attribute mapping behind each attribute_set id queryable in SQL."""
        aliases = {
            column: f"{attribute} (CONSTRUCTIVE_EXPERIMENTAL retired)"
            for column, attribute in COLUMN_ALIASES.items()
        }
        day.db.insert_rows(
            PERSPECTIVE_ATTRIBUTE_SETS,
            [
                {
                    "attribute_set": self.attribute_set.id,
                    "column_sources": json.dumps(self.attribute_set.column_sources),
                    "aliases": json.dumps(aliases),
                }
            ],
        )

    def describe(self) -> str:
        return f"scoring with {self.scorer}"

    def label(self, posts: Iterable[Post]) -> Iterator[Sequence[CommentResult]]:
        return self.client.analyze(Comment(post.key, post.text) for post in posts)

    def row(self, result: CommentResult) -> dict[str, Any]:
        return label_row(result, self.attribute_set)

    def metadata(self, day: LabellingDay) -> dict[str, Any]:
        stats = self.client.stats.as_dict()
        seconds = day.seconds
        coverage = self._coverage(day)
        day.extra["coverage"] = coverage
        return {
            "labeler": self.client.labeler,
            "labeler_version": self.client.labeler_version,
            "attribute_set": self.attribute_set.id,
            "emulated": self.label_set.emulated,
            "api_requests": stats["http_requests"],
            "parts_sent": stats["parts_sent"],
            "retried_parts": stats["retried_parts"],
            "status_429": stats["status_429"],
            "status_5xx": stats["status_5xx"],
            "achieved_parts_per_second": round(stats["parts_sent"] / seconds, 2) if seconds else 0,
            "configured_parts_per_second": self.client.settings.requests_per_second,
            **coverage_metadata(coverage, self.scorer),
            **self._histogram(day, histogram_column(coverage)),
        }

    def preview_columns(self, day: LabellingDay, default: Sequence[str]) -> Sequence[str]:
        """The labeler, then up to three columns it scored: the usual ones when it scored them
        (toxicity, reasoning, affinity), else the first it filled (e.g. prob_profanity alone)."""
        coverage = day.extra.get("coverage") or self._coverage(day)
        scored = [c for c, n in coverage.items() if n["scored"]]
        usual = [c for c in default if c in scored]
        return ["labeler", *(usual + [c for c in scored if c not in usual])[:3]]

    def checks(self, day: LabellingDay) -> list[dg.AssetCheckResult]:
        coverage = day.extra.get("coverage") or self._coverage(day)
        return [
            checks.probabilities_in_unit_interval(day.db, day.day),
            checks.every_column_scored(day.label_set.id, day.day, coverage, self.scorer),
        ]

    def _coverage(self, day: LabellingDay) -> dict[str, dict[str, int]]:
        """Per prob_* column, the set's rows of the day that have a score (`scored`), that were
        labelled without one (`unscored`: the labeler does not score it), and that have none
        because the post was not labelled (`null`: failed or invalid)."""
        not_labelled, counts = store.column_counts(
            day.db, day.spec, day.label_set.id, day.day, PROB_COLUMNS
        )
        return {
            column: {"scored": scored, "unscored": unscored, "null": not_labelled}
            for column, (scored, unscored) in counts.items()
        }

    def _histogram(self, day: LabellingDay, column: str) -> dict[str, dg.MetadataValue]:
        """`column`'s distribution for the set's rows of the day: inline text and a PNG."""
        counts = store.histogram(
            day.db, day.spec, day.label_set.id, day.day, column, 0, 1, HISTOGRAM_BINS
        )
        caption = f"{column}, {sum(counts)} posts, by {markdown_cell(self.scorer, 120)}"
        return {
            f"{column}_histogram": plots.sparkline(counts, "0", "1", caption),
            f"{column}_bins": plots.bin_table(counts, 0, 1, caption),
            f"{column}_distribution": plots.histogram(
                counts, f"{column}, {day.day}\nby {self.scorer}", column
            ),
        }


def histogram_column(coverage: dict[str, dict[str, int]]) -> str:
    """prob_toxic, unless the labeler left it empty: then the first column it did score (the
    offline scorer's prob_profanity), so the histogram shows a measured number."""
    scored = [c for c, n in coverage.items() if n["scored"]]
    return "prob_toxic" if "prob_toxic" in scored or not scored else scored[0]


def coverage_metadata(coverage: dict[str, dict[str, int]], labeler: str) -> dict[str, Any]:
    filled = [c for c, n in coverage.items() if n["scored"]]
    lines = ["| column | scored | unscored | null |", "|---|---|---|---|"]
    lines += [
        f"| {c} | {n['scored']} | {n['unscored']} | {n['null']} |" for c, n in coverage.items()
    ]
    return {
        "columns_scored": f"{len(filled)} of {len(coverage)} by {labeler}",
        "columns_scored_count": len(filled),
        "empty_columns": ", ".join(c for c in coverage if c not in filled) or "none",
        "coverage": dg.MetadataValue.md("\n".join(lines)),
    }


@dataclass(frozen=True)
class PerspectiveLabeller(Labeller):
    """Perspective's attributes, from Google's API or a compatible server (the successor)."""

    table: TableSpec = PERSPECTIVE_LABELS
    description: str = DESCRIPTION
    kinds: frozenset[str] = frozenset({"postgres", "api"})
    pool: str | None = "perspective_api"
    resource_keys: frozenset[str] = frozenset({"perspective"})
    preview_columns: tuple[str, ...] = PREVIEW_COLUMNS
    check_specs: tuple[CheckSpec, ...] = checks.CHECK_SPECS
    # Google's real scores first, then a distilled successor, then anything else.
    preferences: tuple[tuple[str, int], ...] = (
        (GOOGLE_LABELER, 1),
        ("bsky-perspective-server/distilled-%", 2),
    )

    def asset_description(self) -> str:
        """Read when the definitions are built: the sunset, and who this code location's runs
        send posts to (the rows record who actually scored them)."""
        return (
            f"{self.description.format(sunset=sunset_notice())}\n\n"
            f"**Labeler for this code location:** {active_labeler()}."
        )

    def start(self, context: dg.AssetExecutionContext) -> PerspectiveRun:
        return PerspectiveRun(context.resources.perspective.get_client())
