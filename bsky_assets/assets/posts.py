"""From landing batches to the posts that may be sent to the classifiers."""

from collections import Counter
from datetime import date

import dagster as dg
import polars as pl

from bsky_assets.db.client import FrameStream, TableSlice
from bsky_assets.db.tables import LANDING_REJECTS
from bsky_assets.landing import LandingDayReader
from bsky_assets.partitions import daily_partitions, one_run_per_day
from bsky_assets.resources.landing import LandingFolder
from bsky_assets.resources.postgres import PostgresResource

GROUP = "posts"
PERSPECTIVE_MAX_TEXT_BYTES = 20_480  # Perspective rejects longer comments

landing_batches = dg.AssetSpec(
    "landing_batches",
    description=(
        "Preprocessed batches researchers drop into the landing folder: "
        "<landing>/<YYYY-MM-DD>/<batch_id>.jsonl[.gz]. External: produced outside Dagster."
    ),
    group_name=GROUP,
    kinds={"file"},
    partitions_def=daily_partitions,
)

_COMMON = dict(
    partitions_def=daily_partitions,
    backfill_policy=one_run_per_day,
    io_manager_key="postgres_io_manager",
    group_name=GROUP,
    kinds={"postgres", "polars"},
)


@dg.asset(deps=[landing_batches], **_COMMON)
def preprocessed_posts(
    context: dg.AssetExecutionContext, landing: LandingFolder, postgres: PostgresResource
):
    """Every batch of the day, deduplicated by uri (newest preprocessing_timestamp wins).

    Unusable lines go to the landing_rejects table with file, line number and reason.
    """
    day = date.fromisoformat(context.partition_key)
    reader = LandingDayReader(landing.day_dir(day))
    if not reader.files:
        context.log.warning(f"no batch files in {landing.day_dir(day)}: the partition is empty")
    yield dg.Output(reader)  # the IO manager streams it into Postgres, then reads its metadata
    rejects = reader.rejects_frame()
    postgres.get_client().write_partition(LANDING_REJECTS, day, rejects)
    if rejects.height:
        context.log.warning(f"{rejects.height} lines rejected: {reader.rejects_by_reason}")


@dg.asset(**_COMMON)
def classification_metadata(preprocessed_posts: TableSlice) -> FrameStream:
    """One row per post to classify, inserted only where absent so first_seen is kept."""
    columns = ["uri", "batch_id", "preprocessing_timestamp", "text", "langs"]
    return FrameStream(
        frame.with_columns(text_length=pl.col("text").str.len_chars()).drop("text")
        for frame in preprocessed_posts.iter_frames(columns)
    )


class ValidPostsConfig(dg.Config):
    min_text_chars: int = 8  # the seed's rule: shorter stripped texts (empty too) are invalid


def validity(frame: pl.DataFrame, min_text_chars: int) -> pl.DataFrame:
    """Add is_valid and invalid_reason (text_too_short, text_too_long) to a frame of posts."""
    too_short = pl.col("text").str.strip_chars().str.len_chars() < min_text_chars
    too_long = pl.col("text").str.len_bytes() > PERSPECTIVE_MAX_TEXT_BYTES
    reason = (
        pl.when(too_short)
        .then(pl.lit("text_too_short"))
        .when(too_long)
        .then(pl.lit("text_too_long"))
        .otherwise(pl.lit(None, dtype=pl.String()))
    )
    return frame.with_columns(invalid_reason=reason).with_columns(
        is_valid=pl.col("invalid_reason").is_null()
    )


@dg.asset(deps=[classification_metadata], **_COMMON)
def valid_posts(config: ValidPostsConfig, preprocessed_posts: TableSlice) -> FrameStream:
    """Every post of the day with is_valid and, when invalid, the reason it may not be sent."""
    counts: Counter[str] = Counter()

    def frames():
        for frame in preprocessed_posts.iter_frames(["uri", "batch_id", "text", "langs"]):
            checked = validity(frame, config.min_text_chars)
            counts.update(checked.get_column("invalid_reason").fill_null("valid").to_list())
            yield checked

    def metadata() -> dict:
        return {
            "valid_posts": counts.get("valid", 0),
            "invalid_by_reason": {k: v for k, v in sorted(counts.items()) if k != "valid"},
            "min_text_chars": config.min_text_chars,
        }

    return FrameStream(frames(), metadata)
