"""The landing contract: daily folders of JSON-lines batches, read as a stream of polars chunks.

`<landing>/<YYYY-MM-DD>/<batch_id>.jsonl` or `.jsonl.gz`, one post per line. Lines that cannot be
used are never fatal and never silently dropped: each becomes a reject with file, line number and
reason. Memory is bounded per line whatever the input: a line is read up to `LINE_LIMIT_BYTES`
and no further (gzip included), chunks of posts are bounded in rows and bytes, and rejects go to
a private temporary file as they come, not to a list.
"""

from __future__ import annotations

import dataclasses
import io
import itertools
import json
import tempfile
import zlib
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import IO, Any

import polars as pl

from bsky_assets import settings
from bsky_assets.lib.secrets import scrub
from bsky_assets.posts.day_folder import DayFolder
from bsky_assets.posts.tables import LANDING_REJECTS, PREPROCESSED_POSTS

# The longest line read. A valid post's text is at most 20,480 UTF-8 bytes (validity.py); written
# with JSON's \uXXXX escapes it takes up to 6 bytes per byte (122,880), and a uri, handles, langs
# and counts come beside it: 256 KiB lets through every line whose post could be labelled, and a
# longer line is one `line_too_long` reject, read no further than this plus one buffer.
LINE_LIMIT_BYTES = 256 * 1024
CHUNK_BYTES = 32 * 1024 * 1024  # a chunk of posts holds at most this many bytes of lines
SKIP_READ_BYTES = 64 * 1024  # how the rest of a too-long line is skipped
RAW_LINE_LIMIT = 2_000  # characters of a rejected line kept for inspection
EXCERPTS_PER_FILE = 1_000  # rejects of one file that keep an excerpt; later ones: reason only
MAX_URI_BYTES = 1_024  # a key Postgres can index (btree rows are limited to ~2.7 kB)
NOT_JSON_EXCERPT = 120  # characters kept of a line that is not JSON at all, or too long
SCRUB_MARGIN = 1_024  # scrubbed beyond the cut, so a key across it is removed whole

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
REJECT_COLUMNS = [c for c in LANDING_REJECTS.column_names if c != "partition_date"]


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
    LINE_TOO_LONG = "line_too_long"


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


@dataclasses.dataclass(frozen=True)
class TooLong:
    """A line over the limit: its first bytes (for the excerpt) and its length."""

    head: bytes
    size: int


def bounded_lines(handle: IO[bytes], limit: int = LINE_LIMIT_BYTES) -> Iterator[bytes | TooLong]:
    """The lines of a file, each read up to `limit` bytes and no further: a longer line is
    skipped to its newline in bounded reads and comes out as a `TooLong`."""
    while line := handle.readline(limit + 1):
        if line.endswith(b"\n") or len(line) <= limit:
            yield line
            continue
        head, size = line[: RAW_LINE_LIMIT + SCRUB_MARGIN], len(line)
        while not line.endswith(b"\n"):
            line = handle.readline(SKIP_READ_BYTES)
            if not line:
                break
            size += len(line)
        yield TooLong(head, size - line.endswith(b"\n"))


class RejectSpool:
    """Rejects written to a private temporary file as they come (unlinked at once, so nobody
    else can open it), read back as frames as often as needed."""

    def __init__(self) -> None:
        self._file = tempfile.TemporaryFile()  # noqa: SIM115 (lives as long as the reader)
        self.count = 0
        self.by_reason: Counter[str] = Counter()

    def add(self, row: dict[str, Any]) -> None:
        self._file.write(json.dumps(row).encode() + b"\n")
        self.count += 1
        self.by_reason[row["reason"]] += 1

    def frames(self, chunk_rows: int = 20_000) -> Iterator[pl.DataFrame]:
        schema = LANDING_REJECTS.polars_schema(REJECT_COLUMNS)
        self._file.flush()
        self._file.seek(0)
        while lines := list(itertools.islice(self._file, chunk_rows)):
            yield pl.read_ndjson(io.BytesIO(b"".join(lines)), schema=schema)
        self._file.seek(0, io.SEEK_END)

    def close(self) -> None:
        self._file.close()


