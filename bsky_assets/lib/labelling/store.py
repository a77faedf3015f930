"""Every query the label tables need, behind named functions: the engine's SQL, in one place.

Label tables are specs built by `db.tables.label_table`: keyed by (day, post, label set), each
row recording whether the post was labelled, why not, and which text it labelled (its sha256).
A row is *final* when it is a success, a permanent failure or an invalid post; `retryable` rows
(retries exhausted) and rows whose text has changed since are pending again.

Identifiers come from specs (validated there); every value is a bound parameter.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from datetime import date
from typing import Any

import polars as pl

from bsky_assets.lib.db.client import PostgresClient
from bsky_assets.lib.db.tables import TableSpec, quote
from bsky_assets.lib.labelling.source import PostSource
from bsky_assets.lib.labelling.tables import LABEL_SETS, LABELER_PREFERENCES, LABELLING_LEASES

TEXT_SHA256_SQL = "encode(sha256(convert_to(v.text, 'UTF8')), 'hex')"


# -- rows for posts that are never sent ------------------------------------------------------


def write_invalid_post_rows(
    client: PostgresClient,
    spec: TableSpec,
    source: PostSource,
    label_set: str,
    day: date,
    provenance: Mapping[str, Any],
) -> int:
    """Failed rows, with the validity reason, for every invalid post of the day (idempotent).

    Runs in SQL so no post text passes through Python; rows already carrying the same reason are
    left untouched, so re-runs change nothing.
    """
    client.ensure_table(source.table)
    provenance_columns = list(provenance)
    columns = [
        "partition_date", "uri", "label_set", "was_successfully_labeled", "reason", "retryable",
        "label_timestamp", "text_sha256", *provenance_columns,
    ]  # fmt: skip
    placeholders = "".join(", %s" for _ in provenance_columns)
    updates = ", ".join(
        f"{quote(c)} = EXCLUDED.{quote(c)}" for c in spec.column_names if c not in spec.primary_key
    )
    target = client.qualified(spec.name)
    sql = (
        f"INSERT INTO {target} ({', '.join(quote(c) for c in columns)}) "
        f"SELECT partition_date, uri, %s, false, invalid_reason, false, now(), "
        f"{TEXT_SHA256_SQL}{placeholders} "
        f"FROM {client.qualified(source.table.name)} v WHERE partition_date = %s AND NOT is_valid "
        f"ON CONFLICT (partition_date, uri, label_set) DO UPDATE SET {updates} "
        f"WHERE {target}.reason IS DISTINCT FROM EXCLUDED.reason "
        f"OR {target}.was_successfully_labeled"
    )
    return client.execute(sql, (label_set, *provenance.values(), day))


# -- what is pending -------------------------------------------------------------------------


def _pending_where(
    client: PostgresClient, spec: TableSpec, source: PostSource, unless: str | None
) -> str:
    """Valid posts `v` without a final row from the set; `unless` excludes more (in flight)."""
    labels = client.qualified(spec.name)
    posts = client.qualified(source.table.name)
    return (
        f"FROM {posts} v LEFT JOIN {labels} l ON l.partition_date = v.partition_date "
        "AND l.uri = v.uri AND l.label_set = %(label_set)s "
        "WHERE v.partition_date = %(day)s AND v.is_valid AND (l.uri IS NULL OR l.retryable "
        "OR l.reason = ANY(%(invalid_reasons)s) "
        f"OR l.text_sha256 IS DISTINCT FROM {TEXT_SHA256_SQL} AND l.text_sha256 IS NOT NULL)"
        + (f" AND {unless}" if unless else "")
    )


def _pending_params(source: PostSource, label_set: str, day: date) -> dict[str, Any]:
    return {"label_set": label_set, "day": day, "invalid_reasons": list(source.invalid_reasons)}


def count_pending(
    client: PostgresClient,
    spec: TableSpec,
    source: PostSource,
    label_set: str,
    day: date,
    unless: str | None = None,
) -> int:
    sql = f"SELECT count(*) {_pending_where(client, spec, source, unless)}"
    return int(client.fetch_all(sql, _pending_params(source, label_set, day))[0][0])


def pending_posts(
    client: PostgresClient,
    spec: TableSpec,
    source: PostSource,
    label_set: str,
    day: date,
    unless: str | None = None,
    page_rows: int = 10_000,
) -> Iterator[pl.DataFrame]:
    """Valid posts of the day that still need a label from this set, in uri order, a page at a
    time (each page its own query: a database restart mid-run costs a retry, not the run)."""
    sql = (
        f"SELECT v.uri, v.text, v.langs::text {_pending_where(client, spec, source, unless)} "
        "AND v.uri > %(after)s ORDER BY v.uri LIMIT %(limit)s"
    )
    schema = {"uri": pl.String(), "text": pl.String(), "langs": pl.String()}
    params = _pending_params(source, label_set, day)
    return client.iter_pages(sql, params, schema, "uri", page_rows)


# -- what a day holds ------------------------------------------------------------------------


def partition_outcomes(
    client: PostgresClient, spec: TableSpec, label_set: str, day: date
) -> dict[str, int]:
    """The set's rows of the whole partition by outcome: `labelled` or the failure reason."""
    rows = client.fetch_all(
        f"SELECT CASE WHEN was_successfully_labeled THEN 'labelled' ELSE reason END, count(*) "
        f"FROM {client.qualified(spec.name)} WHERE partition_date = %s AND label_set = %s "
        "GROUP BY 1 ORDER BY 1",
        (day, label_set),
    )
    return {str(outcome): int(n) for outcome, n in rows}


