"""Ridge regression for many targets over a feature matrix too large to hold: row chunks (a
sparse TF-IDF block and, for the full tier, a dense embedding block) in memory or spilled to
disk, solved by Jacobi-preconditioned conjugate gradients.

This is the large-history path (more training texts than the cross-validation sample holds); a
smaller history is solved exactly in the dual (`selection.py`). Every attribute has its own
alpha, its own row mask, and either uses the dense block or not; all of them are solved in one
pass over the chunks per iteration.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
from scipy import sparse

Chunk = tuple[sparse.csr_matrix, np.ndarray | None]


class Chunks:
    """The feature matrix in row chunks, in memory or spilled to a temporary folder."""

    def __init__(self, spill: bool) -> None:
        self.spilled = spill
        self._folder = tempfile.TemporaryDirectory(prefix="bsky-distill-") if spill else None
        self._items: list[Any] = []

    def add(self, matrix: sparse.csr_matrix, dense: np.ndarray | None = None) -> None:
        if self._folder is None:
            self._items.append((matrix, dense))
            return
        base = Path(self._folder.name) / str(len(self._items))
        sparse.save_npz(base.with_suffix(".npz"), matrix, compressed=False)
        if dense is not None:
            np.save(base.with_suffix(".npy"), dense)
        self._items.append((base, dense is not None))

    def __iter__(self) -> Iterator[Chunk]:
        for item, extra in self._items:
            if isinstance(item, Path):
                dense = np.load(item.with_suffix(".npy"), mmap_mode="r") if extra else None
                yield sparse.load_npz(item.with_suffix(".npz")), dense
            else:
                yield item, extra

    def spill(self) -> Chunks:
        """The same chunks, moved to disk."""
        spilled = Chunks(spill=True)
        for matrix, dense in self:
            spilled.add(matrix, dense)
        self.close()
        return spilled

    def close(self) -> None:
        self._items = []
        if self._folder is not None:
            self._folder.cleanup()


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
) -> np.ndarray:
    """min_W Σ_k Σ_i m_ik (x_i·w_k − t_ik)² + α_k‖w_k‖², every attribute k at once, by
    Jacobi-preconditioned conjugate gradients (one independent CG per column, in lockstep).
    Columns with `uses_dense` false keep zero weights on the dense block."""
    k = targets[0].shape[1]
    width = sparse_width + dense_width
    alphas = np.asarray(alphas, dtype=np.float32)
    dense_mask = np.asarray(uses_dense, dtype=np.float32)

    def gradient_part(x, e, v: np.ndarray, out: np.ndarray) -> None:
        out[:sparse_width] += x.T @ v
        if e is not None:
            out[sparse_width:] += (np.asarray(e).T @ v) * dense_mask

    def apply(p: np.ndarray) -> np.ndarray:
        out = alphas * p
        for (x, e), m in zip(chunks, masks, strict=True):
            v = x @ p[:sparse_width]
            if e is not None:
                v += np.asarray(e) @ p[sparse_width:]
            gradient_part(x, e, m * v, out)
        return out

    b = np.zeros((width, k), dtype=np.float32)
    diagonal = np.tile(alphas, (width, 1))
    for (x, e), t, m in zip(chunks, targets, masks, strict=True):
        gradient_part(x, e, m * t, b)
        diagonal[:sparse_width] += x.multiply(x).T @ m
        if e is not None:
            diagonal[sparse_width:] += (np.square(np.asarray(e)).T @ m) * dense_mask
    b_norm = np.linalg.norm(b, axis=0) + 1e-12
    w = np.zeros((width, k), dtype=np.float32)
    r, b = b, None  # the residual starts at b (w = 0): one (width, k) array fewer in memory
    z = r / diagonal
    p = z.copy()
    rz = (r * z).sum(axis=0)
    for _ in range(max_iterations):
        ap = apply(p)
        step = rz / np.maximum((p * ap).sum(axis=0), 1e-30)
        w += step * p
        r -= step * ap
        if (np.linalg.norm(r, axis=0) / b_norm <= tolerance).all():
            break
        z = r / diagonal
        rz_next = (r * z).sum(axis=0)
        p = z + (rz_next / np.maximum(rz, 1e-30)) * p
        rz = rz_next
    return w
