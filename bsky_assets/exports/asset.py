"""label_exports: each day's labels as Parquet where researchers analyse them.

Light at import (the code location's forkserver preloads this module): pyarrow and the export
machinery load inside the step that exports.
"""

import time
from collections.abc import Sequence
from datetime import date
from typing import Any

import dagster as dg

from bsky_assets import settings
from bsky_assets.exports.datasets import POSTS_LABELLED
from bsky_assets.lib.db.tables import TableSpec

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


def label_exports_asset(
    label_tables: Sequence[TableSpec], partitions: dg.PartitionsDefinition
) -> dg.AssetsDefinition:
    """The daily export of `label_tables` (the labellers that are on) and posts_labelled."""
    tables = tuple(label_tables)

    @dg.asset(
        name="label_exports",
        deps=[spec.name for spec in tables],
        partitions_def=partitions,  # a backfill is one run per day, each tagged with its day
        group_name="exports",
        kinds={"parquet"},
        description=DESCRIPTION,
        required_resource_keys={"postgres"},
    )
    def _export(context, config: ExportConfig) -> dg.MaterializeResult:  # (no annotation:
        return export_one_day(context, config, tables)  # Dagster checks `context`'s)

    return _export


def export_one_day(
    context: dg.AssetExecutionContext, config: ExportConfig, tables: tuple[TableSpec, ...]
) -> dg.MaterializeResult:
    from bsky_assets.exports.day import ExportError, export_day
    from bsky_assets.exports.destination import Destination

    day = date.fromisoformat(context.partition_key)
    destination = Destination.configured()
    started = time.monotonic()
    try:
        export = export_day(
            context.resources.postgres.get_client(),
            destination,
            day,
            settings.export_text(),
            context.log,
            tables,
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
