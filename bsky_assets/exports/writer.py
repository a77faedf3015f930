"""One day of one dataset into one Parquet file, streamed and atomic.

Rows arrive as CSV from Postgres' COPY, are parsed by pyarrow in blocks, and leave in row groups
of ~128k rows through a ParquetWriter: memory holds one row group, never the day. The file's
schema carries each column's meaning (field metadata) and the footer the export's fingerprint,
so a file says what it is and which database state it was written from.
"""

from __future__ import annotations

import io
import json
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from bsky_assets.exports.datasets import Dataset, ExportColumn
from bsky_assets.exports.destination import METADATA_PREFIX, Destination

ROW_GROUP_ROWS = 131_072
CSV_BLOCK_BYTES = 8 << 20
COMPRESSION = "zstd"
UTC_MICROS = pa.timestamp("us", tz="UTC")
ARROW_TYPES: dict[str, pa.DataType] = {
    "text": pa.string(),
    "jsonb": pa.string(),
    "integer": pa.int32(),
    "bigint": pa.int64(),
    "boolean": pa.bool_(),
    "double precision": pa.float64(),
    "timestamptz": UTC_MICROS,
    "date": pa.date32(),
}
LABELER_COLUMNS = ("labeler", "emulated", "was_successfully_labeled")


def arrow_type(column: ExportColumn) -> pa.DataType:
    return ARROW_TYPES[column.pg_type]


def file_schema(dataset: Dataset) -> pa.Schema:
    return pa.schema(
        [
            pa.field(
                c.name, arrow_type(c), nullable=c.nullable, metadata={"description": c.meaning}
            )
            for c in dataset.columns
        ]
    )


def _csv_batches(stream: io.RawIOBase, dataset: Dataset) -> Iterator[pa.RecordBatch]:
    buffered = io.BufferedReader(stream, CSV_BLOCK_BYTES)
    if not buffered.peek(1):
        return  # an empty day: pyarrow's reader refuses an empty input
    types = {
        c.name: pa.int64() if c.pg_type == "timestamptz" else arrow_type(c) for c in dataset.columns
    }
    reader = pacsv.open_csv(
        buffered,
        read_options=pacsv.ReadOptions(
            column_names=list(types), block_size=CSV_BLOCK_BYTES, use_threads=True
        ),
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
    yield from reader


def _row_groups(batches: Iterator[pa.RecordBatch], schema: pa.Schema) -> Iterator[pa.Table]:
    pending: list[pa.RecordBatch] = []
    rows = 0
    for batch in batches:
        arrays = [
            pc.cast(column, UTC_MICROS) if schema.field(i).type == UTC_MICROS else column
            for i, column in enumerate(batch.columns)
        ]
        pending.append(pa.RecordBatch.from_arrays(arrays, schema=schema))
        rows += batch.num_rows
        if rows >= ROW_GROUP_ROWS:
            yield pa.Table.from_batches(pending, schema)
            pending, rows = [], 0
    if pending:
        yield pa.Table.from_batches(pending, schema)


@dataclass
class Written:
    rows: int = 0
    bytes: int = 0
    labelers: list[dict] = field(default_factory=list)  # rows by labeller (label datasets)


def _count_labelers(counts: Counter[tuple], table: pa.Table) -> None:
    if not all(name in table.column_names for name in LABELER_COLUMNS):
        return
    grouped = table.group_by(list(LABELER_COLUMNS)).aggregate([([], "count_all")])
    for row in grouped.to_pylist():
        counts[tuple(row[c] for c in LABELER_COLUMNS)] += row["count_all"]


def write_day(
    destination: Destination,
    dataset: Dataset,
    day: str,
    staging: str,
    stream: io.RawIOBase,
    metadata: dict[str, str],
    on_rows: Callable[[int], None] = lambda n: None,
) -> Written:
    """Write the day's rows from `stream` (COPY CSV in the dataset's column order) to
    `<dataset>/partition_date=<day>/part-0.parquet`, replacing any previous file atomically."""
    schema = file_schema(dataset).with_metadata(
        {f"{METADATA_PREFIX}{k}": v for k, v in metadata.items()}
    )
    written = Written()
    counts: Counter[tuple] = Counter()
    relative = dataset.file(day)
    with (
        destination.atomic_write(relative, staging) as out,
        pq.ParquetWriter(out, schema, compression=COMPRESSION) as writer,
    ):
        for table in _row_groups(_csv_batches(stream, dataset), schema):
            writer.write_table(table, row_group_size=ROW_GROUP_ROWS)
            _count_labelers(counts, table)
            written.rows += table.num_rows
            on_rows(table.num_rows)
        written.labelers = [
            {"labeler": labeler, "emulated": emulated, "labelled": ok, "rows": n}
            for (labeler, emulated, ok), n in sorted(counts.items(), key=lambda kv: str(kv[0]))
        ]
        writer.add_key_value_metadata({f"{METADATA_PREFIX}labelers": json.dumps(written.labelers)})
    written.bytes = destination.size(relative)
    return written
