"""The landing contract: daily folders of JSON-lines batches, read as a stream of polars chunks.

`<landing>/<YYYY-MM-DD>/<batch_id>.jsonl` or `.jsonl.gz`, one post per line. Lines that cannot be
used are never fatal and never silently dropped: each becomes a reject with file, line number and
reason. Files are read one line at a time, so memory is bounded by the chunk size.
"""

from __future__ import annotations

import gzip
import json
import zlib
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, date, datetime
from enum import StrEnum
from pathlib import Path
from typing import IO, Any

import polars as pl

from bsky_assets.db.tables import LANDING_REJECTS, PREPROCESSED_POSTS

BATCH_SUFFIXES = (".jsonl.gz", ".jsonl")
RAW_LINE_LIMIT = 2_000  # characters of a rejected line kept for inspection

REQUIRED_STRINGS = ("uri", "text")
REQUIRED_TIMESTAMPS = ("created_at", "preprocessing_timestamp")
OPTIONAL_STRINGS = (
    "cid",
    "author_did",
    "author_handle",
    "indexed_at",
    "reply_parent",
    "reply_root",
    "source",
)
OPTIONAL_INTEGERS = ("like_count", "reply_count", "repost_count")
POST_COLUMNS = [c for c in PREPROCESSED_POSTS.column_names if c != "partition_date"]


class RejectReason(StrEnum):
    INVALID_UTF8 = "invalid_utf8"
    INVALID_JSON = "invalid_json"
    NOT_AN_OBJECT = "not_an_object"
    BLANK_LINE = "blank_line"
    MISSING_FIELD = "missing_field"
    WRONG_TYPE = "wrong_type"
    INVALID_URI = "invalid_uri"
    INVALID_TIMESTAMP = "invalid_timestamp"
    NUL_BYTE = "nul_byte"
    INVALID_UNICODE = "invalid_unicode"
    UNREADABLE_FILE = "unreadable_file"


class RejectedLine(Exception):
    def __init__(self, reason: RejectReason, detail: str | None = None) -> None:
        super().__init__(f"{reason}: {detail}" if detail else str(reason))
        self.reason = reason
        self.detail = detail


def batch_id_of(path: Path) -> str | None:
    """The batch id a file name carries, or None if the file is not a (finished) batch.

    Writers follow write-then-rename: anything hidden (`.name`) or not ending in a batch suffix
    (`x.jsonl.tmp`, `x.jsonl.part`) is still being written and is ignored.
    """
    name = path.name
    if name.startswith("."):
        return None
    for suffix in BATCH_SUFFIXES:
        if name.endswith(suffix) and len(name) > len(suffix):
            return name[: -len(suffix)]
    return None


def batch_files(day_dir: Path) -> list[Path]:
    """Finished batch files of one day folder, in name order."""
    if not day_dir.is_dir():
        return []
    return sorted(p for p in day_dir.iterdir() if p.is_file() and batch_id_of(p) is not None)


def parse_partition_folder(name: str) -> date | None:
    """The day a landing folder names, or None when the folder is not a YYYY-MM-DD date."""
    try:
        day = date.fromisoformat(name)
    except ValueError:
        return None
    return day if day.isoformat() == name else None


def parse_timestamp(value: Any) -> datetime:
    if not isinstance(value, str):
        raise ValueError("not a string")
    parsed = datetime.fromisoformat(value)
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


def _check_text(field: str, value: str) -> str:
    if "\x00" in value:
        raise RejectedLine(RejectReason.NUL_BYTE, field)
    if not value.isascii():
        try:
            value.encode("utf-8")
        except UnicodeEncodeError as exc:  # lone surrogates from "\ud800" escapes
            raise RejectedLine(RejectReason.INVALID_UNICODE, field) from exc
    return value


def parse_post(record: Any) -> dict[str, Any]:
    """Validate one decoded JSON line against the contract; return the post's column values."""
    if not isinstance(record, dict):
        raise RejectedLine(RejectReason.NOT_AN_OBJECT, type(record).__name__)
    post: dict[str, Any] = {}
    for field in (*REQUIRED_STRINGS, *REQUIRED_TIMESTAMPS):
        if field not in record or record[field] is None:
            raise RejectedLine(RejectReason.MISSING_FIELD, field)
    for field in REQUIRED_STRINGS:
        if not isinstance(record[field], str):
            raise RejectedLine(RejectReason.WRONG_TYPE, field)
        post[field] = _check_text(field, record[field])
    if not post["uri"].startswith("at://"):
        raise RejectedLine(RejectReason.INVALID_URI, "uri")
    for field in REQUIRED_TIMESTAMPS:
        if not isinstance(record[field], str):
            raise RejectedLine(RejectReason.WRONG_TYPE, field)
        try:
            post[field] = parse_timestamp(record[field])
        except ValueError as exc:
            raise RejectedLine(RejectReason.INVALID_TIMESTAMP, field) from exc
    for field in OPTIONAL_STRINGS:
        value = record.get(field)
        if value is not None and not isinstance(value, str):
            raise RejectedLine(RejectReason.WRONG_TYPE, field)
        post[field] = None if value is None else _check_text(field, value)
    for field in OPTIONAL_INTEGERS:
        value = record.get(field)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
            raise RejectedLine(RejectReason.WRONG_TYPE, field)
        if value is not None and not -(2**63) <= value < 2**63:
            raise RejectedLine(RejectReason.WRONG_TYPE, field)
        post[field] = value
    langs = record.get("langs")
    if langs is not None:
        if not isinstance(langs, list) or not all(isinstance(x, str) for x in langs):
            raise RejectedLine(RejectReason.WRONG_TYPE, "langs")
        for lang in langs:
            _check_text("langs", lang)
        post["langs"] = json.dumps(langs)
    else:
        post["langs"] = None
    return post


