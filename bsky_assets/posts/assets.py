"""From landing batches to the posts that may be sent to the labellers.

`posts_assets(partitions, landing_dir)` builds the domain's assets when the definitions are built
(the partitions and the landing folder they describe come from the environment then, never at
import); the bodies below are plain functions.
"""

from collections import Counter
from datetime import date
from pathlib import Path

import dagster as dg
import polars as pl

from bsky_assets.lib.db.frames import FrameStream
from bsky_assets.lib.db.partition_slice import PartitionSlice
from bsky_assets.lib.db.resource import PostgresResource
from bsky_assets.posts.checks import posts_check_specs, posts_checks
from bsky_assets.posts.day_folder import list_day
from bsky_assets.posts.landing import LandingDayReader
from bsky_assets.posts.resource import LandingFolder
from bsky_assets.posts.sensor import INGESTED_FROM
from bsky_assets.posts.tables import (
    CLASSIFICATION_METADATA,
    LANDING_REJECTS,
    PREPROCESSED_POSTS,
    VALID_POSTS,
)
from bsky_assets.posts.validity import DEFAULT_MIN_TEXT_CHARS, with_validity

GROUP = "posts"
POSTS, REJECTS = "preprocessed_posts", "landing_rejects"
_STORED = dict(io_manager_key="postgres_io_manager", group_name=GROUP, kinds={"postgres", "polars"})
_SUBSETTABLE = dict(is_required=False, **_STORED)  # an output of an ingest either may run alone


class IngestConfig(dg.Config):
    max_shrink: float = 0.5  # a re-ingest losing more than this share of the day's posts fails
    allow_shrink: bool = False  # ... unless the run says so


class ShrinkingDay(Exception):
    """Re-ingesting the day would drop too many of its posts."""


def ingest_landing(
    context: dg.AssetExecutionContext,
    config: IngestConfig,
    landing: LandingFolder,
    postgres: PostgresResource,
):
    """Read the day's batches once: the posts, and a reasoned row for every unusable line.

    Either output may be selected alone (`--select preprocessed_posts`, `*perspective_labels`).
    The day's rejects are written whenever the day is read: through the IO manager when
    `landing_rejects` is selected, else straight through the client (and recorded as its
    materialization), so every line that lands is a post or a row saying why.

    A day never silently ends emptier than it was: a missing day folder fails the run, and a
    day whose distinct posts would shrink by more than `max_shrink` is rolled back (the write is
    one transaction) unless the run says `allow_shrink`.
    """
    day = date.fromisoformat(context.partition_key)
    folder = landing.day_dir(day)
    client = postgres.get_client()
    previous = client.count(PREPROCESSED_POSTS, day)
    if not folder.is_dir():
        raise dg.Failure(
            description=f"no landing folder {folder} for {day}"
            + (f"; the day holds {previous:,} posts, kept as they are" if previous else "")
            + ". Restore the folder, or pick a day that has batches.",
            metadata={"landing_folder": dg.MetadataValue.path(str(folder)), "posts": previous},
        )
    selected = {key.to_user_string() for key in context.selected_asset_keys}
    fingerprint = list_day(folder, landing.root).fingerprint
    with LandingDayReader(folder, root=landing.root) as reader:
        if reader.skipped:
            context.log.warning(f"entries passed over in the day folder: {dict(reader.skipped)}")
        if not reader.files:
            context.log.warning(f"no batch files in {folder}: the day has no posts")

        def guarded():
            yield from reader
            kept = 1 - config.max_shrink
            remaining = reader.distinct_posts
            if previous and remaining < kept * previous and not config.allow_shrink:
                raise ShrinkingDay(
                    f"{day} would go from {previous:,} posts to {remaining:,} distinct posts "
                    f"({reader.posts_read:,} read; more than {config.max_shrink:.0%} fewer): "
                    "nothing was changed. If batches were removed on purpose, run again with "
                    "allow_shrink: true (ingest_landing)."
                )

        # The IO manager streams the posts into Postgres; only then are the rejects known.
        def metadata() -> dict:
            return {
                "landing_folder": dg.MetadataValue.path(str(folder)),
                INGESTED_FROM: fingerprint,  # the sensor does not run these files again
                "empty_day": not reader.files,
                **reader.metadata,
                "distinct_posts": reader.distinct_posts,
            }

        if POSTS in selected:
            yield dg.Output(FrameStream(guarded(), metadata), output_name=POSTS)
        else:
            reader.drain()
        if reader.lines_rejected:
            context.log.warning(
                f"{reader.lines_rejected} lines rejected: {reader.rejects_by_reason}"
            )
        by_reason = {"rejects_by_reason": reader.rejects_by_reason}
        if REJECTS in selected:
            yield dg.Output(FrameStream(reader.rejects()), output_name=REJECTS, metadata=by_reason)
        else:
            written = client.write_partition(LANDING_REJECTS, day, FrameStream(reader.rejects()))
            client.analyze(LANDING_REJECTS)
            yield dg.AssetMaterialization(
                asset_key=REJECTS,
                partition=context.partition_key,
                description="Written with the posts (landing_rejects was not selected).",
                metadata={"rows_written": dg.MetadataValue.int(written), **by_reason},
            )
    checks = context.selected_asset_check_keys
    for result in posts_checks(client, day):  # the posts are written by now
        if dg.AssetCheckKey(dg.AssetKey(POSTS), result.check_name) in checks:
            yield result


