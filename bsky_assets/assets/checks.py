"""The checks preprocessed_posts carries, evaluated inside the ingest step for its day (the
label assets' checks are the engine's: lib/labelling/checks.py)."""

from datetime import date

import dagster as dg

from bsky_assets.db.client import PostgresClient
from bsky_assets.db.tables import PREPROCESSED_POSTS
from bsky_assets.lib.labelling.checks import check_spec
from bsky_assets.partitions import daily_partitions


def _scalar(client: PostgresClient, sql: str, params: dict) -> int:
    return int(client.fetch_all(sql, params)[0][0])


def _spec(name: str, asset: str, description: str) -> dg.AssetCheckSpec:
    return check_spec(name, asset, description, daily_partitions)


# -- preprocessed_posts ----------------------------------------------------------------------

POSTS_CHECK_SPECS = [
    _spec(
        "uris_unique_across_days",
        "preprocessed_posts",
        "The day's uris appear in no other day (uris are unique within a day by key).",
    ),
    _spec(
        "day_has_posts",
        "preprocessed_posts",
        "Warns on a day with no posts: its landing folder exists but held no usable batch. "
        "The day stays green (a quiet day must not stop a month's backfill) but is marked.",
    ),
]


def posts_checks(client: PostgresClient, day: date) -> list[dg.AssetCheckResult]:
    table = client.qualified(PREPROCESSED_POSTS.name)
    repeated = _scalar(
        client,
        f"SELECT count(*) FROM {table} a WHERE a.partition_date = %(day)s AND EXISTS "
        f"(SELECT 1 FROM {table} b WHERE b.uri = a.uri AND b.partition_date <> a.partition_date)",
        {"day": day},
    )
    posts = _scalar(
        client, f"SELECT count(*) FROM {table} WHERE partition_date = %(day)s", {"day": day}
    )
    return [
        dg.AssetCheckResult(
            asset_key="preprocessed_posts",
            check_name="uris_unique_across_days",
            passed=repeated == 0,
            severity=dg.AssetCheckSeverity.WARN,  # a post re-landing on another day is data
            metadata={"day": str(day), "uris_also_on_other_days": repeated},
        ),
        dg.AssetCheckResult(
            asset_key="preprocessed_posts",
            check_name="day_has_posts",
            passed=posts > 0,
            severity=dg.AssetCheckSeverity.WARN,
            description=None if posts else f"{day} has no posts: an empty landing folder",
            metadata={"day": str(day), "posts": posts},
        ),
    ]
