"""What every label asset shares: its row shape, the rows for invalid posts, what is pending.

Label assets are incremental and resumable: only posts without a final row are sent, results are
upserted as each batch completes (a crash loses at most the batches in flight), and a re-run of a
finished day sends nothing. A final row is a success, a permanent failure, or an invalid post;
`retryable` rows (retries exhausted) are sent again on the next run.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator, Mapping
from datetime import UTC, date, datetime
from typing import Any

import polars as pl

from bsky_assets.db.client import PostgresClient, execute
from bsky_assets.db.tables import (
    PARTITION,
    UTC_TIMESTAMP,
    VALID_POSTS,
    Column,
    TableSpec,
    WriteMode,
    quote,
)

INVALID_REASONS = ("text_too_short", "text_too_long")
NOT_SENT_LABELER = "bsky_assets.valid_posts"  # rows written for invalid posts, before any call


def label_table(name: str, columns: tuple[Column, ...]) -> TableSpec:
    """A label table: the common columns, then the asset's own labels and provenance."""
    return TableSpec(
        name=name,
        columns=(
            PARTITION,
            Column("uri", "text", pl.String(), nullable=False),
            Column("was_successfully_labeled", "boolean", pl.Boolean(), nullable=False),
            Column("reason", "text", pl.String()),
            Column("retryable", "boolean", pl.Boolean(), nullable=False),
            Column("attempts", "integer", pl.Int32()),
            Column("label_timestamp", "timestamptz", UTC_TIMESTAMP, nullable=False),
            *columns,
        ),
        primary_key=("partition_date", "uri"),
        write_mode=WriteMode.UPSERT,
    )


def write_invalid_post_rows(
    client: PostgresClient, spec: TableSpec, day: date, provenance: Mapping[str, str]
) -> int:
    """Failed rows, with the validity reason, for every invalid post of the day (idempotent).

    Runs in SQL so no post text passes through Python; rows already carrying the same reason are
    left untouched, so re-runs change nothing.
    """
    client.ensure_table(spec)
    client.ensure_table(VALID_POSTS)
    provenance_columns = list(provenance)
    columns = [
        "partition_date", "uri", "was_successfully_labeled", "reason", "retryable",
        "label_timestamp", *provenance_columns,
    ]  # fmt: skip
    placeholders = ", ".join(["%s"] * len(provenance_columns))
    updates = ", ".join(
        f"{quote(c)} = EXCLUDED.{quote(c)}" for c in spec.column_names if c not in spec.primary_key
    )
    target = client.qualified(spec.name)
    sql = (
        f"INSERT INTO {target} ({', '.join(quote(c) for c in columns)}) "
        f"SELECT partition_date, uri, false, invalid_reason, false, now()"
        f"{', ' + placeholders if placeholders else ''} "
        f"FROM {client.qualified(VALID_POSTS.name)} WHERE partition_date = %s AND NOT is_valid "
        f"ON CONFLICT (partition_date, uri) DO UPDATE SET {updates} "
        f"WHERE {target}.reason IS DISTINCT FROM EXCLUDED.reason "
        f"OR {target}.was_successfully_labeled"
    )
    return execute(client, sql, (*provenance.values(), day))


def _pending_where(client: PostgresClient, spec: TableSpec) -> str:
    labels = client.qualified(spec.name)
    valid = client.qualified(VALID_POSTS.name)
    reasons = ", ".join(f"'{r}'" for r in INVALID_REASONS)  # constants, not input
    return (
        f"FROM {valid} v LEFT JOIN {labels} l "
        "ON l.partition_date = v.partition_date AND l.uri = v.uri "
        "WHERE v.partition_date = %s AND v.is_valid "
        f"AND (l.uri IS NULL OR l.retryable OR l.reason IN ({reasons}))"
    )


def count_pending(client: PostgresClient, spec: TableSpec, day: date) -> int:
    return int(client.fetch_all(f"SELECT count(*) {_pending_where(client, spec)}", (day,))[0][0])


def pending_posts(
    client: PostgresClient, spec: TableSpec, day: date, chunk_rows: int = 10_000
) -> Iterator[pl.DataFrame]:
    """Valid posts of the day that still need a label, streamed in uri order."""
    sql = f"SELECT v.uri, v.text, v.langs::text {_pending_where(client, spec)} ORDER BY v.uri"
    schema = {"uri": pl.String(), "text": pl.String(), "langs": pl.String()}
    return client.iter_query(sql, (day,), schema, chunk_rows)


class LabelWriter:
    """Upserts label rows as results arrive; keeps counts for the materialization metadata."""

    def __init__(
        self,
        client: PostgresClient,
        spec: TableSpec,
        day: date,
        provenance: Mapping[str, Any],
    ) -> None:
        self.client = client
        self.spec = spec
        self.day = day
        self.provenance = dict(provenance)
        self.outcomes: Counter[str] = Counter()
        self.rows_written = 0

    def write(self, rows: list[dict[str, Any]]) -> None:
        if not rows:
            return
        now = datetime.now(UTC)
        for row in rows:
            row.setdefault("label_timestamp", now)
            row.update(self.provenance)
            self.outcomes["labelled" if row["was_successfully_labeled"] else row["reason"]] += 1
        columns = list(rows[0])
        frame = pl.DataFrame(rows, schema=self.spec.polars_schema(columns))
        self.client.write_partition(self.spec, self.day, frame, WriteMode.UPSERT)
        self.rows_written += len(rows)


def partition_outcomes(client: PostgresClient, spec: TableSpec, day: date) -> dict[str, int]:
    """Rows of the whole partition by outcome: `labelled` or the failure reason."""
    rows = client.fetch_all(
        f"SELECT CASE WHEN was_successfully_labeled THEN 'labelled' ELSE reason END, count(*) "
        f"FROM {client.qualified(spec.name)} WHERE partition_date = %s GROUP BY 1 ORDER BY 1",
        (day,),
    )
    return {str(outcome): int(n) for outcome, n in rows}
