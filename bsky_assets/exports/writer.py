"""Row batches into Parquet files: in row groups, committed atomically.

Each dataset's file takes its columns from the day's batches (reader.py) and writes row groups
of ~32k rows through a ParquetWriter, so memory holds one row group per file, never the day. A
file's schema carries each column's meaning (field metadata) and its footer the export's
fingerprint and row counts by labeller, so the file says what it is and which database state it
was written from.
"""

from __future__ import annotations

import contextlib
import json
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from bsky_assets.exports.datasets import Dataset, ExportColumn
from bsky_assets.exports.destination import METADATA_PREFIX, Destination

ROW_GROUP_ROWS = 32_768
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


def _count_labelers(counts: Counter[tuple], table: pa.Table) -> None:
    """Rows by (labeler, emulated, labelled), with Arrow kernels only: converting a Python
    value (or Table.group_by's Acero) would import pandas into the step, ~80 MB."""
    labeler, emulated, labelled = (table[c] for c in LABELER_COLUMNS)
    for value in pc.unique(labeler):
        mine = pc.equal(labeler, value)
        for e, e_mask in ((True, emulated), (False, pc.invert(emulated))):
            for ok, ok_mask in ((True, labelled), (False, pc.invert(labelled))):
                n = pc.sum(pc.and_(pc.and_(mine, e_mask), ok_mask)).as_py() or 0
                if n:
                    counts[(value.as_py(), e, ok)] += n


@dataclass
class Written:
    rows: int = 0
    bytes: int = 0
    labelers: list[dict] = field(default_factory=list)  # rows by labeller (label datasets)


class DatasetFile:
    """One dataset's file of the day, open for row batches in its own column order."""

    def __init__(self, writer: pq.ParquetWriter, schema: pa.Schema) -> None:
        self._writer = writer
        self._schema = schema
        self._pending: list[pa.RecordBatch] = []
        self._pending_rows = 0
        self._labelers: Counter[tuple] = Counter()
        self.written = Written()

    def add(self, batch: pa.RecordBatch) -> None:
        if not batch.num_rows:
            return
        self._pending.append(pa.RecordBatch.from_arrays(batch.columns, schema=self._schema))
        self._pending_rows += batch.num_rows
        if self._pending_rows >= ROW_GROUP_ROWS:
            self._flush()

    def _flush(self) -> None:
        if not self._pending:
            return
        table = pa.Table.from_batches(self._pending, self._schema)
        self._writer.write_table(table, row_group_size=ROW_GROUP_ROWS)
        self._pending, self._pending_rows = [], 0
        self.written.rows += table.num_rows
        if all(name in table.column_names for name in LABELER_COLUMNS):
            _count_labelers(self._labelers, table)

    def finish(self) -> None:
        self._flush()
        self.written.labelers = [
            {"labeler": labeler, "emulated": emulated, "labelled": ok, "rows": n}
            for (labeler, emulated, ok), n in sorted(self._labelers.items(), key=str)
        ]
        key = f"{METADATA_PREFIX}labelers"
        self._writer.add_key_value_metadata({key: json.dumps(self.written.labelers)})


@contextlib.contextmanager
def dataset_file(
    destination: Destination, dataset: Dataset, day: str, staging: str, metadata: dict[str, str]
) -> Iterator[DatasetFile]:
    """`<dataset>/partition_date=<day>/part-0.parquet`, replacing the previous file atomically
    when the block ends without an error (destination.atomic_write)."""
    schema = file_schema(dataset).with_metadata(
        {f"{METADATA_PREFIX}{k}": v for k, v in metadata.items()}
    )
    relative = dataset.file(day)
    with (
        destination.atomic_write(relative, staging) as out,
        pq.ParquetWriter(
            out,
            schema,
            compression=COMPRESSION,
            # dictionaries pay off for repeated strings (labeller, label set), not for scores
            use_dictionary=[f.name for f in schema if f.type == pa.string()],
        ) as writer,
    ):
        file = DatasetFile(writer, schema)
        yield file
        file.finish()
    file.written.bytes = destination.size(relative)


def cut(
    batch: pa.RecordBatch, columns: Sequence[str], present: str | None = None
) -> pa.RecordBatch:
    """The named columns of a batch, keeping only rows where `present` is not null."""
    if present is not None:
        batch = batch.filter(pc.is_valid(batch.column(present)))
    return batch.select(list(columns))
