"""What the export tests share: a labelled day, its files, the database's own answers."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import dagster as dg
import pyarrow.parquet as pq

from bsky_assets.lib.db.client import PostgresClient
from bsky_assets_tests.conftest import materialize_day, post, write_jsonl

# Every labeller that is on by default gets a dataset, with no change to the export.
DATASETS = ("perspective_labels", "sociopolitical_labels", "valence_labels", "posts_labelled")


def land_day(landing_root: Path, day: date, posts: int = 40) -> None:
    """A day of posts (a few invalid, one with a cid) in the landing folder."""
    records = [
        post(f"{day}-{i}", f"post {i} about the election, taxes and the city council")
        for i in range(posts)
    ]
    records += [post(f"{day}-short", "hi"), post(f"{day}-cid", "a post with a cid", cid="bafy")]
    write_jsonl(landing_root / day.isoformat() / "batch.jsonl", records)


def label_day(defs: dg.Definitions, landing_root: Path, day: date, posts: int = 40):
    """Land and run the main job for a day: it ends with label_exports."""
    land_day(landing_root, day, posts)
    result = materialize_day(defs, day)
    assert result.success
    return result


def export_only(defs: dg.Definitions, day: date, force: bool = False):
    job = defs.resolve_implicit_global_asset_job_def().get_subset(
        asset_selection={dg.AssetKey("label_exports")}
    )
    config = {"ops": {"label_exports": {"config": {"force": force}}}}
    result = job.execute_in_process(partition_key=day.isoformat(), run_config=config)
    assert result.success
    return result


def export_event(result) -> dg.AssetMaterialization:
    (event,) = [
        e.step_materialization_data.materialization
        for e in result.get_asset_materialization_events()
        if e.asset_key == dg.AssetKey("label_exports")
    ]
    return event


def day_file(root: Path, dataset: str, day: date) -> Path:
    return root / dataset / f"partition_date={day.isoformat()}" / "part-0.parquet"


def read_day(root: Path, dataset: str, day: date):
    return pq.read_table(day_file(root, dataset, day))


def preferred_counts(client: PostgresClient, table: str, day: date) -> dict[str, int]:
    rows = client.fetch_all(
        f"SELECT labeler, count(*) FROM {client.qualified(table + '_preferred')} "
        "WHERE partition_date = %s GROUP BY 1",
        (day,),
    )
    return {labeler: int(n) for labeler, n in rows}
