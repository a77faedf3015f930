"""The labelling engine: everything a label asset does, written once for every labeller.

For a day, in this order: build the run (the labeller fails here when it cannot run); register
its label set (creating or migrating the table, its preferred view); take the day's lease; write
failed rows for invalid posts (no call); let the run do its pre-pass (batch APIs); then draw the
posts still pending for the label set a page at a time, have the labeller label them, and upsert
each completed batch as it arrives, with progress in the run log. Then ANALYZE (the checks and
what follows join on the rows just written), the common checks, and the common metadata.

Incremental and resumable per label set: only posts without a final row from the set are sent,
a crash loses at most the batches in flight, and a re-run of a finished day sends nothing.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date
from typing import Any

import dagster as dg
import polars as pl

from bsky_assets.lib.db.client import PostgresClient
from bsky_assets.lib.db.tables import TableSpec
from bsky_assets.lib.labelling import checks, store
from bsky_assets.lib.labelling.label_sets import LabelSet, ensure_label_table
from bsky_assets.lib.labelling.labeller import Labeller, LabellingRun
from bsky_assets.lib.labelling.lease import DayLease
from bsky_assets.lib.labelling.metadata import table_metadata
from bsky_assets.lib.labelling.progress import Progress
from bsky_assets.lib.labelling.source import PostSource
from bsky_assets.lib.labelling.writer import LabelWriter, TextsInFlight


@dataclass
class LabellingDay:
    """One label asset's day, as the engine and the labelling run share it."""

    context: dg.AssetExecutionContext
    db: PostgresClient
    labeller: Labeller
    source: PostSource
    label_set: LabelSet
    day: date
    writer: LabelWriter | None = None
    lease: DayLease | None = None
    seconds: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def spec(self) -> TableSpec:
        return self.labeller.table

    @property
    def log(self) -> Any:
        return self.context.log

    def count_pending(self, unless: str | None = None) -> int:
        """Valid posts of the day without a final row from the set (`unless`: SQL on `v`, the
        post, excluding more, e.g. posts already in an open batch)."""
        return store.count_pending(
            self.db, self.spec, self.source, self.label_set.id, self.day, unless
        )

    def pending_frames(self, unless: str | None = None) -> Iterator[pl.DataFrame]:
        """The pending posts (uri, text, langs), a page at a time."""
        return store.pending_posts(
            self.db, self.spec, self.source, self.label_set.id, self.day, unless
        )

    def outcomes(self) -> dict[str, int]:
        return store.partition_outcomes(self.db, self.spec, self.label_set.id, self.day)


def label_asset(
    labeller: Labeller,
    source: PostSource,
    partitions: dg.PartitionsDefinition,
    failure_rate_blocks: bool = False,
) -> dg.AssetsDefinition:
    """The daily asset that labels `source`'s posts with `labeller`, with its checks."""
    specs = [
        *checks.label_check_specs(labeller.name, partitions, failure_rate_blocks),
        *(
            checks.check_spec(c.name, labeller.name, c.description, partitions, c.blocking)
            for c in labeller.check_specs
        ),
    ]

    @dg.asset(
        name=labeller.name,
        deps=[source.asset],
        partitions_def=partitions,  # a backfill is one run per day, each tagged with its day
        pool=labeller.pool,
        group_name=labeller.group,
        kinds=set(labeller.kinds),
        description=labeller.asset_description(),
        check_specs=specs,
        required_resource_keys={"postgres", *labeller.resource_keys},
    )
    def _label(context) -> dg.MaterializeResult:  # (an annotation here trips Dagster's check)
        return label_day(context, labeller, source, failure_rate_blocks)

    return _label


def label_day(
    context: dg.AssetExecutionContext,
    labeller: Labeller,
    source: PostSource,
    failure_rate_blocks: bool = False,
) -> dg.MaterializeResult:
    """Label one day (the asset's body): see the module docstring for the order of things."""
    run = labeller.start(context)
    db: PostgresClient = context.resources.postgres.get_client()
    day = date.fromisoformat(context.partition_key)
    spec = labeller.table
    ensure_label_table(db, spec, run.label_set, labeller.preferences, run.legacy_label_set)
    labelling = LabellingDay(context, db, labeller, source, run.label_set, day)
    run.prepare(labelling)
    with DayLease(db, spec.name, day, context.log) as lease:
        labelling.lease = lease
        invalid_rows = store.write_invalid_post_rows(
            db, spec, source, run.label_set.id, day, run.not_sent_provenance
        )
        context.log.info(f"{run.describe()} (label set {run.label_set.id})")
        writer = LabelWriter(db, spec, run.label_set.id, day, run.provenance)
        labelling.writer = writer
        started = time.monotonic()
        run.before_sending(labelling)
        _send_pending(labelling, run, writer)
        lease.verify()  # another run took the day over: fail, after what was in flight landed
        labelling.seconds = time.monotonic() - started
    db.analyze(spec)  # the checks and metadata below join on the rows just written

    shown = run.metadata(labelling)
    preview = run.preview_columns(labelling, labeller.preview_columns)
    return dg.MaterializeResult(
        metadata={
            **_common_metadata(labelling, writer, invalid_rows),
            **shown,
            **table_metadata(db, spec, source, run.label_set.id, day, preview),
        },
        check_results=[
            checks.one_row_per_post(db, spec, source, run.label_set.id, day),
            checks.failure_rate(
                db, spec, source, run.label_set.id, day, failure_rate_blocks, labeller.out_of_scope
            ),
            *run.checks(labelling),
        ],
    )


def _send_pending(labelling: LabellingDay, run: LabellingRun, writer: LabelWriter) -> None:
    """Every pending post through the labeller, each batch written as it completes."""
    assert labelling.lease is not None
    progress = Progress(labelling.labeller.name, labelling.count_pending(), labelling.log)
    texts = TextsInFlight()
    with contextlib.closing(labelling.pending_frames()) as frames:
        posts = labelling.lease.guard(texts.read(frames))
        for results in run.label(posts):
            rows = []
            for result in results:
                row = run.row(result)
                row["text_sha256"] = texts.done(result.key)
                rows.append(row)
            writer.write(rows)
            progress.advance(len(rows))
    progress.finish()


def _common_metadata(
    labelling: LabellingDay, writer: LabelWriter, invalid_rows: int
) -> dict[str, Any]:
    seconds = labelling.seconds
    return {
        "label_set": labelling.label_set.id,
        "invalid_posts_marked": invalid_rows,
        "posts_sent": writer.rows_written,
        "this_run": dict(writer.outcomes),
        "partition_outcomes": labelling.outcomes(),
        "duration_seconds": round(seconds, 2),
        "posts_per_second": round(writer.rows_written / seconds, 2) if seconds else 0,
    }
