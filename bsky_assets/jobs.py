"""The main job: the whole graph for one day."""

from __future__ import annotations

from collections.abc import Sequence

import dagster as dg

from bsky_assets.perspective.sunset import active_labeler, sunset_notice

LABEL_POSTS = "label_posts"


def label_posts_job(on: Sequence[str], off: Sequence[str]) -> dg.UnresolvedAssetJobDefinition:
    """Everything downstream of a day's landing, except what is not per day: the successor
    learns from the whole history and the evaluations score a labeller on hand labels, both on
    demand. The description says which labellers are on (read when the definitions are built)."""
    unpartitioned = dg.AssetSelection.assets("perspective_successor") | (
        dg.AssetSelection.groups("evaluation")
    )
    turned_off = (
        f" Off: {', '.join(off)} (turn on with BSKY_LABELLERS, README: Labellers)." if off else ""
    )
    return dg.define_asset_job(
        name=LABEL_POSTS,
        selection=dg.AssetSelection.assets("preprocessed_posts", "landing_rejects").downstream()
        - unpartitioned,
        description="Read a day's landing batches, validate them and label every valid post.\n\n"
        f"Labellers on: {', '.join(on)}.{turned_off} Perspective labeler: {active_labeler()}."
        f"\n\n{sunset_notice()}",
    )
