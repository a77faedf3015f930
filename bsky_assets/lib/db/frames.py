"""Frames produced lazily, for writers that consume them chunk by chunk."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any

import polars as pl


class FrameStream:
    """Frames produced lazily; writers consume them chunk by chunk, then close the source.

    Closing matters: a failed write must not leave a suspended reader (a generator holding a DB
    cursor, kept alive by the exception's traceback) with its transaction and locks open.
    `metadata` is read after the stream is consumed, so producers can report what they saw
    (counts by reason) without a second pass over the data.
    """

    def __init__(
        self,
        frames: Iterable[pl.DataFrame],
        metadata: Callable[[], dict[str, Any]] | None = None,
    ) -> None:
        self._frames = frames
        self._metadata = metadata

    def __iter__(self) -> Iterator[pl.DataFrame]:
        return iter(self._frames)

    @property
    def metadata(self) -> dict[str, Any]:
        return self._metadata() if self._metadata else {}

    def close(self) -> None:
        close = getattr(self._frames, "close", None)
        if close is not None:
            close()