def classification_metadata(preprocessed_posts: PartitionSlice) -> FrameStream:
    """One row per post to classify, inserted only where absent so first_seen is kept."""
    columns = ["uri", "batch_id", "preprocessing_timestamp", "text", "langs"]
    return FrameStream(
        frame.with_columns(text_length=pl.col("text").str.len_chars()).drop("text")
        for frame in preprocessed_posts.iter_frames(columns)
    )


class ValidPostsConfig(dg.Config):
    min_text_chars: int = DEFAULT_MIN_TEXT_CHARS


def valid_posts(config: ValidPostsConfig, preprocessed_posts: PartitionSlice) -> FrameStream:
    """Every post of the day with is_valid and, when invalid, the reason it may not be sent."""
    counts: Counter[str] = Counter()

    def frames():
        for frame in preprocessed_posts.iter_frames(["uri", "batch_id", "text", "langs"]):
            checked = with_validity(frame, config.min_text_chars)
            counts.update(checked.get_column("invalid_reason").fill_null("valid").to_list())
            yield checked

    def metadata() -> dict:
        return {
            "valid_posts": counts.get("valid", 0),
            "invalid_by_reason": {k: v for k, v in sorted(counts.items()) if k != "valid"},
            "min_text_chars": config.min_text_chars,
        }

    return FrameStream(frames(), metadata)


def posts_assets(
    partitions: dg.PartitionsDefinition, landing_dir: Path
) -> list[dg.AssetSpec | dg.AssetsDefinition]:
    """The domain's assets over `partitions`; `landing_dir` is named in the source's description."""
    landing_batches = dg.AssetSpec(
        "landing_batches",
        description=(
            "Preprocessed batches researchers drop into the landing folder, one folder per day "
            "(`<landing>/YYYY-MM-DD/<batch_id>.jsonl[.gz]`). External: produced outside "
            f"Dagster.\n\nLanding folder of this code location: `{landing_dir}` "
            "(BSKY_LANDING_DIR)."
        ),
        group_name=GROUP,
        kinds={"file"},
        partitions_def=partitions,
    )
    ingest = dg.multi_asset(
        name="ingest_landing",
        outs={
            POSTS: dg.AssetOut(
                description="Every batch of the day, deduplicated by uri (newest "
                "preprocessing_timestamp wins).",
                metadata=PREPROCESSED_POSTS.as_metadata(),
                **_SUBSETTABLE,
            ),
            REJECTS: dg.AssetOut(
                description="Every landing line that could not be used: file, line number, "
                "reason, detail and the start of the line. Written with the posts whatever the "
                "selection.",
                metadata=LANDING_REJECTS.as_metadata(),
                **_SUBSETTABLE,
            ),
        },
        deps=[landing_batches],
        partitions_def=partitions,  # a backfill is one run per day, each tagged with its day
        check_specs=posts_check_specs(partitions),
        can_subset=True,
    )(ingest_landing)
    stored = dict(partitions_def=partitions, **_STORED)
    metadata = dg.asset(
        name="classification_metadata", metadata=CLASSIFICATION_METADATA.as_metadata(), **stored
    )(classification_metadata)
    valid = dg.asset(
        name="valid_posts",
        deps=["classification_metadata"],
        metadata=VALID_POSTS.as_metadata(),
        **stored,
    )(valid_posts)
    return [landing_batches, ingest, metadata, valid]
