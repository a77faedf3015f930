"""Several labelers per post: label sets, their registry, the migration, the preferred views.

One design for both label tables. A label set is one labeler configuration (who answered, which
version, and everything else that changes the answer); its id is a hash of exactly that, so the
same configuration always writes into the same set and a new one (Google's API in December, the
distilled successor in January, a new prompt or model) adds rows beside the old ones. Each table
keeps one row per (day, post, label set); `label_sets` describes every set, and the view
`<table>_preferred` gives one row per post by the ranks in `labeler_preferences`.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from bsky_assets.db.client import PostgresClient
from bsky_assets.db.tables import LABEL_SETS, LABELER_PREFERENCES, TableSpec, quote

NOT_SENT_LABELER = "bsky_assets.valid_posts"  # rows written for invalid posts, before any call

# Default preference when a post carries several sets: Google's real scores, then a distilled
# successor, then anything else; among equals the newest. Researchers change the ranks in SQL.
DEFAULT_PREFERENCES: dict[str, list[tuple[str, int]]] = {
    "perspective_labels": [
        ("google-perspective-api", 1),
        ("bsky-perspective-server/distilled-%", 2),
    ],
    "sociopolitical_labels": [],
}


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


def register(client: PostgresClient, label_set: LabelSet) -> None:
    client.insert_rows(LABEL_SETS, [label_set.row()])


def ensure_label_table(
    client: PostgresClient,
    spec: TableSpec,
    current: LabelSet,
    legacy: Callable[[dict[str, Any]], LabelSet],
) -> None:
    """Create or migrate the label table, register `current`, and (re)create its view."""
    client.ensure_table(spec)
    _migrate_to_label_sets(client, spec, current, legacy)
    register(client, current)
    client.insert_rows(
        LABELER_PREFERENCES,
        [
            {"label_table": spec.name, "labeler_pattern": pattern, "rank": rank}
            for pattern, rank in DEFAULT_PREFERENCES.get(spec.name, [])
        ],
    )
    _create_preferred_view(client, spec)


def _primary_key(client: PostgresClient, spec: TableSpec) -> list[str]:
    rows = client.fetch_all(
        "SELECT a.attname FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid "
        "AND a.attnum = ANY(i.indkey) WHERE i.indrelid = %s::regclass AND i.indisprimary "
        "ORDER BY array_position(i.indkey, a.attnum)",
        (f"{client.schema}.{spec.name}",),
    )
    return [r[0] for r in rows]


def _migrate_to_label_sets(
    client: PostgresClient,
    spec: TableSpec,
    current: LabelSet,
    legacy: Callable[[dict[str, Any]], LabelSet],
) -> None:
    """Move a table keyed by (day, post) to (day, post, label set) in place, keeping every row.

    Rows are assigned to the set their provenance columns describe (`legacy` decides, so a
    configuration that is still in use adopts its own rows and a re-run sends nothing); rows of
    invalid posts join the set that labelled most of their day. One transaction, under an
    advisory lock, so concurrent runs migrate once.
    """
    if _primary_key(client, spec) == list(spec.primary_key):
        return
    table = client.qualified(spec.name)
    provenance = [c for c in ("labeler", "labeler_version", "attribute_set", "prompt_version",
                              "llm_model_name") if c in spec.column_names]  # fmt: skip
    with client.engine.begin() as conn:
        cur = conn.connection.driver_connection.cursor()
        cur.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (f"migrate {table}",))
        cur.execute(
            "SELECT a.attname FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid "
            "AND a.attnum = ANY(i.indkey) WHERE i.indrelid = %s::regclass AND i.indisprimary",
            (f"{client.schema}.{spec.name}",),
        )
        if "label_set" in {r[0] for r in cur.fetchall()}:
            return  # another run migrated it while we waited
        names = ", ".join(quote(c) for c in provenance)
        cur.execute(
            f"SELECT DISTINCT {names} FROM {table} WHERE label_set IS NULL AND labeler <> %s",
            (NOT_SENT_LABELER,),
        )
        found: list[LabelSet] = []
        for values in cur.fetchall():
            row = dict(zip(provenance, values, strict=True))
            label_set = legacy(row)
            found.append(label_set)
            match = " AND ".join(f"{quote(c)} IS NOT DISTINCT FROM %s" for c in provenance)
            cur.execute(
                f"UPDATE {table} SET label_set = %s WHERE label_set IS NULL AND {match}",
                (label_set.id, *values),
            )
        # Invalid posts' rows join the set that labelled most of their day.
        cur.execute(
            f"UPDATE {table} t SET label_set = d.label_set FROM (SELECT DISTINCT ON "
            f"(partition_date) partition_date, label_set FROM {table} WHERE label_set IS NOT NULL "
            "GROUP BY 1, 2 ORDER BY partition_date, count(*) DESC) d "
            "WHERE t.label_set IS NULL AND t.partition_date = d.partition_date"
        )
        cur.execute(f"UPDATE {table} SET label_set = %s WHERE label_set IS NULL", (current.id,))
        cur.execute(f"ALTER TABLE {table} ALTER COLUMN label_set SET NOT NULL")
        cur.execute(
            "SELECT conname FROM pg_constraint WHERE conrelid = %s::regclass AND contype = 'p'",
            (f"{client.schema}.{spec.name}",),
        )
        for (constraint,) in cur.fetchall():
            cur.execute(f"ALTER TABLE {table} DROP CONSTRAINT {quote(constraint)}")
        pk = ", ".join(quote(c) for c in spec.primary_key)
        cur.execute(f"ALTER TABLE {table} ADD PRIMARY KEY ({pk})")
    for label_set in found:
        register(client, label_set)


def _create_preferred_view(client: PostgresClient, spec: TableSpec) -> None:
    """`<table>_preferred`: per post, a successful row before a failed one, then the labeler
    with the best rank in `labeler_preferences` (LIKE patterns), then the newest."""
    view = client.qualified(f"{spec.name}_preferred")
    preferences = client.qualified(LABELER_PREFERENCES.name)
    table = client.qualified(spec.name)
    columns = ", ".join(f"l.{quote(c)}" for c in spec.column_names)
    sql = (
        f"CREATE OR REPLACE VIEW {view} AS SELECT DISTINCT ON (l.partition_date, l.uri) "
        f"{columns}, p.rank AS preference_rank FROM {table} l LEFT JOIN LATERAL (SELECT "
        f"min(rank) AS rank FROM {preferences} WHERE label_table = '{spec.name}' "
        "AND l.labeler LIKE labeler_pattern) p ON true "
        "ORDER BY l.partition_date, l.uri, l.was_successfully_labeled DESC, "
        "p.rank NULLS LAST, l.label_timestamp DESC"
    )
    with client.engine.begin() as conn:
        cur = conn.connection.driver_connection.cursor()
        cur.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (f"view {view}",))
        try:
            cur.execute("SAVEPOINT replace_view")
            cur.execute(sql)
        except Exception:  # columns changed shape: replace cannot; drop and create
            cur.execute("ROLLBACK TO SAVEPOINT replace_view")
            cur.execute(f"DROP VIEW IF EXISTS {view}")
            cur.execute(sql)
