"""A day folder of the landing root, read safely: which entries are finished batches (and why
every other entry is passed over), and each batch opened through the folder's own descriptor,
so a symlink or a swapped folder redirects nothing."""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import gzip
import hashlib
import os
import stat
from collections import Counter
from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import IO

BATCH_SUFFIXES = (".jsonl.gz", ".jsonl")


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


@dataclasses.dataclass(frozen=True)
class BatchFile:
    """A finished batch file of a day folder, as it was when the folder was listed."""

    name: str
    size: int
    mtime_ns: int

    @property
    def batch_id(self) -> str:
        batch_id = batch_id_of(Path(self.name))
        assert batch_id is not None
        return batch_id


@dataclasses.dataclass
class DayListing:
    """A day folder's finished batch files, and every other entry with why it was passed over."""

    folder: Path
    batches: list[BatchFile] = dataclasses.field(default_factory=list)
    skipped: Counter[str] = dataclasses.field(default_factory=Counter)

    @property
    def files(self) -> list[Path]:
        return [self.folder / batch.name for batch in self.batches]

    @property
    def fingerprint(self) -> str:
        """The day's finished batches by name, size and mtime: what a run of the day read (the
        ingest records it) and what the sensor compares before it asks for another run."""
        signature = "\n".join(f"{f.name}:{f.size}:{f.mtime_ns}" for f in self.batches)
        return hashlib.sha256(signature.encode()).hexdigest()[:16]


_DIRECTORY_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_FILE_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK  # a FIFO cannot block


class DayFolder:
    """One day folder, opened once, and every file in it opened through that descriptor.

    Landing files are untrusted. The folder is opened with O_NOFOLLOW as an entry of the landing
    root's own descriptor, so it is a real folder directly inside the root; files are opened by
    name relative to it (openat), with O_NOFOLLOW, and only if regular. Renaming the folder away
    and putting a symlink in its place, once it is open, redirects nothing.
    """

    def __init__(self, day_dir: Path, root: Path | None = None) -> None:
        self.path = day_dir
        self.listing = DayListing(day_dir)
        self._fd: int | None = None
        reason = self._open(day_dir, root)
        if reason:
            self.listing.skipped[reason] += 1
        elif self._fd is not None:
            self._list()

    def _open(self, day_dir: Path, root: Path | None) -> str | None:
        """Open the folder; None, or why it is not read."""
        try:
            if root is None:
                self._fd = os.open(day_dir, _DIRECTORY_FLAGS)
                return None
            if Path(os.path.abspath(day_dir)).parent != Path(os.path.abspath(root)):
                return "outside_the_landing_root"
            root_fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
            try:
                self._fd = os.open(day_dir.name, _DIRECTORY_FLAGS, dir_fd=root_fd)
            finally:
                os.close(root_fd)
        except FileNotFoundError:
            return None  # no folder: no files (the ingest says so)
        except OSError as error:
            if error.errno in (errno.ELOOP, errno.ENOTDIR) and day_dir.is_symlink():
                return "day_folder_is_a_symlink"
            if error.errno == errno.ENOTDIR:
                return "day_folder_is_not_a_folder"
            raise
        return None

    def _list(self) -> None:
        assert self._fd is not None
        with os.scandir(self._fd) as entries:
            for entry in sorted(entries, key=lambda e: e.name):
                if entry.is_symlink():
                    self.listing.skipped["symlink"] += 1
                elif not entry.is_file(follow_symlinks=False):
                    self.listing.skipped["not_a_regular_file"] += 1
                elif batch_id_of(Path(entry.name)) is None:
                    self.listing.skipped["not_a_finished_batch_name"] += 1
                else:
                    info = entry.stat(follow_symlinks=False)
                    self.listing.batches.append(
                        BatchFile(entry.name, info.st_size, info.st_mtime_ns)
                    )

    @contextlib.contextmanager
    def open_batch(self, name: str) -> Iterator[IO[bytes]]:
        """A batch file of this folder, decompressed if it is gzipped. A file replaced after
        the listing by a symlink or anything but a regular file fails here, unread."""
        if self._fd is None:
            raise FileNotFoundError(name)
        fd = os.open(name, _FILE_FLAGS, dir_fd=self._fd)
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                raise OSError(f"{name} is not a regular file")
            raw = os.fdopen(fd, "rb")
        except BaseException:
            os.close(fd)
            raise
        with raw:
            if name.endswith(".gz"):
                with gzip.GzipFile(fileobj=raw, mode="rb") as unzipped:
                    yield unzipped
            else:
                yield raw

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> DayFolder:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def list_day(day_dir: Path, root: Path | None = None) -> DayListing:
    """The regular, non-symlink batch files of one day folder, in name order (see `DayFolder`).

    A symlink (to /proc/self/environ, /etc/passwd, another day) is never followed, neither as
    the day folder nor as a file, and nothing outside the landing root is read. Entries passed
    over are counted by reason, never silently ignored.
    """
    with DayFolder(day_dir, root) as folder:
        return folder.listing


def parse_partition_folder(name: str) -> date | None:
    """The day a landing folder names, or None when the folder is not a YYYY-MM-DD date."""
    try:
        day = date.fromisoformat(name)
    except ValueError:
        return None
    return day if day.isoformat() == name else None
