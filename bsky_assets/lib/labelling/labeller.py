"""What a labeller is: the part of a label asset that is its own. The engine does the rest.

A labeller is one labelling task (Perspective's attributes, an LLM prompt, VADER's valence): its
table, the resources it needs, and, for a run, a `LabellingRun` that knows the run's label set,
how to label a batch of posts and how a result becomes a row. Readiness, the label set's
registration, the day's lease, rows for invalid posts, what is pending, the write loop with its
progress, ANALYZE, the common checks and metadata are the engine's (`engine.py`), written once.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

import dagster as dg

from bsky_assets.lib.db.tables import TableSpec

if TYPE_CHECKING:
    from bsky_assets.lib.labelling.engine import LabellingDay
    from bsky_assets.lib.labelling.label_sets import LabelSet


@dataclass(frozen=True)
class Post:
    """A post to label: its uri, its text, and its languages as the landing gave them (JSON)."""

    key: str
    text: str
    langs: str | None = None


class LabelResult(Protocol):
    """A labeller's outcome for one post; `key` is the post's uri."""

    key: str


@dataclass(frozen=True)
class CheckSpec:
    """A check a labeller adds to the common ones, evaluated in its step for its day."""

    name: str
    description: str
    blocking: bool = False


class LabellingRun(ABC):
    """One run of a labeller: built in the run, from the run's resources and environment."""

    label_set: LabelSet
    provenance: Mapping[str, Any]  # columns every row of the run carries
    not_sent_provenance: Mapping[str, Any]  # columns of the rows written for invalid posts

    def legacy_label_set(self, row: dict[str, Any]) -> LabelSet:
        """The set a row written before label sets existed belongs to (its provenance columns
        are in `row`); by default the current one."""
        return self.label_set

    def prepare(self, day: LabellingDay) -> None:  # noqa: B027 (optional hook)
        """Side tables the run keeps up to date (e.g. what an attribute set maps to)."""

    def describe(self) -> str:
        """The run log's first line: who labels, and with which label set."""
        return f"labelling with {self.label_set.labeler} {self.label_set.labeler_version}"

    def before_sending(self, day: LabellingDay) -> None:  # noqa: B027 (optional hook)
        """Work before the synchronous pass, under the day's lease (e.g. batches submitted to a
        provider's batch API, or batches an earlier run left open, collected)."""

    @abstractmethod
    def label(self, posts: Iterable[Post]) -> Iterator[Sequence[LabelResult]]:
        """Label posts (drawn lazily) and yield final results batch by batch; a result may
        fail (reason, retryable), but every post drawn gets exactly one."""

    @abstractmethod
    def row(self, result: Any) -> dict[str, Any]:
        """The label row for a result: `uri`, `was_successfully_labeled`, `reason`,
        `retryable`, `attempts` and the labeller's own columns (provenance is added)."""

    def metadata(self, day: LabellingDay) -> dict[str, Any]:
        """What the materialization shows beyond the common keys."""
        return {}

    def preview_columns(self, day: LabellingDay, default: Sequence[str]) -> Sequence[str]:
        """The columns the preview shows (after `metadata`): by default the labeller's own;
        a labeller that fills only some columns shows those it filled."""
        return default

    def checks(self, day: LabellingDay) -> list[dg.AssetCheckResult]:
        """Results of the labeller's own check specs, for the day."""
        return []


@dataclass(frozen=True)
class Labeller(ABC):
    """A labelling task as the definitions see it (nothing here reads the environment)."""

    table: TableSpec
    description: str
    kinds: frozenset[str] = frozenset({"postgres"})
    pool: str | None = None  # a Dagster pool: one step at a time per provider quota
    resource_keys: frozenset[str] = frozenset()
    preview_columns: tuple[str, ...] = ()
    check_specs: tuple[CheckSpec, ...] = ()
    preferences: tuple[tuple[str, int], ...] = ()  # default (labeler LIKE pattern, rank) pairs
    # Reasons (prefixes) that describe the post, not a failure: not counted by failure_rate.
    out_of_scope: tuple[str, ...] = ()
    group: str = "labels"

    @property
    def name(self) -> str:
        """The asset's name, which is its table's."""
        return self.table.name

    def asset_description(self) -> str:
        """The asset's description, built with the definitions (never at import)."""
        return self.description

    @abstractmethod
    def start(self, context: dg.AssetExecutionContext) -> LabellingRun:
        """Build the run from `context.resources`; fail here, before any work, when the
        labeller cannot run (no key, no server)."""
