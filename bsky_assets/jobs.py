"""The main job: the whole graph for one day."""

import dagster as dg

from bsky_assets.perspective.sunset import active_labeler, sunset_notice

# Everything downstream of a day's landing, except what is not per day: the successor learns from
# the whole history and the evaluation scores a labeler on the hand labels, both on demand.
label_posts_job = dg.define_asset_job(
    name="label_posts",
    selection=dg.AssetSelection.assets("preprocessed_posts", "landing_rejects").downstream()
    - dg.AssetSelection.assets("perspective_successor", "sociopolitical_evaluation"),
    description="Read a day's landing batches, validate them and label every valid post "
    f"(Perspective labeler: {active_labeler()}).\n\n{sunset_notice()}",
)
