"""Perspective history: every text Google's API scored, with its scores, as training data.

Two sources: `perspective_labels` rows written by Google's API (joined to their text), and files a
group kept outside the database (CSV or Parquet exports), imported into `perspective_history`.
History is its own table, one row per (text, attribute); it is never disguised as label rows.
Importing the same scores twice adds nothing; a row that cannot be used is counted by reason.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import polars as pl

from bsky_assets.lib.db.client import PostgresClient
from bsky_assets.perspective.attributes import ATTRIBUTE_COLUMNS, COLUMN_ALIASES
from bsky_assets.successor import store
from bsky_assets.successor.digests import file_sha256, text_sha256
from bsky_assets.successor.tables import PERSPECTIVE_HISTORY, PERSPECTIVE_HISTORY_IMPORTS

ATTRIBUTE_NAME = re.compile(r"^[A-Z][A-Z0-9_]{1,79}$")
TIME_COLUMNS = ("scored_at", "created_at", "created_utc", "label_timestamp", "timestamp")
# prob_constructive means REASONING_EXPERIMENTAL in this project's tables, but a genuine
# CONSTRUCTIVE_EXPERIMENTAL score in older exports: a file's column is imported only when mapped.
AMBIGUOUS_COLUMNS = {"prob_constructive"}
DEFAULT_COLUMN_MAP = {
    column: attribute
    for attribute, column in ATTRIBUTE_COLUMNS.items()
    if column not in AMBIGUOUS_COLUMNS
}
MAX_REJECT_EXAMPLES = 20
# Unix seconds a Perspective score can carry (1970 to 2100); beyond them polars cannot even
# represent the datetime (±9e12 s panicked the import), so such a row is rejected by reason.
SECONDS_RANGE = (0.0, 4_102_444_800.0)


class HistoryFileError(ValueError):
    """The file cannot be imported at all (unreadable, no text column, nothing to map)."""


@dataclass
class ImportReport:
    source: str
    file_sha256: str
    rows_read: int = 0
    rows_imported: int = 0
    scores_added: int = 0
    scores_already_known: int = 0
    column_map: dict[str, str] = field(default_factory=dict)
    ignored_columns: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    rejects: Counter[str] = field(default_factory=Counter)
    reject_examples: list[dict[str, Any]] = field(default_factory=list)
    already_imported: bool = False
    duplicate_texts_merged: int = 0  # rows whose text an earlier row of the file already had
    conflicting_scores: int = 0  # of those, scores that differed from the first (first kept)

    def as_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "file_sha256": self.file_sha256,
            "rows_read": self.rows_read,
            "rows_imported": self.rows_imported,
            "scores_added": self.scores_added,
            "scores_already_known": self.scores_already_known,
            "rejected": dict(self.rejects),
            "reject_examples": self.reject_examples,
            "column_map": self.column_map,
            "ignored_columns": self.ignored_columns,
            "warnings": self.warnings,
            "already_imported": self.already_imported,
            "duplicate_texts_merged": self.duplicate_texts_merged,
            "conflicting_scores": self.conflicting_scores,
        }


def parse_column_map(pairs: list[str]) -> dict[str, str]:
    """`prob_x=ATTRIBUTE_NAME` pairs from the command line."""
    mapping = {}
    for pair in pairs:
        column, sep, attribute = pair.partition("=")
        if not sep or not column or not ATTRIBUTE_NAME.fullmatch(attribute):
            raise HistoryFileError(
                f"--column takes COLUMN=ATTRIBUTE_NAME (e.g. prob_constructive="
                f"CONSTRUCTIVE_EXPERIMENTAL), got {pair!r}"
            )
        mapping[column] = attribute
    return mapping


def _read(path: Path) -> pl.DataFrame:
    suffix = "".join(path.suffixes[-2:]).lower()
    try:
        if suffix.endswith(".parquet"):
            return pl.read_parquet(path)
        if suffix.endswith((".csv", ".csv.gz", ".tsv")):
            return pl.read_csv(
                path,
                infer_schema_length=0,  # every column as text: values are validated here
                separator="\t" if suffix.endswith(".tsv") else ",",
                encoding="utf8-lossy",
            )
    except (pl.exceptions.PolarsError, OSError) as error:
        raise HistoryFileError(f"cannot read {path.name}: {type(error).__name__}") from None
    raise HistoryFileError(f"{path.name}: expected a .csv, .tsv or .parquet file")


def _seconds(values: pl.Series) -> pl.Series:
    return values.cast(pl.String()).cast(pl.Float64(), strict=False)


def _timestamps(values: pl.Series) -> pl.Series:
    """Unix seconds or ISO 8601, as UTC datetimes; anything else (and seconds outside
    SECONDS_RANGE, which the caller rejects) becomes null."""
    text = values.cast(pl.String())
    seconds = _seconds(values)
    low, high = SECONDS_RANGE
    in_range = pl.select(
        pl.when(seconds.is_between(low, high)).then(seconds).otherwise(None)
    ).to_series()
    from_seconds = (in_range * 1_000_000).cast(pl.Int64(), strict=False).cast(pl.Datetime("us"))
    from_iso = text.str.to_datetime(time_zone="UTC", strict=False, time_unit="us")
    combined = pl.select(
        pl.when(seconds.is_not_null())
        .then(from_seconds.dt.replace_time_zone("UTC"))
        .otherwise(from_iso)
    ).to_series()
    return combined.alias("scored_at")


def import_history(
    client: PostgresClient,
    path: Path,
    text_column: str = "text",
    column_map: dict[str, str] | None = None,
    time_column: str | None = None,
) -> ImportReport:
    """Import one CSV/Parquet file of texts and Perspective scores into `perspective_history`."""
    frame = _read(path)
    report = ImportReport(source=path.name, file_sha256=file_sha256(path))
    if text_column not in frame.columns:
        raise HistoryFileError(
            f"{path.name} has no {text_column!r} column (use --text-column); columns: "
            f"{', '.join(frame.columns[:30])}"
        )
    explicit = column_map or {}
    mapping = {c: a for c, a in DEFAULT_COLUMN_MAP.items() if c in frame.columns} | {
        c: a for c, a in explicit.items() if c in frame.columns
    }
    missing = sorted(set(explicit) - set(frame.columns))
    if missing:
        raise HistoryFileError(f"{path.name} has no column(s) {missing} named in --column")
    for column in sorted(AMBIGUOUS_COLUMNS & set(frame.columns) - set(mapping)):
        report.warnings.append(
            f"{column} skipped: it may be REASONING_EXPERIMENTAL (this project's alias) or a "
            "genuine CONSTRUCTIVE_EXPERIMENTAL score; map it with --column "
            f"{column}=CONSTRUCTIVE_EXPERIMENTAL or ={COLUMN_ALIASES.get(column, '...')}"
        )
    if not mapping:
        raise HistoryFileError(f"{path.name}: no score column to import (prob_* or --column)")
    report.column_map = mapping
    time_column = time_column or next((c for c in TIME_COLUMNS if c in frame.columns), None)
    report.ignored_columns = sorted(
        set(frame.columns) - set(mapping) - {text_column, time_column or ""}
    )
    report.rows_read = frame.height

    columns = {"text": frame.get_column(text_column).cast(pl.String())}
    for column in mapping:
        columns[column] = frame.get_column(column)
    work = pl.DataFrame(columns).with_row_index("row", offset=2 if path.suffix == ".csv" else 1)
    if time_column:
        seconds = _seconds(frame.get_column(time_column))
        work = work.with_columns(
            _timestamps(frame.get_column(time_column)),
            seconds_out_of_range=seconds.is_not_null()
            & ~seconds.is_between(*SECONDS_RANGE)
            & ~seconds.is_nan(),
        )
    else:
        work = work.with_columns(
            scored_at=pl.lit(None, dtype=pl.Datetime("us", "UTC")), seconds_out_of_range=False
        )

    reasons: list[pl.Expr] = [
        pl.when(pl.col("text").is_null() | (pl.col("text").str.strip_chars() == "")).then(
            pl.lit("missing_text")
        ),
        # Postgres text cannot hold NUL: one such row aborted the whole import
        pl.when(pl.col("text").str.contains("\x00", literal=True)).then(
            pl.lit("text_contains_nul")
        ),
        pl.when(pl.col("seconds_out_of_range")).then(pl.lit("timestamp_out_of_range")),
    ]
    numbers = {}
    for column in mapping:
        value = pl.col(column).cast(pl.String()).str.strip_chars()
        number = value.cast(pl.Float64(), strict=False)
        numbers[column] = number
        reasons.append(
            pl.when(value.is_not_null() & (value != "") & number.is_null())
            .then(pl.lit(f"not_a_number:{column}"))
            .when(number.is_nan())
            .then(pl.lit(f"not_a_number:{column}"))
            .when((number < 0) | (number > 1))
            .then(pl.lit(f"score_out_of_range:{column}"))
        )
    any_score = pl.any_horizontal([n.is_not_null() for n in numbers.values()])
    reasons.append(pl.when(~any_score).then(pl.lit("no_scores")))
    work = work.with_columns(reason=pl.coalesce(reasons)).with_columns(
        [n.alias(c) for c, n in numbers.items()]
    )
    rejected = work.filter(pl.col("reason").is_not_null())
    for reason, n in rejected.group_by("reason").len().iter_rows():
        report.rejects[reason.split(":")[0]] += n
    report.reject_examples = [
        {"row": int(row), "reason": reason}
        for row, reason in rejected.select("row", "reason").head(MAX_REJECT_EXAMPLES).iter_rows()
    ]
    good = work.filter(pl.col("reason").is_null()).drop("seconds_out_of_range")
    report.rows_imported = good.height

    long = (
        good.with_columns(
            text_sha256=pl.col("text").map_elements(text_sha256, return_dtype=pl.String())
        )
        .unpivot(
            index=["text_sha256", "text", "scored_at"],
            on=list(mapping),
            variable_name="column",
            value_name="score",
        )
        .drop_nulls("score")
        .with_columns(attribute=pl.col("column").replace_strict(mapping, return_dtype=pl.String()))
        .drop("column")
        .with_columns(source=pl.lit(path.name))
    )
    report.duplicate_texts_merged = good.height - long.get_column("text_sha256").n_unique()
    firsts = long.group_by(["text_sha256", "attribute"], maintain_order=True).agg(
        pl.col("score").first().alias("first"), pl.col("score")
    )
    report.conflicting_scores = int(
        firsts.explode("score").filter(pl.col("score") != pl.col("first")).height
    )
    long = long.unique(["text_sha256", "attribute"], keep="first", maintain_order=True)
    report.already_imported = store.file_was_imported(client, report.file_sha256)
    report.scores_added = client.insert_missing(PERSPECTIVE_HISTORY, long)
    report.scores_already_known = long.height - report.scores_added
    client.insert_rows(
        PERSPECTIVE_HISTORY_IMPORTS,
        [
            {
                "file_sha256": report.file_sha256,
                "source": path.name,
                "imported_at": datetime.now(UTC),
                "rows_read": report.rows_read,
                "scores_added": report.scores_added,
                "rejects": json.dumps(dict(report.rejects)),
                "column_map": json.dumps(mapping),
            }
        ],
    )
    return report


def training_frame(client: PostgresClient) -> pl.DataFrame:
    """Every text Google scored, one row each: text_sha256, text, scored_at, one column per
    attribute (null where not scored). Imported history first; then Google's own label rows
    (joined to the post text) for texts the history lacks."""
    attributes = list(ATTRIBUTE_COLUMNS)
    schema = {
        "text_sha256": pl.String(),
        "text": pl.String(),
        "scored_at": pl.Datetime("us", "UTC"),
        **dict.fromkeys(attributes, pl.Float64()),
    }
    frames = [
        *store.imported_scores(client, attributes, schema),
        *store.google_scores(client, attributes, schema),
    ]
    if not frames:
        return pl.DataFrame(schema=schema)
    combined = pl.concat(frames, how="vertical")
    return combined.unique("text_sha256", keep="first", maintain_order=True).sort("text_sha256")
