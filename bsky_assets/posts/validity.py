"""Which posts may be sent to a labeler: the one definition of validity.

The `valid_posts` asset applies it, the label tables write a failed row with the reason for every
invalid post, the pending-post filter and the failure-rate check exclude those rows by the same
reasons (passed to SQL as a bound list), so a new reason cannot silently break any of them.
"""

from __future__ import annotations

from enum import StrEnum

import polars as pl

from bsky_assets.perspective.attributes import MAX_COMMENT_BYTES

DEFAULT_MIN_TEXT_CHARS = 8  # the seed's rule: shorter stripped texts (empty ones too) are invalid
MAX_TEXT_BYTES = MAX_COMMENT_BYTES  # Perspective rejects longer comments


class InvalidReason(StrEnum):
    TEXT_TOO_SHORT = "text_too_short"
    TEXT_TOO_LONG = "text_too_long"


INVALID_REASONS: list[str] = [reason.value for reason in InvalidReason]


def with_validity(frame: pl.DataFrame, min_text_chars: int) -> pl.DataFrame:
    """Add is_valid and invalid_reason to a frame of posts (a `text` column)."""
    too_short = pl.col("text").str.strip_chars().str.len_chars() < min_text_chars
    too_long = pl.col("text").str.len_bytes() > MAX_TEXT_BYTES
    reason = (
        pl.when(too_short)
        .then(pl.lit(InvalidReason.TEXT_TOO_SHORT.value))
        .when(too_long)
        .then(pl.lit(InvalidReason.TEXT_TOO_LONG.value))
        .otherwise(pl.lit(None, dtype=pl.String()))
    )
    return frame.with_columns(invalid_reason=reason).with_columns(
        is_valid=pl.col("invalid_reason").is_null()
    )
