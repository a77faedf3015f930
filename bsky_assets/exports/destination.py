"""Where exports go: a local folder, or an object store through pyarrow's filesystems.

A file is written under `_staging/` (outside every dataset's folder, so no reader's glob sees
it) and moved into place only once complete:

- **local folder**: written, fsynced, then `os.replace`d onto the day's file, an atomic rename
  on POSIX; a reader sees the old file or the new one, and one that has the old file open keeps
  reading it.
- **S3 / GCS**: an object store has no rename. The staged object is uploaded in full (a
  multipart upload becomes an object only when completed), then copied server-side onto the
  day's key and the staged object deleted. A single object's PUT or copy is atomic and S3 reads
  are strongly consistent, so a reader gets the whole old object or the whole new one. A killed
  export leaves an incomplete upload or a staged object, never a visible part: the next export
  of the day clears `_staging/` for it (an S3 lifecycle rule that aborts incomplete multipart
  uploads frees what a killed upload stored). pyarrow leaves empty folder markers
  (`_staging/`) behind a deleted object: zero bytes, outside the datasets.
- **another fsspec filesystem** (`az://`, … when its package is installed): the same staging and
  `move`, atomic as far as that filesystem's move is.

Credentials come only from the environment (settings.s3_options; for GCS the default Google
credentials); a URL carrying user info or query parameters is refused, so no key can travel in
run config, metadata or a log line that names the destination.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from bsky_assets import settings

STAGING = "_staging"
METADATA_PREFIX = "bsky_assets."


class DestinationError(ValueError):
    """The export destination cannot be used as given."""


def _s3_filesystem() -> pafs.S3FileSystem:
    options = settings.s3_options()
    endpoint = options.pop("endpoint_override", None)
    if endpoint:
        parts = urlsplit(endpoint if "://" in endpoint else f"https://{endpoint}")
        options["endpoint_override"] = parts.netloc
        options["scheme"] = parts.scheme
    return pafs.S3FileSystem(**options)


def _fsspec_filesystem(url: str) -> tuple[pafs.FileSystem, str]:
    import fsspec

    try:
        filesystem, root = fsspec.core.url_to_fs(url)
    except (ImportError, ValueError) as error:
        raise DestinationError(f"no filesystem for {urlsplit(url).scheme}:// ({error})") from None
    return pafs.PyFileSystem(pafs.FSSpecHandler(filesystem)), root


def _fsync(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@dataclass(frozen=True)
class Destination:
    url: str  # how metadata and logs name it: an absolute path or scheme://bucket/prefix
    filesystem: pafs.FileSystem
    root: str  # the root inside the filesystem
    local: bool

    @classmethod
    def from_url(cls, url: str) -> Destination:
        parts = urlsplit(url)
        if parts.scheme in ("", "file"):
            path = Path(parts.path if parts.scheme else url).expanduser().resolve()
            return cls(str(path), pafs.LocalFileSystem(), str(path), local=True)
        if "@" in parts.netloc or parts.query or parts.fragment:
            raise DestinationError(
                "an export URL names a bucket and a prefix only: credentials and options come "
                "from the environment (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_REGION, "
                "AWS_ENDPOINT_URL), never from the URL"
            )
        if not parts.netloc:
            raise DestinationError(f"{parts.scheme}:// needs a bucket: {parts.scheme}://BUCKET/…")
        root = f"{parts.netloc}{parts.path}".rstrip("/")
        clean = f"{parts.scheme}://{root}"
        if parts.scheme == "s3":
            return cls(clean, _s3_filesystem(), root, local=False)
        if parts.scheme in ("gs", "gcs"):
            return cls(clean, pafs.GcsFileSystem(), root, local=False)
        filesystem, fs_root = _fsspec_filesystem(clean)
        return cls(clean, filesystem, fs_root.rstrip("/"), local=False)

    @classmethod
    def configured(cls) -> Destination:
        return cls.from_url(settings.export_destination())

    def path(self, relative: str) -> str:
        return f"{self.root}/{relative}" if relative else self.root

    def display(self, relative: str = "") -> str:
        return f"{self.url}/{relative}" if relative else self.url

    @contextlib.contextmanager
    def atomic_write(self, relative: str, staging: str) -> Iterator[pa.NativeFile]:
        """A stream for `relative`: the file appears complete when the block ends, or not at
        all (the previous file stays) if the block raises or the process dies."""
        staged, final = self.path(staging), self.path(relative)
        try:
            if self.local:
                os.makedirs(os.path.dirname(staged), exist_ok=True)
                with pa.OSFile(staged, "wb") as raw, pa.BufferedOutputStream(raw, 1 << 20) as out:
                    yield out
                _fsync(staged)
                os.makedirs(os.path.dirname(final), exist_ok=True)
                os.replace(staged, final)
                _fsync(os.path.dirname(final))
            else:
                with self.filesystem.open_output_stream(staged) as out:
                    yield out
                self.filesystem.move(staged, final)
        except BaseException:
            with contextlib.suppress(OSError):
                self.filesystem.delete_file(staged)
            raise

    def footer(self, relative: str) -> dict[str, str] | None:
        """The export's key-value metadata and row count from a file's footer (a ranged read on
        an object store); None when there is no such file."""
        try:
            metadata = pq.read_metadata(self.path(relative), filesystem=self.filesystem)
        except (FileNotFoundError, pa.ArrowInvalid):
            return None
        except OSError as error:
            if "not found" in str(error).lower() or "no such" in str(error).lower():
                return None
            raise
        found = {
            key.decode()[len(METADATA_PREFIX) :]: value.decode()
            for key, value in (metadata.metadata or {}).items()
            if key.startswith(METADATA_PREFIX.encode())
        }
        return found | {"rows": str(metadata.num_rows)}

    def exists(self, relative: str) -> bool:
        return self.filesystem.get_file_info(self.path(relative)).type == pafs.FileType.File

    def size(self, relative: str) -> int:
        return int(self.filesystem.get_file_info(self.path(relative)).size or 0)

    def clear(self, relative: str) -> None:
        """Remove a folder (staging leftovers of a killed run), if there is one."""
        info = self.filesystem.get_file_info(self.path(relative))
        if info.type == pafs.FileType.Directory:
            self.filesystem.delete_dir(self.path(relative))
