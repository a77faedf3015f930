"""The landing contract: daily folders of JSON-lines batches, read as a stream of polars chunks.

`<landing>/<YYYY-MM-DD>/<batch_id>.jsonl` or `.jsonl.gz`, one post per line. Lines that cannot be
used are never fatal and never silently dropped: each becomes a reject with file, line number and
reason. Files are read one line at a time, so memory is bounded by the chunk size.
"""

from __future__ import annotations

import contextlib
import dataclasses
import gzip
import json
import os
import stat
import zlib
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, date, datetime
from enum import StrEnum
from pathlib import Path
from typing import IO, Any

import polars as pl

from bsky_assets import settings
from bsky_assets.db.tables import LANDING_REJECTS, PREPROCESSED_POSTS
from bsky_assets.secrets import scrub

BATCH_SUFFIXES = (".jsonl.gz", ".jsonl")
RAW_LINE_LIMIT = 2_000  # characters of a rejected line kept for inspection
MAX_URI_BYTES = 1_024  # a key Postgres can index (btree rows are limited to ~2.7 kB)
NOT_JSON_EXCERPT = 120  # characters kept of a line that is not JSON at all

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
    URI_TOO_LONG = "uri_too_long"
    TOO_DEEPLY_NESTED = "too_deeply_nested"
    UNPARSEABLE_LINE = "unparseable_line"  # anything else a line raised: never fatal


NOT_JSON_REASONS = {
    RejectReason.INVALID_UTF8,
    RejectReason.INVALID_JSON,
    RejectReason.NOT_AN_OBJECT,
    RejectReason.BLANK_LINE,
}


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


@dataclasses.dataclass
class DayListing:
    """A day folder's finished batch files, and every other entry with why it was passed over."""

    files: list[Path] = dataclasses.field(default_factory=list)
    skipped: Counter[str] = dataclasses.field(default_factory=Counter)


def list_day(day_dir: Path, root: Path | None = None) -> DayListing:
    """The regular, non-symlink batch files of one day folder, in name order.

    Landing files are untrusted: a symlink (to /proc/self/environ, /etc/passwd, another day) is
    never followed, neither as the day folder nor as a file, and nothing outside the landing root
    is read. Entries passed over are counted by reason, never silently ignored.
    """
    listing = DayListing()
    if day_dir.is_symlink():
        listing.skipped["day_folder_is_a_symlink"] += 1
        return listing
    if not day_dir.is_dir():
        return listing
    if root is not None and not day_dir.resolve().is_relative_to(root.resolve()):
        listing.skipped["outside_the_landing_root"] += 1
        return listing
    with os.scandir(day_dir) as entries:
        for entry in sorted(entries, key=lambda e: e.name):
            if entry.is_symlink():
                listing.skipped["symlink"] += 1
            elif not entry.is_file(follow_symlinks=False):
                listing.skipped["not_a_regular_file"] += 1
            elif batch_id_of(Path(entry.name)) is None:
                listing.skipped["not_a_finished_batch_name"] += 1
            else:
                listing.files.append(day_dir / entry.name)
    return listing


def batch_files(day_dir: Path) -> list[Path]:
    """Finished batch files of one day folder, in name order (see `list_day`)."""
    return list_day(day_dir).files


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
    if len(post["uri"].encode("utf-8")) > MAX_URI_BYTES:
        raise RejectedLine(RejectReason.URI_TOO_LONG, f"{len(post['uri'].encode()):,} bytes")
    for field in REQUIRED_TIMESTAMPS:
        if not isinstance(record[field], str):
            raise RejectedLine(RejectReason.WRONG_TYPE, field)
        try:
            post[field] = parse_timestamp(record[field])
        except (ValueError, OverflowError) as exc:  # 0001-01-01T00:00+01:00 leaves year 1
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

    def __init__(self, day_dir: Path, chunk_rows: int = 20_000, root: Path | None = None) -> None:
        self.day_dir = day_dir
        self.chunk_rows = chunk_rows
        listing = list_day(day_dir, root)
        self.files = listing.files
        self.skipped = listing.skipped
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
                        post = parse_post(_decode(raw))
                    except RejectedLine as rejected:
                        self._reject(path, line_number, rejected.reason, rejected.detail, raw)
                        continue
                    except Exception as exc:  # no line can sink a day, whatever it raises
                        reason = RejectReason.UNPARSEABLE_LINE
                        self._reject(path, line_number, reason, type(exc).__name__, raw)
                        continue
                    yield line_number, post
        except (OSError, EOFError, zlib.error) as exc:  # truncated or corrupt gzip, I/O error
            self._reject(
                path, line_number + 1, RejectReason.UNREADABLE_FILE, type(exc).__name__, b""
            )

    def _reject(
        self, path: Path, line: int, reason: RejectReason, detail: str | None, raw: bytes
    ) -> None:
        self._rejects.append(
            {
                "source_file": path.name,
                "line_number": line,
                "reason": reason.value,
                "detail": detail,
                "raw_line": raw_excerpt(raw, reason),
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
            "entries_skipped": dict(sorted(self.skipped.items())),
            "lines_read": self.lines_read,
            "posts_read": self.posts_read,
            "lines_rejected": len(self._rejects),
            "rejects_by_reason": self.rejects_by_reason,
        }


def raw_excerpt(raw: bytes, reason: RejectReason) -> str:
    """What a reject keeps of its line. A line that is JSON (it broke the contract) keeps its
    first RAW_LINE_LIMIT characters; a line that is not JSON at all may come from a file that is
    not a batch, so it keeps a short, marked excerpt. Both are scrubbed of key-shaped values and
    of the keys set in this environment."""
    text = raw.decode("utf-8", errors="backslashreplace").replace("\x00", "\\x00")
    text = text.encode("utf-8", errors="backslashreplace").decode("utf-8").rstrip("\r\n")
    if reason in NOT_JSON_REASONS and len(text) > NOT_JSON_EXCERPT:
        text = f"{text[:NOT_JSON_EXCERPT]} [excerpt: the line is not JSON, {len(raw):,} bytes]"
    return scrub(text, settings.secret_values())[:RAW_LINE_LIMIT]


@contextlib.contextmanager
def _open_batch(path: Path) -> Iterator[IO[bytes]]:
    """Open a batch file without following a symlink (O_NOFOLLOW), and only a regular file:
    a link swapped in after the listing fails here instead of being read."""
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0))
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise OSError(f"{path.name} is not a regular file")
        raw = os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise
    with raw:
        if path.name.endswith(".gz"):
            with gzip.GzipFile(fileobj=raw, mode="rb") as unzipped:
                yield unzipped
        else:
            yield raw


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
    except RecursionError as exc:
        raise RejectedLine(
            RejectReason.TOO_DEEPLY_NESTED, "nested deeper than Python parses"
        ) from exc