class LandingDayReader:
    """Iterates one day's batches as polars chunks; writes rejects and counts on the way.

    Iterate it once (`drain()` reads a day for its rejects only); then `rejects()` streams the
    rejects and `metadata` describes what was read. Close it (or use it as a context manager):
    it holds the day folder and the spool of rejects open.
    """

    def __init__(
        self,
        day_dir: Path,
        chunk_rows: int = 20_000,
        root: Path | None = None,
        line_limit: int = LINE_LIMIT_BYTES,
        chunk_bytes: int = CHUNK_BYTES,
    ) -> None:
        self.day_dir = day_dir
        self.chunk_rows = chunk_rows
        self.chunk_bytes = chunk_bytes
        self.line_limit = line_limit
        self._folder = DayFolder(day_dir, root)
        self.files = self._folder.listing.files
        self.skipped = self._folder.listing.skipped
        self.lines_read = 0
        self.posts_read = 0
        self._spool = RejectSpool()
        self._excerpts: Counter[str] = Counter()
        self._uri_hashes: list[pl.Series] = []

    def __iter__(self) -> Iterator[pl.DataFrame]:
        columns: dict[str, list[Any]] = {c: [] for c in POST_COLUMNS}
        chunk_bytes = 0
        try:
            for batch in self._folder.listing.batches:
                for line_number, post, size in self._posts_of(batch.name):
                    post["batch_id"] = batch.batch_id
                    post["source_file"] = batch.name
                    post["line_number"] = line_number
                    for column, values in columns.items():
                        values.append(post[column])
                    self.posts_read += 1
                    chunk_bytes += size
                    if len(columns["uri"]) >= self.chunk_rows or chunk_bytes >= self.chunk_bytes:
                        yield self._frame(columns)
                        columns, chunk_bytes = {c: [] for c in POST_COLUMNS}, 0
            if columns["uri"]:
                yield self._frame(columns)
        finally:
            self._folder.close()

    def drain(self) -> None:
        """Read the day without keeping its posts (for its rejects and counts)."""
        for _ in self:
            pass

    def _frame(self, columns: dict[str, list[Any]]) -> pl.DataFrame:
        frame = pl.DataFrame(columns, schema=PREPROCESSED_POSTS.polars_schema(POST_COLUMNS))
        self._uri_hashes.append(frame.get_column("uri").hash())  # 8 bytes a post
        return frame

    @property
    def distinct_posts(self) -> int:
        """Distinct uris read: the posts the day holds once its rows are written."""
        if not self._uri_hashes:
            return 0
        return pl.concat(self._uri_hashes).n_unique()

    def _posts_of(self, name: str) -> Iterator[tuple[int, dict[str, Any], int]]:
        line_number = 0
        try:
            with self._folder.open_batch(name) as handle:
                for line_number, raw in enumerate(bounded_lines(handle, self.line_limit), 1):
                    self.lines_read += 1
                    if isinstance(raw, TooLong):
                        detail = f"{raw.size:,} bytes"
                        self._reject(name, line_number, RejectReason.LINE_TOO_LONG, detail, raw)
                        continue
                    try:
                        post = parse_post(_decode(raw))
                    except RejectedLine as rejected:
                        self._reject(name, line_number, rejected.reason, rejected.detail, raw)
                        continue
                    except Exception as exc:  # no line can sink a day, whatever it raises
                        reason = RejectReason.UNPARSEABLE_LINE
                        self._reject(name, line_number, reason, type(exc).__name__, raw)
                        continue
                    yield line_number, post, len(raw)
        except (OSError, EOFError, zlib.error) as exc:  # truncated or corrupt gzip, I/O error
            reason = RejectReason.UNREADABLE_FILE
            self._reject(name, line_number + 1, reason, type(exc).__name__, b"")

    def _reject(
        self, name: str, line: int, reason: RejectReason, detail: str | None, raw: bytes | TooLong
    ) -> None:
        self._excerpts[name] += 1
        excerpt = raw_excerpt(raw, reason) if self._excerpts[name] <= EXCERPTS_PER_FILE else None
        self._spool.add(
            {
                "source_file": name,
                "line_number": line,
                "reason": reason.value,
                "detail": detail,
                "raw_line": excerpt,
            }
        )

    def rejects(self) -> Iterator[pl.DataFrame]:
        """The day's rejects, streamed back from the spool (after iteration)."""
        return self._spool.frames()

    @property
    def rejects_by_reason(self) -> dict[str, int]:
        return dict(sorted(self._spool.by_reason.items()))

    @property
    def lines_rejected(self) -> int:
        return self._spool.count

    @property
    def metadata(self) -> dict[str, Any]:
        return {
            "batch_files": len(self.files),
            "entries_skipped": dict(sorted(self.skipped.items())),
            "lines_read": self.lines_read,
            "posts_read": self.posts_read,
            "lines_rejected": self.lines_rejected,
            "rejects_by_reason": self.rejects_by_reason,
        }

    def close(self) -> None:
        self._folder.close()
        self._spool.close()

    def __enter__(self) -> LandingDayReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def raw_excerpt(raw: bytes | TooLong, reason: RejectReason) -> str:
    """What a reject keeps of its line. A line that is JSON (it broke the contract) keeps its
    first RAW_LINE_LIMIT characters; a line that is not JSON at all may come from a file that is
    not a batch, and a line over the limit is mostly not read, so both keep a short, marked
    excerpt. Every excerpt is scrubbed of key-shaped values and of the keys set in this
    environment before it is cut, so a key across the cut goes whole."""
    size = raw.size if isinstance(raw, TooLong) else len(raw)
    head = raw.head if isinstance(raw, TooLong) else raw[: RAW_LINE_LIMIT * 4 + SCRUB_MARGIN]
    text = head.decode("utf-8", errors="backslashreplace").replace("\x00", "\\x00")
    text = text.encode("utf-8", errors="backslashreplace").decode("utf-8").rstrip("\r\n")
    text = scrub(text[: RAW_LINE_LIMIT + SCRUB_MARGIN], settings.secret_values())
    if isinstance(raw, TooLong):
        limit = f"{LINE_LIMIT_BYTES:,}"
        return f"{text[:NOT_JSON_EXCERPT]} [excerpt: the line is {size:,} bytes, over {limit}]"
    if reason in NOT_JSON_REASONS and len(text) > NOT_JSON_EXCERPT:
        return f"{text[:NOT_JSON_EXCERPT]} [excerpt: the line is not JSON, {size:,} bytes]"
    return text[:RAW_LINE_LIMIT]


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
