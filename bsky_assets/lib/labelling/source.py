"""Where a label asset's posts come from: a daily table of posts, each valid or not, and why.

The engine needs only this much of the posts domain; the posts domain provides it (the
`valid_posts` asset), so the engine never imports a domain.
"""

from __future__ import annotations

from dataclasses import dataclass

import dagster as dg

from bsky_assets.lib.db.tables import TableSpec

REQUIRED_COLUMNS = ("partition_date", "uri", "text", "langs", "is_valid", "invalid_reason")


@dataclass(frozen=True)
class PostSource:
    """The asset and table holding every post of a day with `is_valid` and `invalid_reason`,
    and every reason a post is not sent (rows with one are final, whoever wrote them)."""

    asset: dg.AssetKey
    table: TableSpec
    invalid_reasons: tuple[str, ...]

    def __post_init__(self) -> None:
        missing = [c for c in REQUIRED_COLUMNS if c not in self.table.column_names]
        if missing:
            raise ValueError(f"{self.table.name} cannot feed a label asset: lacks {missing}")
