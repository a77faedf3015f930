"""The main job: the whole graph for one day."""

import dagster as dg

label_posts_job = dg.define_asset_job(
    name="label_posts",
    selection=dg.AssetSelection.assets("preprocessed_posts", "landing_rejects").downstream(),
    description="Read a day's landing batches, validate them and label every valid post.",
)
