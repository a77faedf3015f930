"""Ridge regression for many targets over a feature matrix too large to hold: row chunks (a
sparse TF-IDF block and, for the full tier, a dense embedding block) in memory or spilled to
disk, solved by Jacobi-preconditioned conjugate gradients.

This is the large-history path (more training texts than the cross-validation sample holds); a
smaller history is solved exactly in the dual (`selection.py`). Every attribute has its own
alpha, its own row mask, and either uses the dense block or not; all of them are solved in one
pass over the chunks per iteration.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
from scipy import sparse

Chunk = tuple[sparse.csr_matrix, np.ndarray | None]
SPARSE_PARTS = ("data", "indices", "indptr")


class Chunks:
    """A matrix in row chunks, in memory until it holds `limit` nonzeros, then in a temporary
    folder (so memory does not grow with the history)."""

    def __init__(self, spill: bool = False, limit: int | None = None) -> None:
        self.limit = limit
        self.nonzeros = 0
        self._folder: tempfile.TemporaryDirectory[str] | None = None
        self._items: list[Any] = []
        if spill:
            self._move_to_disk()

    @property
    def spilled(self) -> bool:
        return self._folder is not None

    def add(self, matrix: sparse.csr_matrix, dense: np.ndarray | None = None) -> None:
        self.nonzeros += matrix.nnz
        if self._folder is None and self.limit is not None and self.nonzeros > self.limit:
            self._move_to_disk()
        if self._folder is None:
            self._items.append((matrix, dense))
        else:
            self._items.append(self._write(len(self._items), matrix, dense))

    def _write(self, index: int, matrix: sparse.csr_matrix, dense: np.ndarray | None):
        assert self._folder is not None
        base = Path(self._folder.name) / str(index)
        base.mkdir()
        # plain .npy files: an .npz is a zip, and reading one computes its CRC on every pass
        for part in SPARSE_PARTS:
            np.save(base / f"{part}.npy", getattr(matrix, part))
        np.save(base / "shape.npy", np.array(matrix.shape))
        if dense is not None:
            np.save(base / "dense.npy", dense)
        return base, dense is not None

    def _move_to_disk(self) -> None:
        self._folder = tempfile.TemporaryDirectory(prefix="bsky-distill-")
        self._items = [self._write(i, *item) for i, item in enumerate(self._items)]

    def __len__(self) -> int:
        return len(self._items)

    def __getitem__(self, index: int) -> Chunk:
        item, extra = self._items[index]
        if item is None:
            raise IndexError(f"chunk {index} was drained")
        if isinstance(item, Path):
            # read, not mapped: mapped pages of every chunk would count against the step
            data, indices, indptr = (np.load(item / f"{part}.npy") for part in SPARSE_PARTS)
            shape = tuple(np.load(item / "shape.npy"))
            matrix = sparse.csr_matrix((data, indices, indptr), shape=shape, copy=False)
            return matrix, np.load(item / "dense.npy") if extra else None
        return item, extra

    def __iter__(self) -> Iterator[Chunk]:
        for index in range(len(self._items)):
            yield self[index]

    def drain(self) -> Iterator[Chunk]:
        """Every chunk once, each given back (memory or disk) as soon as it is read."""
        for index in range(len(self._items)):
            chunk = self[index]
            item, _ = self._items[index]
            if isinstance(item, Path):
                shutil.rmtree(item)
            self._items[index] = (None, None)
            yield chunk
        self.close()

    def close(self) -> None:
        self._items = []
        if self._folder is not None:
            self._folder.cleanup()


def _summed(
    chunks: Chunks,
    part: Callable[[int, Chunk], tuple[np.ndarray, ...]],
    pool: ThreadPoolExecutor | None,
    window: int,
) -> np.ndarray:
    """Σ over chunks of `part(i, chunk)` (row blocks that stack into one array: the sparse
    block's rows, then the dense block's), added in chunk order whatever the number of threads
    (so the weights do not depend on the cores a run was given), at most one part per thread
    in flight (so memory does not grow with the history)."""
    total = None
    for start in range(0, len(chunks), window):
        indices = range(start, min(start + window, len(chunks)))
        if pool is None or len(indices) == 1:
            parts = [part(i, chunks[i]) for i in indices]
        else:
            parts = list(pool.map(lambda i: part(i, chunks[i]), indices))
        for blocks in parts:
            if total is None:
                total = blocks[0] if len(blocks) == 1 else np.vstack(blocks)
                continue
            offset = 0
            for block in blocks:
                total[offset : offset + len(block)] += block
                offset += len(block)
    assert total is not None, "solve_ridge over no chunks"
    return total


def solve_ridge(
    chunks: Chunks,
    targets: list[np.ndarray],
    masks: list[np.ndarray],
    sparse_width: int,
    dense_width: int,
    alphas: np.ndarray,
    uses_dense: np.ndarray,
    max_iterations: int,
    tolerance: float,
    initial: np.ndarray | None = None,
    threads: int = 1,
) -> tuple[np.ndarray, int]:
    """min_W Σ_k Σ_i m_ik (x_i·w_k − t_ik)² + α_k‖w_k‖², every attribute k at once, by
    Jacobi-preconditioned conjugate gradients (one independent CG per column, in lockstep),
    from `initial` (a warm start) or zero. Columns with `uses_dense` false keep zero weights on
    the dense block. The products over chunks run on `threads` threads (scipy's sparse
    products release the GIL). Returns the weights and the iterations taken."""
    k = targets[0].shape[1]
    width = sparse_width + dense_width
    alphas = np.asarray(alphas, dtype=np.float32)
    dense_mask = np.asarray(uses_dense, dtype=np.float32)

    def transposed(
        x: sparse.csr_matrix, e: np.ndarray | None, v: np.ndarray
    ) -> tuple[np.ndarray, ...]:
        if not dense_width:
            return (x.T @ v,)
        return x.T @ v, (np.asarray(e).T @ v) * dense_mask

    def forward(x: sparse.csr_matrix, e: np.ndarray | None, w: np.ndarray) -> np.ndarray:
        v = x @ w[:sparse_width]
        if dense_width:
            v += np.asarray(e) @ w[sparse_width:]
        return v

    def diagonal_part(i: int, chunk: Chunk) -> tuple[np.ndarray, ...]:
        x, e = chunk
        squares = (x.multiply(x).T @ masks[i]).astype(np.float32, copy=False)
        if not dense_width:
            return (squares,)
        return squares, (np.square(np.asarray(e)).T @ masks[i]) * dense_mask

    pool = ThreadPoolExecutor(threads) if threads > 1 and len(chunks) > 1 else None
    try:

        def apply(p: np.ndarray) -> np.ndarray:
            product = _summed(
                chunks, lambda i, c: transposed(*c, masks[i] * forward(*c, p)), pool, threads
            )
            product += np.multiply(p, alphas, out=scratch)
            return product

        def column_dot(a: np.ndarray, b: np.ndarray) -> np.ndarray:
            return np.einsum("ij,ij->j", a, b)  # no (width, k) temporary

        # the state is six (width, k) arrays, updated in place: at 1,000,000 posts and both
        # tiers' 42 columns each is 84 MB, and every temporary one more
        b = _summed(chunks, lambda i, c: transposed(*c, masks[i] * targets[i]), pool, threads)
        diagonal = _summed(chunks, diagonal_part, pool, threads)
        diagonal += alphas
        scratch = np.empty_like(diagonal)
        b_norm = np.sqrt(column_dot(b, b)) + 1e-12
        if initial is None:
            w = np.zeros((width, k), dtype=np.float32)
            r, b = b, None  # the residual starts at b (w = 0): one (width, k) array fewer
        else:
            w = np.array(initial, dtype=np.float32)
            r = b
            r -= apply(w)
            b = None
        iterations = 0
        if (np.sqrt(column_dot(r, r)) / b_norm <= tolerance).all():
            return w, iterations
        z = np.divide(r, diagonal)
        p = z.copy()
        rz = column_dot(r, z)
        for iterations in range(1, max_iterations + 1):  # noqa: B007 (returned)
            ap = apply(p)
            step = (rz / np.maximum(column_dot(p, ap), 1e-30)).astype(np.float32)
            w += np.multiply(p, step, out=scratch)
            r -= np.multiply(ap, step, out=scratch)
            del ap
            if (np.sqrt(column_dot(r, r)) / b_norm <= tolerance).all():
                break
            np.divide(r, diagonal, out=z)
            rz_next = column_dot(r, z)
            p *= (rz_next / np.maximum(rz, 1e-30)).astype(np.float32)
            p += z
            rz = rz_next
        return w, iterations
    finally:
        if pool is not None:
            pool.shutdown()
