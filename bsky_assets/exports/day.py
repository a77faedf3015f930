"""Export one day: every dataset's file, skipped when the database has not changed since.

Each file's footer records the fingerprint of the database state it was written from
(store.fingerprints: rows, label sets, newest label, preferences). A day whose fingerprint is
unchanged is left as it is; a day with a new label set, a re-labelled post, a changed
preference or a re-ingest is written again, whole. Both the asset and `bsky-assets export` run
this, under a per-day lock; the dictionary is rewritten whenever a file was.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date

from bsky_assets.exports import dictionary, store
from bsky_assets.exports.datasets import (
    POSTS_LABELLED,
    Dataset,
    all_datasets,
    prefixed,
)
from bsky_assets.exports.destination import STAGING, Destination
from bsky_assets.exports.reader import day_batches, orphan_batches
from bsky_assets.exports.writer import Written, cut, dataset_file
from bsky_assets.lib.db.client import PostgresClient
from bsky_assets.lib.db.tables import TableSpec
from bsky_assets.lib.labelling.progress import Progress


class ExportError(RuntimeError):
    """The day cannot be exported yet (no label table to read)."""


@dataclass
class FileResult:
    dataset: str
    relative: str
    status: str  # "written" or "unchanged"
    rows: int
    bytes: int
    fingerprint: str
    labels_changed_at: str | None
    labelers: list[dict] = field(default_factory=list)


@dataclass
class DayExport:
    day: date
    destination: Destination
    include_text: bool
    files: list[FileResult]

    @property
    def data_version(self) -> str:
        """Changes exactly when a file of the day would: a hash of the files' fingerprints."""
        joined = ",".join(f"{f.dataset}={f.fingerprint}" for f in self.files)
        return hashlib.sha256(joined.encode()).hexdigest()[:16]

    @property
    def written(self) -> list[FileResult]:
        return [f for f in self.files if f.status == "written"]


def _file_metadata(dataset: Dataset, day: date, state: dict, include_text: bool) -> dict:
    return {
        "dataset": dataset.name,
        "partition_date": day.isoformat(),
        "fingerprint": state["fingerprint"],
        "format_version": str(store.FORMAT_VERSION),
        "labels_changed_at": state["labels_changed_at"] or "",
        "text_included": str(include_text).lower(),
    }


def _write(
    client: PostgresClient,
    destination: Destination,
    day: date,
    include_text: bool,
    stale: list[Dataset],
    states: dict[str, dict],
    staging: str,
    progress: Progress,
    label_specs: Sequence[TableSpec],
) -> dict[str, Written]:
    """One pass over the day's joined rows, cut into every stale dataset's file; the label
    tables' rows for posts no longer among the day's posts are added to their own files."""
    label_tables = {spec.name: spec for spec in label_specs}
    with contextlib.ExitStack() as files:
        open_files = {
            d.name: files.enter_context(
                dataset_file(
                    destination, d, day.isoformat(), f"{staging}/{d.name}-{uuid.uuid4().hex}",
                    _file_metadata(d, day, states[d.name], include_text),
                )
            )
            for d in stale
        }  # fmt: skip
        cuts = []
        for d in stale:
            if d.name in label_tables:
                spec = label_tables[d.name]
                names = [prefixed(spec, c.name) for c in d.columns]
                cuts.append((open_files[d.name], names, prefixed(spec, "label_set")))
            else:
                cuts.append((open_files[d.name], [c.name for c in d.columns], None))
        for batch in day_batches(client, day, include_text, label_specs):
            for file, names, present in cuts:
                file.add(cut(batch, names, present))
            progress.advance(batch.num_rows)
        for d in stale:
            if d.name in label_tables:
                for batch in orphan_batches(client, label_tables[d.name], day):
                    open_files[d.name].add(batch)
    return {name: file.written for name, file in open_files.items()}


def export_day(
    client: PostgresClient,
    destination: Destination,
    day: date,
    include_text: bool,
    log: logging.Logger | logging.LoggerAdapter,
    label_tables: Sequence[TableSpec],
    force: bool = False,
) -> DayExport:
    """Export one day of `label_tables` (the enabled labellers' tables) and posts_labelled."""
    missing = store.missing_views(client, label_tables)
    if missing:
        raise ExportError(
            f"nothing to export for {day} yet: {', '.join(missing)} missing (materialize the "
            "label assets first)"
        )
    datasets = all_datasets(label_tables, include_text)
    staging = f"{STAGING}/partition_date={day.isoformat()}"
    with store.one_export(client, destination.url, day):
        destination.clear(staging)  # what a killed export of this day left behind
        states = store.fingerprints(client, datasets, day)
        footers = {d.name: destination.footer(d.file(day.isoformat())) or {} for d in datasets}
        stale = [
            d
            for d in datasets
            if force or footers[d.name].get("fingerprint") != states[d.name]["fingerprint"]
        ]
        written: dict[str, Written] = {}
        if stale:
            progress = Progress(f"export {day} posts", states[POSTS_LABELLED]["rows"], log)
            written = _write(
                client, destination, day, include_text, stale, states, staging, progress,
                label_tables,
            )  # fmt: skip
            progress.finish()
        files = []
        for d in datasets:
            state, relative = states[d.name], d.file(day.isoformat())
            if d.name in written:
                w = written[d.name]
                rows, size, labelers, status = w.rows, w.bytes, w.labelers, "written"
            else:
                footer = footers[d.name]
                rows, size = int(footer["rows"]), destination.size(relative)
                labelers, status = json.loads(footer.get("labelers", "[]")), "unchanged"
            files.append(
                FileResult(d.name, relative, status, rows, size, state["fingerprint"],
                           state["labels_changed_at"], labelers)
            )  # fmt: skip
        result = DayExport(day, destination, include_text, files)
        store.record_files(client, destination.url, day, [vars(f) for f in files])
        if result.written or not destination.exists(dictionary.SCHEMA_FILE):
            dictionary.write(client, destination, datasets, staging)
        destination.clear(staging)
    return result
