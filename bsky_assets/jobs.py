"""The main job: the whole graph for one day."""

import dagster as dg

from bsky_assets.partitions import daily_partitions

label_posts_job = dg.define_asset_job(
    name="label_posts",
    selection=dg.AssetSelection.keys("preprocessed_posts").downstream(),
    partitions_def=daily_partitions,
    description="Read a day's landing batches, validate them and label every valid post.",
)
