"""What every label asset shares: the rows for invalid posts, what is pending, the writer.

Label assets are incremental and resumable per label set: only posts without a final row from the
configured set are sent, results are upserted as each batch completes (a crash loses at most the
batches in flight), and a re-run of a finished day sends nothing. A final row is a success, a
permanent failure, or an invalid post; `retryable` rows (retries exhausted) are sent again, and so
is a post whose text changed since its row was written (the row records the text's sha256 and is
replaced).
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
from collections import Counter
from collections.abc import Iterator, Mapping
from datetime import UTC, date, datetime
from typing import Any

import polars as pl

from bsky_assets.assets.label_sets import LabelSet
from bsky_assets.db.client import PostgresClient, advisory_lock
from bsky_assets.db.tables import VALID_POSTS, TableSpec, WriteMode, quote
from bsky_assets.validity import INVALID_REASONS

TEXT_SHA256_SQL = "encode(sha256(convert_to(v.text, 'UTF8')), 'hex')"


def text_sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def write_invalid_post_rows(
    client: PostgresClient,
    spec: TableSpec,
    label_set: LabelSet,
    day: date,
    provenance: Mapping[str, str],
) -> int:
    """Failed rows, with the validity reason, for every invalid post of the day (idempotent).

    Runs in SQL so no post text passes through Python; rows already carrying the same reason are
    left untouched, so re-runs change nothing.
    """
    client.ensure_table(VALID_POSTS)
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
        f"FROM {client.qualified(VALID_POSTS.name)} v WHERE partition_date = %s AND NOT is_valid "
        f"ON CONFLICT (partition_date, uri, label_set) DO UPDATE SET {updates} "
        f"WHERE {target}.reason IS DISTINCT FROM EXCLUDED.reason "
        f"OR {target}.was_successfully_labeled"
    )
    return client.execute(sql, (label_set.id, *provenance.values(), day))


def _pending_where(client: PostgresClient, spec: TableSpec, unless: str | None = None) -> str:
    """Valid posts `v` without a final row from the set; `unless` excludes more (in flight)."""
    labels = client.qualified(spec.name)
    valid = client.qualified(VALID_POSTS.name)
    return (
        f"FROM {valid} v LEFT JOIN {labels} l ON l.partition_date = v.partition_date "
        "AND l.uri = v.uri AND l.label_set = %(label_set)s "
        "WHERE v.partition_date = %(day)s AND v.is_valid AND (l.uri IS NULL OR l.retryable "
        "OR l.reason = ANY(%(invalid_reasons)s) "
        f"OR l.text_sha256 IS DISTINCT FROM {TEXT_SHA256_SQL} AND l.text_sha256 IS NOT NULL)"
        + (f" AND {unless}" if unless else "")
    )


def _params(label_set: LabelSet, day: date) -> dict[str, Any]:
    return {"label_set": label_set.id, "day": day, "invalid_reasons": INVALID_REASONS}


def count_pending(
    client: PostgresClient,
    spec: TableSpec,
    label_set: LabelSet,
    day: date,
    unless: str | None = None,
) -> int:
    sql = f"SELECT count(*) {_pending_where(client, spec, unless)}"
    return int(client.fetch_all(sql, _params(label_set, day))[0][0])


def pending_posts(
    client: PostgresClient,
    spec: TableSpec,
    label_set: LabelSet,
    day: date,
    chunk_rows: int = 10_000,
    unless: str | None = None,
) -> Iterator[pl.DataFrame]:
    """Valid posts of the day that still need a label from this set, in uri order, a page at a
    time (each page its own query: a database restart mid-run costs a retry, not the run)."""
    sql = (
        f"SELECT v.uri, v.text, v.langs::text {_pending_where(client, spec, unless)} "
        "AND v.uri > %(after)s ORDER BY v.uri LIMIT %(limit)s"
    )
    schema = {"uri": pl.String(), "text": pl.String(), "langs": pl.String()}
    return client.iter_pages(sql, _params(label_set, day), schema, "uri", chunk_rows)


class TextsInFlight:
    """The pending texts being labelled, by uri: each row records which text it labelled
    (its sha256), and the map holds only the client's window, never the day."""

    def __init__(self) -> None:
        self._hashes: dict[str, str] = {}

    def read(self, frames: Iterator[pl.DataFrame]) -> Iterator[tuple[str, str]]:
        for frame in frames:
            for uri, text in zip(frame["uri"], frame["text"], strict=True):
                self._hashes[uri] = text_sha256(text)
                yield uri, text

    def done(self, uri: str) -> str:
        """The sha256 of the text that `uri` was sent with."""
        return self._hashes.pop(uri)


class LabelWriter:
    """Upserts label rows as results arrive; keeps counts for the materialization metadata."""

    def __init__(
        self,
        client: PostgresClient,
        spec: TableSpec,
        label_set: LabelSet,
        day: date,
        provenance: Mapping[str, Any],
    ) -> None:
        self.client = client
        self.spec = spec
        self.day = day
        self.provenance = {**provenance, "label_set": label_set.id}
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


@contextlib.contextmanager
def one_labelling_run(
    client: PostgresClient, spec: TableSpec, day: date, log: logging.Logger
) -> Iterator[None]:
    """One run at a time labels a day into a table: a second run of the same day waits here
    (a Postgres advisory lock), then finds nothing pending, so no post is paid for twice and
    two writers never race on the same keys. The lock lives on a connection of its own and
    goes with it if the run dies."""
    key = f"bsky_assets:{client.schema}.{spec.name}:{day.isoformat()}"
    with advisory_lock(
        client,
        key,
        lambda: log.info(
            f"another run is labelling {spec.name} for {day}: waiting for it to finish"
        ),
    ):
        yield


def partition_outcomes(
    client: PostgresClient, spec: TableSpec, label_set: LabelSet, day: date
) -> dict[str, int]:
    """The set's rows of the whole partition by outcome: `labelled` or the failure reason."""
    rows = client.fetch_all(
        f"SELECT CASE WHEN was_successfully_labeled THEN 'labelled' ELSE reason END, count(*) "
        f"FROM {client.qualified(spec.name)} WHERE partition_date = %s AND label_set = %s "
        "GROUP BY 1 ORDER BY 1",
        (day, label_set.id),
    )
    return {str(outcome): int(n) for outcome, n in rows}
