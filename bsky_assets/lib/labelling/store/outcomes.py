"""The queries on each post's row: rows for posts never sent, what is pending, and what a
day holds (outcomes, counts, histograms). See the package docstring for what a row means."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from datetime import date
from typing import Any

import polars as pl

from bsky_assets.lib.db.client import PostgresClient
from bsky_assets.lib.db.tables import TableSpec, quote
from bsky_assets.lib.labelling.source import PostSource

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