class LandingDayReader:
    """Iterates one day's batches as polars chunks; collects rejects and counts on the way.

    Iterate it once. After iteration `rejects_frame()` and `metadata` describe what was read.
    """

    def __init__(self, day_dir: Path, chunk_rows: int = 20_000) -> None:
        self.day_dir = day_dir
        self.chunk_rows = chunk_rows
        self.files = batch_files(day_dir)
        self.lines_read = 0
        self.posts_read = 0
        self._rejects: list[dict[str, Any]] = []

    def __iter__(self) -> Iterator[pl.DataFrame]:
        columns: dict[str, list[Any]] = {c: [] for c in POST_COLUMNS}
        for path in self.files:
            batch_id = batch_id_of(path)
            assert batch_id is not None
            for line_number, post in self._posts_of(path):
                post["batch_id"] = batch_id
                post["source_file"] = path.name
                post["line_number"] = line_number
                for column, values in columns.items():
                    values.append(post[column])
                self.posts_read += 1
                if len(columns["uri"]) >= self.chunk_rows:
                    yield self._frame(columns)
                    columns = {c: [] for c in POST_COLUMNS}
        if columns["uri"]:
            yield self._frame(columns)

    def _frame(self, columns: dict[str, list[Any]]) -> pl.DataFrame:
        return pl.DataFrame(columns, schema=PREPROCESSED_POSTS.polars_schema(POST_COLUMNS))

    def _posts_of(self, path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
        line_number = 0
        try:
            with _open_batch(path) as handle:
                for line_number, raw in enumerate(handle, start=1):
                    self.lines_read += 1
                    try:
                        yield line_number, parse_post(_decode(raw))
                    except RejectedLine as rejected:
                        self._reject(path, line_number, rejected.reason, rejected.detail, raw)
        except (OSError, EOFError, zlib.error) as exc:  # truncated or corrupt gzip, I/O error
            self._reject(
                path, line_number + 1, RejectReason.UNREADABLE_FILE, type(exc).__name__, b""
            )

    def _reject(
        self, path: Path, line: int, reason: RejectReason, detail: str | None, raw: bytes
    ) -> None:
        text = raw.decode("utf-8", errors="backslashreplace").replace("\x00", "\\x00")
        text = text.encode("utf-8", errors="backslashreplace").decode("utf-8")
        self._rejects.append(
            {
                "source_file": path.name,
                "line_number": line,
                "reason": reason.value,
                "detail": detail,
                "raw_line": text.rstrip("\r\n")[:RAW_LINE_LIMIT],
            }
        )

    def rejects_frame(self) -> pl.DataFrame:
        columns = [c for c in LANDING_REJECTS.column_names if c != "partition_date"]
        return pl.DataFrame(self._rejects, schema=LANDING_REJECTS.polars_schema(columns))

    @property
    def rejects_by_reason(self) -> dict[str, int]:
        return dict(sorted(Counter(r["reason"] for r in self._rejects).items()))

    @property
    def metadata(self) -> dict[str, Any]:
        return {
            "batch_files": len(self.files),
            "lines_read": self.lines_read,
            "posts_read": self.posts_read,
            "lines_rejected": len(self._rejects),
            "rejects_by_reason": self.rejects_by_reason,
        }


def _open_batch(path: Path) -> IO[bytes]:
    return gzip.open(path, "rb") if path.name.endswith(".gz") else path.open("rb")


def _decode(raw: bytes) -> Any:
    try:
        line = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise RejectedLine(RejectReason.INVALID_UTF8, f"byte {exc.start}") from exc
    if not line.strip():
        raise RejectedLine(RejectReason.BLANK_LINE)
    try:
        return json.loads(line)
    except json.JSONDecodeError as exc:
        raise RejectedLine(RejectReason.INVALID_JSON, exc.msg) from exc
