"""The queries on label sets: their registry, labeller preferences, the move of old tables onto
label sets, and the one-row-per-post preferred views."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from bsky_assets.lib.db.client import PostgresClient
from bsky_assets.lib.db.tables import TableSpec, quote
from bsky_assets.lib.labelling.tables import LABEL_SETS, LABELER_PREFERENCES


def register_label_set(client: PostgresClient, row: Mapping[str, Any]) -> None:
    client.insert_rows(LABEL_SETS, [dict(row)])


def label_set_labeler(client: PostgresClient, label_set: str) -> tuple[str, str] | None:
    """(labeler, labeler_version) the registry records for a label set."""
    client.ensure_table(LABEL_SETS)
    rows = client.fetch_all(
        f"SELECT labeler, labeler_version FROM {client.qualified(LABEL_SETS.name)} "
        "WHERE label_set = %s",
        (label_set,),
    )
    return (str(rows[0][0]), str(rows[0][1])) if rows else None


def add_default_preferences(
    client: PostgresClient, table: str, preferences: Sequence[tuple[str, int]]
) -> None:
    """Insert default labeler ranks for a table; ranks researchers changed are kept."""
    client.insert_rows(
        LABELER_PREFERENCES,
        [{"label_table": table, "labeler_pattern": p, "rank": r} for p, r in preferences],
    )


def primary_key(client: PostgresClient, spec: TableSpec) -> list[str]:
    rows = client.fetch_all(
        "SELECT a.attname FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid "
        "AND a.attnum = ANY(i.indkey) WHERE i.indrelid = %s::regclass AND i.indisprimary "
        "ORDER BY array_position(i.indkey, a.attnum)",
        (f"{client.schema}.{spec.name}",),
    )
    return [r[0] for r in rows]


def migrate_to_label_sets(
    client: PostgresClient,
    spec: TableSpec,
    current: str,
    not_sent_labeler: str,
    assign: Any,  # Callable[[dict[str, Any]], str]: a legacy row's provenance → its label set id
) -> list[dict[str, Any]]:
    """Move a table keyed by (day, post) to (day, post, label set) in place, keeping every row.

    Rows are assigned to the set their provenance columns describe (`assign` decides, so a
    configuration that is still in use adopts its own rows and a re-run sends nothing); rows of
    invalid posts join the set that labelled most of their day. One transaction, under an
    advisory lock, so concurrent runs migrate once. Returns the provenance of every legacy set.
    """
    table = client.qualified(spec.name)
    provenance = [c for c in ("labeler", "labeler_version", "attribute_set", "prompt_version",
                              "llm_model_name") if c in spec.column_names]  # fmt: skip
    found: list[dict[str, Any]] = []
    with client.engine.begin() as conn:
        cur = conn.connection.driver_connection.cursor()
        cur.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (f"migrate {table}",))
        cur.execute(
            "SELECT a.attname FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid "
            "AND a.attnum = ANY(i.indkey) WHERE i.indrelid = %s::regclass AND i.indisprimary",
            (f"{client.schema}.{spec.name}",),
        )
        if "label_set" in {r[0] for r in cur.fetchall()}:
            return []  # another run migrated it while we waited
        names = ", ".join(quote(c) for c in provenance)
        cur.execute(
            f"SELECT DISTINCT {names} FROM {table} WHERE label_set IS NULL AND labeler <> %s",
            (not_sent_labeler,),
        )
        for values in cur.fetchall():
            row = dict(zip(provenance, values, strict=True))
            found.append(row)
            match = " AND ".join(f"{quote(c)} IS NOT DISTINCT FROM %s" for c in provenance)
            cur.execute(
                f"UPDATE {table} SET label_set = %s WHERE label_set IS NULL AND {match}",
                (assign(row), *values),
            )
        # Invalid posts' rows join the set that labelled most of their day.
        cur.execute(
            f"UPDATE {table} t SET label_set = d.label_set FROM (SELECT DISTINCT ON "
            f"(partition_date) partition_date, label_set FROM {table} WHERE label_set IS NOT NULL "
            "GROUP BY 1, 2 ORDER BY partition_date, count(*) DESC) d "
            "WHERE t.label_set IS NULL AND t.partition_date = d.partition_date"
        )
        cur.execute(f"UPDATE {table} SET label_set = %s WHERE label_set IS NULL", (current,))
        cur.execute(f"ALTER TABLE {table} ALTER COLUMN label_set SET NOT NULL")
        cur.execute(
            "SELECT conname FROM pg_constraint WHERE conrelid = %s::regclass AND contype = 'p'",
            (f"{client.schema}.{spec.name}",),
        )
        for (constraint,) in cur.fetchall():
            cur.execute(f"ALTER TABLE {table} DROP CONSTRAINT {quote(constraint)}")
        pk = ", ".join(quote(c) for c in spec.primary_key)
        cur.execute(f"ALTER TABLE {table} ADD PRIMARY KEY ({pk})")
    return found


def create_preferred_view(client: PostgresClient, spec: TableSpec) -> None:
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


def view_is_current(client: PostgresClient, spec: TableSpec) -> bool:
    """Whether `<table>_preferred` exists with exactly the table's columns (and the rank)."""
    rows = client.fetch_all(
        "SELECT column_name FROM information_schema.columns WHERE table_schema = %s "
        "AND table_name = %s ORDER BY ordinal_position",
        (client.schema, f"{spec.name}_preferred"),
    )
    return [r[0] for r in rows] == [*spec.column_names, "preference_rank"]
