"""The day's rows out of Postgres as Arrow batches: COPY streams, parsed by pyarrow, in parallel.

Rows leave Postgres as CSV (`COPY (SELECT …) TO STDOUT`) and pyarrow's CSV reader parses them
in C++ blocks: no Python object per value. The day is split into `STREAMS` uri ranges read side
by side, each by its own Postgres backend, because the query (the preferred views, the joins,
formatting the rows) is what bounds an export on 2 cores; batches reach the writers through a
small queue, so memory holds a few blocks, not the day.
"""

from __future__ import annotations

import contextlib
import io
import itertools
import queue
import threading
from collections.abc import Iterator, Sequence
from datetime import date

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from bsky_assets.exports import store
from bsky_assets.exports.datasets import ExportColumn, day_columns, label_dataset
from bsky_assets.exports.writer import UTC_MICROS, arrow_type
from bsky_assets.lib.db.client import PostgresClient
from bsky_assets.lib.db.tables import TableSpec

STREAMS = 2  # one Postgres backend per core
CSV_BLOCK_BYTES = 1 << 20
QUEUE_BATCHES = 4
_DONE = object()


def read_csv(stream: io.RawIOBase, columns: Sequence[ExportColumn]) -> Iterator[pa.RecordBatch]:
    """Batches of a COPY … (FORMAT csv) stream, typed (timestamps travel as epoch µs)."""
    buffered = io.BufferedReader(stream, CSV_BLOCK_BYTES)
    if not buffered.peek(1):
        return  # no rows: pyarrow's reader refuses an empty input
    types = {c.name: pa.int64() if c.pg_type == "timestamptz" else arrow_type(c) for c in columns}
    reader = pacsv.open_csv(
        buffered,
        read_options=pacsv.ReadOptions(column_names=list(types), block_size=CSV_BLOCK_BYTES),
        parse_options=pacsv.ParseOptions(newlines_in_values=True),
        convert_options=pacsv.ConvertOptions(
            column_types=types,
            true_values=["t"],
            false_values=["f"],
            null_values=[""],  # Postgres writes NULL unquoted and an empty string as ""
            strings_can_be_null=True,
            quoted_strings_can_be_null=False,
        ),
    )
    stamps = {c.name for c in columns if c.pg_type == "timestamptz"}
    for batch in reader:
        arrays = [
            pc.cast(array, UTC_MICROS) if name in stamps else array
            for name, array in zip(batch.schema.names, batch.columns, strict=True)
        ]
        yield pa.RecordBatch.from_arrays(arrays, names=batch.schema.names)


def day_batches(
    client: PostgresClient, day: date, include_text: bool, label_tables: Sequence[TableSpec]
) -> Iterator[pa.RecordBatch]:
    """The day's posts joined to every label table's preferred row (store.day_query), as
    batches in day_columns order; ranges are read concurrently, so batches interleave."""
    columns = day_columns(label_tables, include_text)
    bounds = [None, *store.uri_splits(client, day, STREAMS), None]
    ranges = list(itertools.pairwise(bounds))
    batches: queue.Queue = queue.Queue(QUEUE_BATCHES)
    stop = threading.Event()

    def produce(low: str | None, high: str | None) -> None:
        try:
            query = store.day_query(
                client, label_tables, include_text, low is not None, high is not None
            )
            params = {"day": day, "low": low, "high": high}
            with store.copy_csv(client, query, params) as stream:
                for batch in read_csv(stream, columns):
                    if stop.is_set():
                        return
                    batches.put(batch)
        except BaseException as error:  # handed to the consumer, which raises it
            batches.put(error)
        finally:
            batches.put(_DONE)

    threads = [threading.Thread(target=produce, args=r, daemon=True) for r in ranges]
    for thread in threads:
        thread.start()
    running = len(threads)
    try:
        while running:
            item = batches.get()
            if item is _DONE:
                running -= 1
            elif isinstance(item, BaseException):
                raise item
            else:
                yield item
    finally:
        stop.set()
        while any(t.is_alive() for t in threads):  # unblock producers waiting to put
            with contextlib.suppress(queue.Empty):
                batches.get(timeout=0.1)


def orphan_batches(client: PostgresClient, spec: TableSpec, day: date) -> Iterator[pa.RecordBatch]:
    """The table's preferred rows for posts no longer among the day's posts, in the columns of
    its own dataset (none, unless a re-ingest dropped posts that had labels)."""
    uris = store.orphan_uris(client, spec, day)
    if not uris:
        return
    with store.copy_csv(client, store.orphans_query(client, spec), {"day": day, "uris": uris}) as s:
        yield from read_csv(s, label_dataset(spec).columns)
