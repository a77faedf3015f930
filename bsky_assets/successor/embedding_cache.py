"""Where sentence embeddings are kept, by (encoder weights sha256, text sha256).

Two homes: a Postgres table for the distill side (`successor_embeddings`: a re-distil, a
learning-curve refit, and the in-process labeller never encode a text twice, across processes
and days), and a bounded in-process LRU for the Perspective server, which has no database (it is
a stand-alone HTTP service; a text it scored recently is not encoded again, and its memory stays
bounded at `max_entries` vectors, 30 MB for MiniLM's 384 dimensions at the default).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from typing import Protocol

import numpy as np
import polars as pl

from bsky_assets.lib.db.client import PostgresClient
from bsky_assets.successor import store
from bsky_assets.successor.tables import SUCCESSOR_EMBEDDINGS


class EmbeddingCache(Protocol):
    def get_many(self, encoder_sha256: str, shas: Sequence[str]) -> dict[str, np.ndarray]: ...

    def put_many(self, encoder_sha256: str, vectors: dict[str, np.ndarray]) -> None: ...


class MemoryCache:
    """A bounded in-process LRU: what the Perspective server holds (it has no database)."""

    def __init__(self, max_entries: int = 20_000) -> None:
        self.max_entries = max_entries
        self._items: OrderedDict[tuple[str, str], np.ndarray] = OrderedDict()

    def get_many(self, encoder_sha256: str, shas: Sequence[str]) -> dict[str, np.ndarray]:
        found = {}
        for sha in shas:
            vector = self._items.get((encoder_sha256, sha))
            if vector is not None:
                self._items.move_to_end((encoder_sha256, sha))
                found[sha] = vector
        return found

    def put_many(self, encoder_sha256: str, vectors: dict[str, np.ndarray]) -> None:
        for sha, vector in vectors.items():
            self._items[(encoder_sha256, sha)] = vector
            self._items.move_to_end((encoder_sha256, sha))
        while len(self._items) > self.max_entries:
            self._items.popitem(last=False)


class PostgresCache:
    """Embeddings in `successor_embeddings`, float32 bytes, looked up in pages."""

    PAGE = 5_000

    def __init__(self, client: PostgresClient) -> None:
        self.client = client
        client.ensure_table(SUCCESSOR_EMBEDDINGS)

    def get_many(self, encoder_sha256: str, shas: Sequence[str]) -> dict[str, np.ndarray]:
        found: dict[str, np.ndarray] = {}
        for start in range(0, len(shas), self.PAGE):
            page = shas[start : start + self.PAGE]
            for sha, blob in store.cached_embeddings(self.client, encoder_sha256, page):
                found[sha] = np.frombuffer(bytes(blob), dtype=np.float32)
        return found

    def put_many(self, encoder_sha256: str, vectors: dict[str, np.ndarray]) -> None:
        if not vectors:
            return
        frame = pl.DataFrame(
            {
                "encoder_sha256": [encoder_sha256] * len(vectors),
                "text_sha256": list(vectors),
                "embedding": [
                    "\\x" + np.asarray(v, dtype=np.float32).tobytes().hex()
                    for v in vectors.values()
                ],
            }
        )
        self.client.insert_missing(SUCCESSOR_EMBEDDINGS, frame)
