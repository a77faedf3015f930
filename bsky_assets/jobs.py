"""The main job: the whole graph for one day."""

import dagster as dg

# Everything downstream of a day's landing, except the successor: it learns from the whole
# history and is materialized on demand, not once per day.
label_posts_job = dg.define_asset_job(
    name="label_posts",
    selection=dg.AssetSelection.assets("preprocessed_posts", "landing_rejects").downstream()
    - dg.AssetSelection.assets("perspective_successor"),
    description="Read a day's landing batches, validate them and label every valid post.",
)
