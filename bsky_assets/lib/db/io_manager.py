"""Partition-aware IO manager storing each asset in its own Postgres table.

A thin layer over `PostgresClient`, in the manner of dagster-duckdb: it maps an asset and a
partition to a table slice, and leaves SQL to the client. The table is the asset's own
declaration (`TableSpec.as_metadata()` in its definition metadata), so no registry maps assets
to tables. Assets may return one polars frame or an iterable of frames (streamed through COPY);
downstream assets receive a lazy `PartitionSlice`.
"""

from collections.abc import Iterable, Mapping
from datetime import date
from typing import Any

import dagster as dg
import polars as pl

from bsky_assets.lib.db.partition_slice import PartitionSlice
from bsky_assets.lib.db.resource import PostgresResource
from bsky_assets.lib.db.tables import TABLE_SPEC_KEY, TableSpec


class PostgresIOManager(dg.ConfigurableIOManager):
    """Writes replace (or insert into, or upsert) exactly one partition in one transaction."""

    postgres: dg.ResourceDependency[PostgresResource]

    def handle_output(
        self, context: dg.OutputContext, obj: pl.DataFrame | Iterable[pl.DataFrame] | None
    ) -> None:
        spec = _spec(context.asset_key, context.definition_metadata)
        client = self.postgres.get_client()
        partition = _partition(context)
        written = client.write_partition(spec, partition, obj)
        client.analyze(spec)  # the next step joins on this table: plan it with real statistics
        metadata = {
            "table": f"{client.schema}.{spec.name}",
            "write_mode": spec.write_mode.value,
            "rows_written": dg.MetadataValue.int(written),
            "partition_row_count": dg.MetadataValue.int(client.count(spec, partition)),
        }
        extra = getattr(obj, "metadata", None)  # streams report what they saw once consumed
        if extra:
            metadata.update(extra)
        context.add_output_metadata(metadata)

    def load_input(self, context: dg.InputContext) -> PartitionSlice:
        upstream = context.upstream_output
        spec = _spec(context.asset_key, upstream.definition_metadata if upstream else {})
        return PartitionSlice(self.postgres.get_client(), spec, _partition(context))


def _spec(asset_key: dg.AssetKey, metadata: Mapping[str, Any] | None) -> TableSpec:
    if not metadata or TABLE_SPEC_KEY not in metadata:
        raise dg.DagsterInvariantViolationError(
            f"{asset_key.to_user_string()} declares no table: give its definition "
            "metadata=SPEC.as_metadata() to store it with the Postgres IO manager"
        )
    return TableSpec.from_metadata(metadata)


def _partition(context: dg.InputContext | dg.OutputContext) -> date:
    if not context.has_asset_partitions:
        raise dg.DagsterInvariantViolationError(
            f"{context.asset_key.to_user_string()} is stored by day; run it for one partition"
        )
    keys = list(context.asset_partition_keys)
    if len(keys) != 1:
        raise dg.DagsterInvariantViolationError(
            f"expected one partition, got {len(keys)}: launch one run per day (a backfill of "
            "these assets does: they have no backfill policy)"
        )
    return date.fromisoformat(keys[0])
