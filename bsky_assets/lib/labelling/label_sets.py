"""Several labelers per post: label sets, their registry, the migration, the preferred views.

One design for every label table. A label set is one labeler configuration (who answered, which
version, and everything else that changes the answer); its id is a hash of exactly that, so the
same configuration always writes into the same set and a new one (Google's API in December, the
distilled successor in January, a new prompt or model) adds rows beside the old ones. Each table
keeps one row per (day, post, label set); `label_sets` describes every set, and the view
`<table>_preferred` gives one row per post by the ranks in `labeler_preferences`.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from bsky_assets.lib.db.client import PostgresClient
from bsky_assets.lib.db.tables import TableSpec
from bsky_assets.lib.labelling import store
from bsky_assets.lib.labelling.tables import LABEL_SETS, LABELER_PREFERENCES

NOT_SENT_LABELER = "bsky_assets.valid_posts"  # rows written for invalid posts, before any call


@dataclass(frozen=True)
class LabelSet:
    table: str
    labeler: str
    labeler_version: str
    details: Mapping[str, Any] = field(default_factory=dict)
    emulated: bool = False  # not the real service the columns are named after

    @property
    def id(self) -> str:
        canonical = json.dumps(
            [self.table, self.labeler, self.labeler_version, dict(self.details)], sort_keys=True
        )
        return hashlib.sha256(canonical.encode()).hexdigest()[:16]

    def row(self) -> dict[str, Any]:
        return {
            "label_set": self.id,
            "label_table": self.table,
            "labeler": self.labeler,
            "labeler_version": self.labeler_version,
            "emulated": self.emulated,
            "details": json.dumps(dict(self.details), sort_keys=True),
        }


LegacySets = Callable[[dict[str, Any]], LabelSet]


def ensure_label_table(
    client: PostgresClient,
    spec: TableSpec,
    current: LabelSet,
    preferences: Sequence[tuple[str, int]] = (),
    legacy: LegacySets | None = None,
) -> None:
    """Create or migrate the label table, register `current`, and make sure its view exists.

    Cheap when nothing changed: the migration and the view are checked once per process and
    table, then only the label set is registered (an insert that does nothing when known).
    """
    client.ensure_table(spec)
    key = (client.schema, spec.name)
    if key not in _READY:
        client.ensure_table(LABEL_SETS)
        client.ensure_table(LABELER_PREFERENCES)
        if store.primary_key(client, spec) != list(spec.primary_key):
            _migrate(client, spec, current, legacy)
        store.add_default_preferences(client, spec.name, preferences)
        if not store.view_is_current(client, spec):
            store.create_preferred_view(client, spec)
        _READY.add(key)
    store.register_label_set(client, current.row())


_READY: set[tuple[str, str]] = set()


def _migrate(
    client: PostgresClient, spec: TableSpec, current: LabelSet, legacy: LegacySets | None
) -> None:
    """Rows from before label sets join the set their own provenance describes."""
    legacy = legacy or (lambda row: current)
    found = store.migrate_to_label_sets(
        client, spec, current.id, NOT_SENT_LABELER, lambda row: legacy(row).id
    )
    for row in found:
        store.register_label_set(client, legacy(row).row())