def missing_and_orphaned(
    client: PostgresClient, spec: TableSpec, source: PostSource, label_set: str, day: date
) -> tuple[int, int]:
    """(posts of the day without a row from the set, label rows of the day without a post)."""
    params = {"day": day, "label_set": label_set}
    labels, posts = client.qualified(spec.name), client.qualified(source.table.name)
    missing = client.fetch_all(
        f"SELECT count(*) FROM {posts} v LEFT JOIN {labels} l ON l.partition_date = "
        "v.partition_date AND l.uri = v.uri AND l.label_set = %(label_set)s "
        "WHERE v.partition_date = %(day)s AND l.uri IS NULL",
        params,
    )[0][0]
    orphans = client.fetch_all(
        f"SELECT count(*) FROM {labels} l LEFT JOIN {posts} v ON v.partition_date = "
        "l.partition_date AND v.uri = l.uri WHERE l.partition_date = %(day)s AND v.uri IS NULL",
        params,
    )[0][0]
    return int(missing), int(orphans)


def labelled_and_failed(
    client: PostgresClient,
    spec: TableSpec,
    source: PostSource,
    label_set: str,
    day: date,
    out_of_scope: Sequence[str] = (),
) -> tuple[int, int]:
    """(labelled rows, rows that failed for a reason other than the post's validity or one of
    the labeller's `out_of_scope` reasons: prefixes of reasons that describe the post, not a
    failure, e.g. a language the labeller does not read)."""
    labelled, failed = client.fetch_all(
        "SELECT count(*) FILTER (WHERE was_successfully_labeled), count(*) FILTER (WHERE "
        "NOT was_successfully_labeled AND NOT reason = ANY(%(invalid)s) "
        "AND NOT reason LIKE ANY(%(out_of_scope)s)) "
        f"FROM {client.qualified(spec.name)} "
        "WHERE partition_date = %(day)s AND label_set = %(label_set)s",
        {
            "day": day,
            "label_set": label_set,
            "invalid": list(source.invalid_reasons),
            "out_of_scope": [f"{prefix}%" for prefix in out_of_scope],
        },
    )[0]
    return int(labelled), int(failed)


def labelled_rows_with_text(
    client: PostgresClient,
    spec: TableSpec,
    source: PostSource,
    label_set: str,
    day: date,
    columns: Sequence[str],
    limit: int,
) -> list[tuple]:
    """The first `limit` labelled rows of the set and day: uri, text, then `columns`."""
    selected = ", ".join(f"l.{quote(c)}" for c in columns)
    return client.fetch_all(
        f"SELECT l.uri, v.text, {selected} FROM {client.qualified(spec.name)} l "
        f"JOIN {client.qualified(source.table.name)} v ON v.partition_date = l.partition_date "
        "AND v.uri = l.uri WHERE l.partition_date = %s AND l.label_set = %s "
        "AND l.was_successfully_labeled ORDER BY l.uri LIMIT %s",
        (day, label_set, limit),
    )


def column_counts(
    client: PostgresClient, spec: TableSpec, label_set: str, day: date, columns: Sequence[str]
) -> tuple[int, dict[str, tuple[int, int]]]:
    """(rows not labelled, per column: (labelled rows with a value, labelled rows without))."""
    counts = ", ".join(
        f"count({quote(c)}) FILTER (WHERE was_successfully_labeled), "
        f"count(*) FILTER (WHERE was_successfully_labeled AND {quote(c)} IS NULL)"
        for c in columns
    )
    row = client.fetch_all(
        f"SELECT count(*) FILTER (WHERE NOT was_successfully_labeled), {counts} "
        f"FROM {client.qualified(spec.name)} WHERE partition_date = %s AND label_set = %s",
        (day, label_set),
    )[0]
    return int(row[0]), {
        column: (int(row[1 + 2 * i]), int(row[2 + 2 * i])) for i, column in enumerate(columns)
    }


