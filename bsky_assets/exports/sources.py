"""What the export reads: the label tables, in one place.

Every table here gets its own dataset (from its `<table>_preferred` view) and a block of
`<table>__<column>` columns in `posts_labelled`; the export asset depends on each of them. A new
labeller is exported by adding its TableSpec here (or by pointing this at the labelling engine's
list of labellers).
"""

from __future__ import annotations

from bsky_assets.db.tables import (
    PERSPECTIVE_LABELS,
    PREPROCESSED_POSTS,
    SOCIOPOLITICAL_LABELS,
    VALID_POSTS,
    TableSpec,
)

LABEL_TABLES: tuple[TableSpec, ...] = (PERSPECTIVE_LABELS, SOCIOPOLITICAL_LABELS)

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
