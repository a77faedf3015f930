"""What the export reads besides the label tables: the posts, their validity, and which of
their fields travel. The label tables are those of the labellers that are on (the definitions
pass them): each gets its own dataset (from its `<table>_preferred` view) and a block of
`<table>__<column>` columns in `posts_labelled`, so a new labeller is exported with no change
here.
"""

from __future__ import annotations

from bsky_assets.posts.tables import PREPROCESSED_POSTS, VALID_POSTS

POSTS = PREPROCESSED_POSTS
VALID = VALID_POSTS
# Post fields in posts_labelled, in this order (`text` only when BSKY_EXPORT_TEXT is on). The
# landing file and line stay in the database: they are this machine's, not the post's.
POST_FIELDS: tuple[str, ...] = (
    "uri", "cid", "created_at", "author_did", "author_handle", "indexed_at", "langs",
    "reply_parent", "reply_root", "like_count", "reply_count", "repost_count", "source",
    "batch_id", "preprocessing_timestamp",
)  # fmt: skip
VALIDITY_FIELDS: tuple[str, ...] = ("is_valid", "invalid_reason")