def value_counts(
    client: PostgresClient, spec: TableSpec, label_set: str, day: date, column: str
) -> dict[Any, int]:
    """How many labelled rows of the set and day carry each value of `column` (nulls too)."""
    rows = client.fetch_all(
        f"SELECT {quote(column)}, count(*) FROM {client.qualified(spec.name)} "
        "WHERE partition_date = %s AND label_set = %s AND was_successfully_labeled "
        "GROUP BY 1 ORDER BY 1 NULLS FIRST",
        (day, label_set),
    )
    return {value: int(n) for value, n in rows}


def histogram(
    client: PostgresClient,
    spec: TableSpec,
    label_set: str,
    day: date,
    column: str,
    low: float,
    high: float,
    bins: int,
) -> list[int]:
    """Counts of `column` in `bins` equal bins over [low, high] (the top edge in the last bin);
    every bin, empty ones included."""
    rows = client.fetch_all(
        f"SELECT least(width_bucket({quote(column)}, %s, %s, %s), %s), count(*) "
        f"FROM {client.qualified(spec.name)} WHERE partition_date = %s AND label_set = %s "
        f"AND {quote(column)} IS NOT NULL GROUP BY 1",
        (low, high, bins, bins, day, label_set),
    )
    counts = [0] * bins
    for bucket, n in rows:
        counts[min(max(int(bucket), 1), bins) - 1] += int(n)
    return counts


def count_outside(
    client: PostgresClient,
    spec: TableSpec,
    label_set: str,
    day: date,
    column: str,
    low: float,
    high: float,
) -> int:
    """The set's rows of the day whose `column` is outside [low, high] or not a number."""
    name = quote(column)
    return int(
        client.fetch_all(
            f"SELECT count(*) FROM {client.qualified(spec.name)} WHERE partition_date = %s "
            f"AND label_set = %s AND ({name} < %s OR {name} > %s OR {name} = 'NaN'::float8)",
            (day, label_set, low, high),
        )[0][0]
    )


# -- label sets, their preferences and the one-row-per-post views ------------------------------


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


# -- the day's labelling lease -----------------------------------------------------------------


def take_lease(
    client: PostgresClient, table: str, day: date, holder: str, ttl_seconds: float
) -> str:
    """Take the (table, day) lease if it is free or its holder's heartbeat is older than
    `ttl_seconds`; return the holder now recorded (ours when we got it)."""
    client.ensure_table(LABELLING_LEASES)
    rows = client.execute_returning(
        f"INSERT INTO {client.qualified(LABELLING_LEASES.name)} AS l "
        "(label_table, partition_date, holder, acquired_at, heartbeat_at) "
        "VALUES (%(table)s, %(day)s, %(holder)s, now(), now()) "
        "ON CONFLICT (partition_date, label_table) DO UPDATE SET holder = EXCLUDED.holder, "
        "acquired_at = now(), heartbeat_at = now() "
        "WHERE l.holder = EXCLUDED.holder "
        "OR l.heartbeat_at < now() - make_interval(secs => %(ttl)s) RETURNING holder",
        {"table": table, "day": day, "holder": holder, "ttl": ttl_seconds},
    )
    if rows:
        return str(rows[0][0])
    current = lease_holder(client, table, day)
    return current[0] if current else ""


def lease_holder(client: PostgresClient, table: str, day: date) -> tuple[str, float] | None:
    """(holder, seconds since its last heartbeat) of the (table, day) lease, if any."""
    client.ensure_table(LABELLING_LEASES)
    rows = client.fetch_all(
        "SELECT holder, extract(epoch FROM now() - heartbeat_at) "
        f"FROM {client.qualified(LABELLING_LEASES.name)} "
        "WHERE label_table = %s AND partition_date = %s",
        (table, day),
    )
    return (str(rows[0][0]), float(rows[0][1])) if rows else None


def renew_lease(client: PostgresClient, table: str, day: date, holder: str) -> bool:
    """Record a heartbeat; False when the lease is no longer ours."""
    return (
        client.execute(
            f"UPDATE {client.qualified(LABELLING_LEASES.name)} SET heartbeat_at = now() "
            "WHERE label_table = %s AND partition_date = %s AND holder = %s",
            (table, day, holder),
        )
        == 1
    )


def release_lease(client: PostgresClient, table: str, day: date, holder: str) -> None:
    client.execute(
        f"DELETE FROM {client.qualified(LABELLING_LEASES.name)} "
        "WHERE label_table = %s AND partition_date = %s AND holder = %s",
        (table, day, holder),
    )
