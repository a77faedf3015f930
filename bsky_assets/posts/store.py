"""The queries the posts domain needs beyond the IO manager's reads and writes."""

from __future__ import annotations

from datetime import date

from bsky_assets.lib.db.client import PostgresClient
from bsky_assets.posts.tables import PREPROCESSED_POSTS


def uris_on_other_days(client: PostgresClient, day: date) -> int:
    """The day's posts whose uri was also landed on another day."""
    table = client.qualified(PREPROCESSED_POSTS.name)
    return int(
        client.fetch_all(
            f"SELECT count(*) FROM {table} a WHERE a.partition_date = %s AND EXISTS "
            f"(SELECT 1 FROM {table} b WHERE b.uri = a.uri "
            "AND b.partition_date <> a.partition_date)",
            (day,),
        )[0][0]
    )


def posts_of_day(client: PostgresClient, day: date) -> int:
    client.ensure_table(PREPROCESSED_POSTS)
    return client.count(PREPROCESSED_POSTS, day)
