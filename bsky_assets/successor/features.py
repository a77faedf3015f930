"""Text features of the successor: TF-IDF over hashed n-grams, and optional sentence embeddings.

The TF-IDF block is the issue's baseline, word 1-2-grams and char_wb 2-5-grams with
scikit-learn's TfidfVectorizer defaults (lower-cased, raw term counts, smooth idf
ln((1 + n) / (1 + df)) + 1, l2-normalised per family), computed on hashed columns instead of a
fitted vocabulary: a char 2-5-gram vocabulary of 1,000,000 posts holds tens of millions of
strings, while the hashed idf is two float32 arrays of fixed size, whatever the history. The only
difference from TfidfVectorizer is hash collisions (2^18 columns per family); the README reports
both on the same split. The embedding block (full tier) is the encoder's l2-normalised vector.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass
from functools import lru_cache
from typing import Any

import numpy as np
from scipy import sparse
from sklearn.feature_extraction.text import HashingVectorizer
from sklearn.preprocessing import normalize

from bsky_assets.lib.process_map import ordered_process_map

TFIDF = "tfidf"  # word 1-2 + char_wb 2-5 grams
TFIDF_EMBEDDINGS = "tfidf+embeddings"  # the same, plus the sentence encoder's vector
FEATURE_SETS = (TFIDF, TFIDF_EMBEDDINGS)
HASHING_TASK_ROWS = 5_000  # texts per worker task (a worker peaks near 250 MB on them)


@dataclass(frozen=True)
class TfidfParams:
    word_ngrams: tuple[int, int] = (1, 2)
    char_ngrams: tuple[int, int] = (2, 5)
    hash_features: int = 2**18  # per family

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class HashedTfidf:
    """TfidfVectorizer's numbers on hashed columns; `fit` is one pass that counts documents."""

    def __init__(self, params: TfidfParams, idf: np.ndarray | None = None) -> None:
        self.params = params
        common = dict(
            n_features=params.hash_features, alternate_sign=False, norm=None, dtype=np.float32
        )
        self._families = (
            HashingVectorizer(ngram_range=params.word_ngrams, **common),
            HashingVectorizer(analyzer="char_wb", ngram_range=params.char_ngrams, **common),
        )
        self.idf = idf  # (2, hash_features) float32, set by `fit`
        self.seen: np.ndarray | None = None

    @property
    def width(self) -> int:
        return 2 * self.params.hash_features

    def counts(self, texts: Sequence[str]) -> list[sparse.csr_matrix]:
        return [family.transform(texts) for family in self._families]

    def fit(
        self,
        chunks_of_texts: Iterable[Sequence[str]],
        keep: Callable[[sparse.csr_matrix], None] | None = None,
        workers: int = 1,
    ) -> HashedTfidf:
        """Document frequencies over every text (given as an iterable of text chunks). `keep`
        receives each chunk's raw counts (both families side by side), so that a caller who
        needs every text's features hashes each text once: see `weigh`. With `workers` > 1 the
        chunks are hashed in that many processes (the analyzers hold the GIL), `HASHING_TASK_ROWS`
        texts at a time (what a worker and the results in flight hold stays small): `keep` sees
        the same rows in the same order, in pieces of that size."""
        df = np.zeros((2, self.params.hash_features), dtype=np.int64)
        n = 0
        size = HASHING_TASK_ROWS if workers > 1 else None
        jobs = ((self.params, piece) for texts in chunks_of_texts for piece in _pieces(texts, size))
        for rows, families in ordered_process_map(_hashed_chunk, jobs, workers):
            for i, counts in enumerate(families):
                df[i] += np.bincount(counts.indices, minlength=self.params.hash_features)
            if keep is not None:
                keep(sparse.hstack(families, format="csr", dtype=np.float32))
            n += rows
        self.idf = (np.log((1 + n) / (1 + df)) + 1).astype(np.float32)
        self.seen = (df > 0).reshape(-1)  # columns some fitted text uses (training only)
        return self

    def transform(self, texts: Sequence[str]) -> sparse.csr_matrix:
        return self.weigh(self.counts(texts))

    def weigh(self, counts: list[sparse.csr_matrix] | sparse.csr_matrix) -> sparse.csr_matrix:
        """TF-IDF from raw counts: per family, or side by side as `fit` gives them to `keep`."""
        if self.idf is None:
            raise RuntimeError("HashedTfidf used before fit")
        if not isinstance(counts, list):
            h = self.params.hash_features
            counts = [counts[:, :h], counts[:, h:]]
        blocks = []
        for i, family in enumerate(counts):
            family.data *= self.idf[i][family.indices]
            blocks.append(normalize(family))
        return sparse.hstack(blocks, format="csr", dtype=np.float32)


def _pieces(texts: Sequence[str], size: int | None) -> Iterator[list[str]]:
    """`texts` in lists of `size` (whole when `size` is None)."""
    if size is None:
        yield list(texts)
        return
    for start in range(0, len(texts), size):
        yield list(texts[start : start + size])


@lru_cache(maxsize=4)
def _hasher(params: TfidfParams) -> HashedTfidf:
    return HashedTfidf(params)


def _hashed_chunk(job: tuple[TfidfParams, list[str]]) -> tuple[int, list[sparse.csr_matrix]]:
    """One chunk's raw counts per family (what `fit` hashes in a worker process)."""
    params, texts = job
    return len(texts), _hasher(params).counts(texts)
