"""Export one day: every dataset's file, skipped when the database has not changed since.

Each file's footer records the fingerprint of the database state it was written from
(store.fingerprints: rows, label sets, newest label, preferences). A day whose fingerprint is
unchanged is left as it is; a day with a new label set, a re-labelled post, a changed
preference or a re-ingest is written again, whole. Both the asset and `bsky-assets export` run
this, under a per-day lock; the dictionary is rewritten whenever a file was.
"""

from __future__ import annotations

import hashlib
import json
import logging
import uuid
from dataclasses import dataclass, field
from datetime import date

from bsky_assets.assets.progress import Progress
from bsky_assets.db.client import PostgresClient
from bsky_assets.exports import dictionary, store
from bsky_assets.exports.datasets import all_datasets
from bsky_assets.exports.destination import STAGING, Destination
from bsky_assets.exports.sources import LABEL_TABLES
from bsky_assets.exports.writer import write_day

PROGRESS_STEP = "label_exports"


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


def export_day(
    client: PostgresClient,
    destination: Destination,
    day: date,
    include_text: bool,
    log: logging.Logger | logging.LoggerAdapter,
    force: bool = False,
) -> DayExport:
    missing = store.missing_views(client, LABEL_TABLES)
    if missing:
        raise ExportError(
            f"nothing to export for {day} yet: {', '.join(missing)} missing (materialize the "
            "label assets first)"
        )
    datasets = all_datasets(include_text)
    staging = f"{STAGING}/partition_date={day.isoformat()}"
    with store.one_export(client, destination.url, day):
        destination.clear(staging)  # what a killed export of this day left behind
        states = store.fingerprints(client, datasets, day)
        footers = {d.name: destination.footer(d.file(day.isoformat())) for d in datasets}
        stale = [
            d
            for d in datasets
            if force or (footers[d.name] or {}).get("fingerprint") != states[d.name]["fingerprint"]
        ]
        progress = Progress(PROGRESS_STEP, sum(states[d.name]["rows"] for d in stale), log)
        files = []
        for dataset in datasets:
            state = states[dataset.name]
            relative = dataset.file(day.isoformat())
            if dataset not in stale:
                footer = footers[dataset.name] or {}
                files.append(
                    FileResult(dataset.name, relative, "unchanged", int(footer["rows"]),
                               destination.size(relative), state["fingerprint"],
                               state["labels_changed_at"], json.loads(footer.get("labelers", "[]")))
                )  # fmt: skip
                continue
            metadata = {
                "dataset": dataset.name,
                "partition_date": day.isoformat(),
                "fingerprint": state["fingerprint"],
                "format_version": str(store.FORMAT_VERSION),
                "labels_changed_at": state["labels_changed_at"] or "",
                "text_included": str(include_text).lower(),
            }
            with store.copy_csv(client, dataset, day) as stream:
                written = write_day(
                    destination, dataset, day.isoformat(),
                    f"{staging}/{dataset.name}-{uuid.uuid4().hex}.parquet",
                    stream, metadata, progress.advance,
                )  # fmt: skip
            files.append(
                FileResult(dataset.name, relative, "written", written.rows, written.bytes,
                           state["fingerprint"], state["labels_changed_at"], written.labelers)
            )  # fmt: skip
        progress.finish()
        result = DayExport(day, destination, include_text, files)
        store.record_files(client, destination.url, day, [vars(f) for f in files])
        if result.written or not destination.exists(dictionary.SCHEMA_FILE):
            dictionary.write(client, destination, datasets, staging)
        destination.clear(staging)
    return result
