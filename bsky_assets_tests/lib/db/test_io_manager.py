"""The IO manager stores exactly one partition per write, and refuses anything else."""

from datetime import date

import dagster as dg
import polars as pl
import pytest

from bsky_assets.lib.db.io_manager import PostgresIOManager
from bsky_assets.lib.db.resource import PostgresResource
from bsky_assets.lib.db.tables import TABLE_SPEC_KEY, TableSpec
from bsky_assets.lib.partitions import daily_partitions
from bsky_assets.posts.tables import VALID_POSTS

DAYS = daily_partitions("2024-01-01")


@dg.asset(
    name="valid_posts",
    partitions_def=DAYS,
    io_manager_key="io",
    metadata=VALID_POSTS.as_metadata(),
)
def fake_valid_posts(context: dg.AssetExecutionContext) -> pl.DataFrame:
    return pl.DataFrame(
        {"uri": ["at://a"], "batch_id": ["b"], "text": ["some text"], "is_valid": [True]}
    )


def test_one_partition_is_written_and_read_back(postgres: PostgresResource) -> None:
    result = dg.materialize(
        [fake_valid_posts],
        partition_key="2024-06-01",
        resources={"io": PostgresIOManager(postgres=postgres)},
    )
    assert result.success
    rows = postgres.get_client().fetch_all(
        "SELECT partition_date, uri FROM "
        f"{postgres.get_client().qualified('valid_posts')} ORDER BY 1"
    )
    assert rows == [(date(2024, 6, 1), "at://a")]


def test_a_run_over_several_partitions_is_refused(postgres: PostgresResource) -> None:
    job = dg.define_asset_job("several_days", selection=[fake_valid_posts])
    defs = dg.Definitions(
        assets=[fake_valid_posts],
        jobs=[job],
        resources={"io": PostgresIOManager(postgres=postgres)},
    )
    with pytest.raises(dg.DagsterInvariantViolationError, match="expected one partition, got 2"):
        defs.resolve_job_def("several_days").execute_in_process(
            tags={
                "dagster/asset_partition_range_start": "2024-06-01",
                "dagster/asset_partition_range_end": "2024-06-02",
            }
        )


@dg.asset(name="undeclared", partitions_def=DAYS, io_manager_key="io")
def undeclared(context: dg.AssetExecutionContext) -> pl.DataFrame:
    return pl.DataFrame({"uri": ["at://a"]})


def test_the_table_is_the_assets_own_declaration(postgres: PostgresResource) -> None:
    metadata = fake_valid_posts.specs_by_key[dg.AssetKey("valid_posts")].metadata
    assert TableSpec.from_metadata(metadata) == VALID_POSTS  # no registry: the asset says
    assert metadata["dagster/column_schema"].columns[0].name == "partition_date"
    assert TABLE_SPEC_KEY in metadata
    with pytest.raises(dg.DagsterInvariantViolationError, match="declares no table"):
        dg.materialize(
            [undeclared],
            partition_key="2024-06-01",
            resources={"io": PostgresIOManager(postgres=postgres)},
        )
