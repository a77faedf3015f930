"""The checks preprocessed_posts carries, evaluated inside the ingest step for its day (the
label assets' checks are the engine's: lib/labelling/checks.py)."""

from __future__ import annotations

from datetime import date

import dagster as dg

from bsky_assets.lib.db.client import PostgresClient
from bsky_assets.lib.labelling.checks import check_spec
from bsky_assets.posts import store

ASSET = "preprocessed_posts"


def posts_check_specs(partitions: dg.PartitionsDefinition) -> list[dg.AssetCheckSpec]:
    return [
        check_spec(
            "uris_unique_across_days",
            ASSET,
            "The day's uris appear in no other day (uris are unique within a day by key).",
            partitions,
        ),
        check_spec(
            "day_has_posts",
            ASSET,
            "Warns on a day with no posts: its landing folder exists but held no usable batch. "
            "The day stays green (a quiet day must not stop a month's backfill) but is marked.",
            partitions,
        ),
    ]


def posts_checks(client: PostgresClient, day: date) -> list[dg.AssetCheckResult]:
    repeated = store.uris_on_other_days(client, day)
    posts = store.posts_of_day(client, day)
    return [
        dg.AssetCheckResult(
            asset_key=ASSET,
            check_name="uris_unique_across_days",
            passed=repeated == 0,
            severity=dg.AssetCheckSeverity.WARN,  # a post re-landing on another day is data
            metadata={"day": str(day), "uris_also_on_other_days": repeated},
        ),
        dg.AssetCheckResult(
            asset_key=ASSET,
            check_name="day_has_posts",
            passed=posts > 0,
            severity=dg.AssetCheckSeverity.WARN,
            description=None if posts else f"{day} has no posts: an empty landing folder",
            metadata={"day": str(day), "posts": posts},
        ),
    ]
