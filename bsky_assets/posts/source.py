"""What every label asset labels: the day's posts in `valid_posts`, and why some are not sent."""

from __future__ import annotations

import dagster as dg

from bsky_assets.lib.labelling.source import PostSource
from bsky_assets.posts.tables import VALID_POSTS
from bsky_assets.posts.validity import INVALID_REASONS

VALID_POSTS_SOURCE = PostSource(
    asset=dg.AssetKey("valid_posts"),
    table=VALID_POSTS,
    invalid_reasons=tuple(INVALID_REASONS),
)
