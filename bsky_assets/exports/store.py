"""The SQL the export needs: a day's rows as a CSV stream, its fingerprint, the lock, the record.

Rows leave Postgres through `COPY (SELECT …) TO STDOUT (FORMAT csv)`, parsed by pyarrow's CSV
reader in C++: no Python object per value, and memory bounded by the reader's block. Timestamps
travel as epoch microseconds and JSON as text, so the CSV carries nothing a parser could read
two ways. Identifiers come from the table specs (validated there); values are bound parameters.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
from collections.abc import Iterator, Sequence
from datetime import UTC, date, datetime
from typing import Any

from bsky_assets.exports.datasets import Dataset, ExportColumn, day_columns, label_dataset
from bsky_assets.exports.sources import POSTS, VALID
from bsky_assets.exports.tables import EXPORT_FILES
from bsky_assets.lib.db.client import PostgresClient
from bsky_assets.lib.db.locks import advisory_lock
from bsky_assets.lib.db.tables import PARTITION_COLUMN, TableSpec, quote
from bsky_assets.lib.labelling.tables import LABEL_SETS, LABELER_PREFERENCES

# Bump when the files' layout or columns change meaning: every day is then written again.
FORMAT_VERSION = 1


def _expression(column: ExportColumn) -> str:
    value = f"{column.relation}.{quote(column.source)}"  # relation: an alias of day_query
    if column.pg_type == "timestamptz":
        value = f"(extract(epoch FROM {value}) * 1000000)::bigint"
    elif column.pg_type == "jsonb":
        value = f"{value}::text"
    return f"{value} AS {quote(column.name)}"


def _select(columns: tuple[ExportColumn, ...]) -> str:
    return ", ".join(_expression(c) for c in columns)


def day_query(
    client: PostgresClient,
    label_tables: Sequence[TableSpec],
    include_text: bool,
    lower: bool = False,
    upper: bool = False,
) -> str:
    """The day's posts with every label table's preferred row and label set, in uri order: one
    pass that every dataset of the day is cut from. Parameters: the day, and the uri range
    `[low, high)` when bounded; the range is repeated on each view so Postgres evaluates the
    views for that range only."""

    def within(alias: str) -> str:
        return (f" AND {alias}.uri >= %(low)s" if lower else "") + (
            f" AND {alias}.uri < %(high)s" if upper else ""
        )

    sets = client.qualified(LABEL_SETS.name)
    joins = [
        f"LEFT JOIN {client.qualified(VALID.name)} v "
        f"ON v.{PARTITION_COLUMN} = p.{PARTITION_COLUMN} AND v.uri = p.uri"
    ]
    for i, spec in enumerate(label_tables):
        joins.append(
            f"LEFT JOIN {client.qualified(f'{spec.name}_preferred')} l{i} "
            f"ON l{i}.{PARTITION_COLUMN} = %(day)s AND l{i}.uri = p.uri{within(f'l{i}')} "
            f"LEFT JOIN {sets} s{i} ON s{i}.label_set = l{i}.label_set"
        )
    return (
        f"SELECT {_select(day_columns(label_tables, include_text))} "
        f"FROM {client.qualified(POSTS.name)} p "
        f"{' '.join(joins)} WHERE p.{PARTITION_COLUMN} = %(day)s{within('p')} ORDER BY p.uri"
    )


def uri_splits(client: PostgresClient, day: date, parts: int) -> list[str]:
    """The uris that cut the day's posts into `parts` ranges of about equal size."""
    posts = client.qualified(POSTS.name)
    n = client.fetch_all(f"SELECT count(*) FROM {posts} WHERE {PARTITION_COLUMN} = %s", (day,))
    total = int(n[0][0])
    splits = []
    for k in range(1, parts):
        rows = client.fetch_all(
            f"SELECT uri FROM {posts} WHERE {PARTITION_COLUMN} = %s ORDER BY uri OFFSET %s LIMIT 1",
            (day, total * k // parts),
        )
        if rows and rows[0][0] not in splits and total >= parts * 1_000:
            splits.append(rows[0][0])
    return splits


def orphan_uris(client: PostgresClient, spec: TableSpec, day: date) -> list[str]:
    """Posts a label table has rows for on the day that are not among the day's posts (a
    re-ingest dropped them): still in the table's preferred view, so still in its dataset."""
    posts = client.qualified(POSTS.name)
    rows = client.fetch_all(
        f"SELECT DISTINCT l.uri FROM {client.qualified(spec.name)} l "
        f"WHERE l.{PARTITION_COLUMN} = %(day)s AND NOT EXISTS (SELECT 1 FROM {posts} p "
        f"WHERE p.{PARTITION_COLUMN} = %(day)s AND p.uri = l.uri) ORDER BY 1",
        {"day": day},
    )
    return [r[0] for r in rows]


def orphans_query(client: PostgresClient, spec: TableSpec) -> str:
    """Those posts' preferred rows, in the columns of the table's own dataset (parameters: the
    day and the uris)."""
    return (
        f"SELECT {_select(label_dataset(spec).columns)} "
        f"FROM {client.qualified(f'{spec.name}_preferred')} l "
        f"JOIN {client.qualified(LABEL_SETS.name)} s ON s.label_set = l.label_set "
        f"WHERE l.{PARTITION_COLUMN} = %(day)s AND l.uri = ANY(%(uris)s) ORDER BY l.uri"
    )


class CopyStream(io.RawIOBase):
    """A COPY TO STDOUT as a readable binary stream (what pyarrow's CSV reader consumes).
    psycopg hands over a row at a time; a read joins as many as fill the reader's buffer."""

    def __init__(self, chunks: Iterator[memoryview]) -> None:
        self._chunks = chunks
        self._left = b""

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        wanted = len(buffer)
        parts, size = [self._left], len(self._left)
        while size < wanted:
            chunk = next(self._chunks, None)
            if chunk is None:
                break
            parts.append(chunk)
            size += len(chunk)
        data = b"".join(parts)
        n = min(wanted, len(data))
        buffer[:n] = data[:n]
        self._left = data[n:]
        return n


@contextlib.contextmanager
def copy_csv(client: PostgresClient, query: str, params: dict[str, Any]) -> Iterator[CopyStream]:
    """Stream a query's rows as CSV (no header) through COPY, in one transaction."""
    with client.engine.connect() as conn:
        cursor = conn.connection.driver_connection.cursor()
        with cursor.copy(f"COPY ({query}) TO STDOUT (FORMAT csv)", params) as copy:
            yield CopyStream(iter(copy))


# -- fingerprints: what the day's preferred rows depend on, cheaply ------------------------------


def _table_state(client: PostgresClient, spec: TableSpec, day: date) -> dict[str, Any]:
    """A label table's day: rows and newest write per label set, the posts it covers, and the
    sum of the rows' xmin (any insert or update of a row changes it), plus the preferences the
    view ranks by. The preferred view is a function of exactly these."""
    table = client.qualified(spec.name)
    per_set = client.fetch_all(
        f"SELECT label_set, count(*), max(label_timestamp), sum(xmin::text::bigint) FROM {table} "
        f"WHERE {PARTITION_COLUMN} = %s GROUP BY label_set ORDER BY label_set",
        (day,),
    )
    posts = client.fetch_all(
        f"SELECT count(DISTINCT uri) FROM {table} WHERE {PARTITION_COLUMN} = %s", (day,)
    )[0][0]
    preferences = client.fetch_all(
        f"SELECT labeler_pattern, rank FROM {client.qualified(LABELER_PREFERENCES.name)} "
        "WHERE label_table = %s ORDER BY labeler_pattern",
        (spec.name,),
    )
    newest = max((row[2] for row in per_set), default=None)
    return {
        "rows": int(posts),
        "label_sets": {s: [int(n), str(ts), str(x)] for s, n, ts, x in per_set},
        "preferences": [[p, int(r)] for p, r in preferences],
        "labels_changed_at": newest.astimezone(UTC).isoformat() if newest else None,
    }


def _posts_state(client: PostgresClient, day: date) -> dict[str, Any]:
    state = {}
    for spec in (POSTS, VALID):
        n, x = client.fetch_all(
            f"SELECT count(*), sum(xmin::text::bigint) FROM {client.qualified(spec.name)} "
            f"WHERE {PARTITION_COLUMN} = %s",
            (day,),
        )[0]
        state[spec.name] = [int(n), str(x)]
    state["rows"] = state[POSTS.name][0]
    return state


def fingerprints(
    client: PostgresClient, datasets: list[Dataset], day: date
) -> dict[str, dict[str, Any]]:
    """Per dataset: its state (rows, what changed when) and `fingerprint`, a hash of the state
    and of the columns the file has (so turning BSKY_EXPORT_TEXT on rewrites posts_labelled)."""
    tables: dict[str, dict[str, Any]] = {}
    posts: dict[str, Any] | None = None
    result = {}
    for dataset in datasets:
        state: dict[str, Any] = {}
        for spec in dataset.label_tables:
            if spec.name not in tables:
                tables[spec.name] = _table_state(client, spec, day)
            state[spec.name] = tables[spec.name]
        if dataset.reads_posts:
            posts = posts or _posts_state(client, day)
            state["posts"] = posts
            rows = posts["rows"]
        else:
            rows = state[dataset.label_tables[0].name]["rows"]
        changed = [s["labels_changed_at"] for s in state.values() if s.get("labels_changed_at")]
        canonical = json.dumps(
            [FORMAT_VERSION, dataset.name, [c.name for c in dataset.columns], state],
            sort_keys=True,
        )
        result[dataset.name] = {
            "fingerprint": hashlib.sha256(canonical.encode()).hexdigest()[:16],
            "rows": rows,
            "labels_changed_at": max(changed) if changed else None,
        }
    return result


def missing_views(client: PostgresClient, specs: Sequence[TableSpec]) -> list[str]:
    """The preferred views that do not exist yet (their label asset never ran here)."""
    names = [f"{client.schema}.{spec.name}_preferred" for spec in specs]
    found = client.fetch_all(
        "SELECT n, to_regclass(n) IS NOT NULL FROM unnest(%s::text[]) n", (names,)
    )
    return [n for n, exists in found if not exists]


# -- one export of a day at a time, and what was exported where ---------------------------------


@contextlib.contextmanager
def one_export(client: PostgresClient, destination: str, day: date) -> Iterator[None]:
    """One run at a time exports a day to a destination (an advisory lock on a connection of
    its own, gone with it if the run dies), so a run may clear the day's staging leftovers."""
    key = f"bsky_assets:export:{client.schema}:{destination}:{day.isoformat()}"
    with advisory_lock(client, key):
        yield


def record_files(
    client: PostgresClient, destination: str, day: date, files: list[dict[str, Any]]
) -> None:
    now = datetime.now(UTC)
    client.insert_rows(
        EXPORT_FILES,
        [
            {
                PARTITION_COLUMN: day,
                "destination": destination,
                "dataset": f["dataset"],
                "fingerprint": f["fingerprint"],
                "rows": f["rows"],
                "bytes": f["bytes"],
                "labelers": json.dumps(f["labelers"]),
                "exported_at": now,
            }
            for f in files
        ],
        on_conflict="update",
    )


def exported_labelers(client: PostgresClient, destination: str) -> list[tuple[date, str, list]]:
    """(day, dataset, rows by labeller) of every file exported to the destination."""
    client.ensure_table(EXPORT_FILES)
    rows = client.fetch_all(
        f"SELECT {PARTITION_COLUMN}, dataset, labelers::text "
        f"FROM {client.qualified(EXPORT_FILES.name)} WHERE destination = %s "
        f"ORDER BY {PARTITION_COLUMN}, dataset",
        (destination,),
    )
    return [(d, name, json.loads(labelers)) for d, name, labelers in rows]
