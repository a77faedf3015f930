"""Label rows out as results arrive: each completed batch is upserted at once, so a crash loses at
most the batches in flight, and each row records which text it labelled."""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from datetime import UTC, date, datetime
from typing import Any

import polars as pl

from bsky_assets.lib.db.client import PostgresClient
from bsky_assets.lib.db.tables import TableSpec, WriteMode
from bsky_assets.lib.labelling.labeller import Post


def text_sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


class TextsInFlight:
    """The pending texts being labelled, by uri: each row records which text it labelled
    (its sha256), and the map holds only the labeller's window, never the day."""

    def __init__(self) -> None:
        self._hashes: dict[str, str] = {}

    def read(self, frames: Iterable[pl.DataFrame]) -> Iterator[Post]:
        for frame in frames:
            for uri, text, langs in zip(frame["uri"], frame["text"], frame["langs"], strict=True):
                self._hashes[uri] = text_sha256(text)
                yield Post(uri, text, langs)

    def done(self, uri: str) -> str:
        """The sha256 of the text that `uri` was sent with."""
        return self._hashes.pop(uri)


class LabelWriter:
    """Upserts label rows as results arrive; keeps counts for the materialization metadata."""

    def __init__(
        self,
        client: PostgresClient,
        spec: TableSpec,
        label_set: str,
        day: date,
        provenance: Mapping[str, Any],
    ) -> None:
        self.client = client
        self.spec = spec
        self.day = day
        self.provenance = {**provenance, "label_set": label_set}
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
