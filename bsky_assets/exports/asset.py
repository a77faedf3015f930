"""label_exports: each day's labels as Parquet where researchers analyse them.

Light at import (the code location's forkserver preloads this module): pyarrow and the export
machinery load inside the step that exports.
"""

import time
from datetime import date
from typing import Any

import dagster as dg

from bsky_assets import settings
from bsky_assets.exports.datasets import POSTS_LABELLED
from bsky_assets.exports.sources import LABEL_TABLES
from bsky_assets.partitions import daily_partitions, one_run_per_day
from bsky_assets.resources.postgres import PostgresResource

DESCRIPTION = """Each day's labels as Parquet, Hive-partitioned by partition_date:
`<dataset>/partition_date=YYYY-MM-DD/part-0.parquet` for every label table (its `*_preferred`
view, one row per post, with provenance) and `posts_labelled` (the posts with every labeller's
columns), plus README.md and schema.json (the data dictionary) at the destination's root.

Destination: `BSKY_EXPORT_DEST` (default `$BSKY_DATA_DIR/exports`; `s3://…`/`gs://…` with
credentials from the environment); post text only with `BSKY_EXPORT_TEXT=true`. A file is
replaced atomically and only when the day's rows changed (its data version says when)."""


class ExportConfig(dg.Config):
    force: bool = False  # rewrite the day's files even when nothing changed


def _link(destination: Any, relative: str) -> dg.MetadataValue:
    location = destination.display(relative)
    return dg.MetadataValue.path(location) if destination.local else dg.MetadataValue.url(location)


def _files_table(export: Any) -> dg.MetadataValue:
    lines = ["| dataset | rows | bytes | status |", "|---|---|---|---|"]
    lines += [f"| {f.dataset} | {f.rows:,} | {f.bytes:,} | {f.status} |" for f in export.files]
    return dg.MetadataValue.md("\n".join(lines))


def export_metadata(export: Any) -> dict[str, Any]:
    destination = export.destination
    from bsky_assets.exports.dictionary import README_FILE

    metadata: dict[str, Any] = {
        "destination": destination.url,
        "dictionary": _link(destination, README_FILE),
        "files": _files_table(export),
        "files_written": len(export.written),
        "text_included": export.include_text,
        "labels_changed_at": max(
            (f.labels_changed_at for f in export.files if f.labels_changed_at), default="never"
        ),
    }
    for f in export.files:
        metadata[f"{f.dataset}_path"] = _link(destination, f.relative)
        metadata[f"{f.dataset}_rows"] = f.rows
        metadata[f"{f.dataset}_bytes"] = f.bytes
    # the day's posts, one row each in posts_labelled
    metadata["dagster/row_count"] = next(
        f.rows for f in export.files if f.dataset == POSTS_LABELLED
    )
    return metadata


@dg.asset(
    deps=[spec.name for spec in LABEL_TABLES],
    partitions_def=daily_partitions,
    backfill_policy=one_run_per_day,
    group_name="exports",
    kinds={"parquet"},
    description=DESCRIPTION,
)
def label_exports(
    context: dg.AssetExecutionContext, config: ExportConfig, postgres: PostgresResource
) -> dg.MaterializeResult:
    from bsky_assets.exports.day import ExportError, export_day
    from bsky_assets.exports.destination import Destination

    day = date.fromisoformat(context.partition_key)
    destination = Destination.configured()
    started = time.monotonic()
    try:
        export = export_day(
            postgres.get_client(),
            destination,
            day,
            settings.export_text(),
            context.log,
            force=config.force,
        )
    except ExportError as error:
        raise dg.Failure(description=str(error)) from None
    for f in export.files:
        context.log.info(
            f"{f.dataset}: {f.rows:,} rows, {f.status} ({destination.display(f.relative)})"
        )
    metadata = export_metadata(export) | {"duration_seconds": round(time.monotonic() - started, 2)}
    return dg.MaterializeResult(metadata=metadata, data_version=dg.DataVersion(export.data_version))
