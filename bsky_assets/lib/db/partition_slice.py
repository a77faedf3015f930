"""What the IO manager hands downstream assets: a lazy handle on one partition."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date

import polars as pl

from bsky_assets.lib.db.client import DEFAULT_CHUNK_ROWS, PostgresClient
from bsky_assets.lib.db.tables import TableSpec


@dataclass(frozen=True)
class PartitionSlice:
    """A lazy handle on one partition of one asset table: what the IO manager loads.

    Downstream assets stream it in chunks instead of holding a day of posts in memory.
    """

    client: PostgresClient
    spec: TableSpec
    partition: date

    def iter_frames(
        self, columns: list[str] | None = None, chunk_rows: int = DEFAULT_CHUNK_ROWS
    ) -> Iterator[pl.DataFrame]:
        self.client.ensure_table(self.spec)
        return self.client.iter_frames(self.spec, self.partition, columns, chunk_rows)

    def count(self) -> int:
        return self.client.count(self.spec, self.partition)
