"""Ridge regression for many targets over a feature matrix too large to hold: row chunks in
memory or spilled to disk, solved by Jacobi-preconditioned conjugate gradients."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
from scipy import sparse


class Chunks:
    """The feature matrix in row chunks, in memory or spilled to a temporary folder."""

    def __init__(self, spill: bool) -> None:
        self.spilled = spill
        self._folder = tempfile.TemporaryDirectory(prefix="bsky-distill-") if spill else None
        self._items: list[Any] = []

    def add(self, matrix: sparse.csr_matrix) -> None:
        if self._folder is None:
            self._items.append(matrix)
            return
        path = Path(self._folder.name) / f"{len(self._items)}.npz"
        sparse.save_npz(path, matrix, compressed=False)
        self._items.append(path)

    def __iter__(self) -> Iterator[sparse.csr_matrix]:
        for item in self._items:
            yield sparse.load_npz(item) if isinstance(item, Path) else item

    def spill(self) -> Chunks:
        """The same chunks, moved to disk."""
        spilled = Chunks(spill=True)
        for matrix in self:
            spilled.add(matrix)
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
    width: int,
    alpha: float,
    max_iterations: int,
    tolerance: float,
) -> np.ndarray:
    """min_W Σ_k Σ_i m_ik (x_i·w_k − t_ik)² + α‖w_k‖², every attribute k at once, by
    Jacobi-preconditioned conjugate gradients (one independent CG per column, in lockstep)."""
    k = targets[0].shape[1]
    alpha = np.float32(alpha)

    def apply(p: np.ndarray) -> np.ndarray:
        out = alpha * p
        for x, m in zip(chunks, masks, strict=True):
            out += x.T @ (m * (x @ p))
        return out

    b = np.zeros((width, k), dtype=np.float32)
    diagonal = np.full((width, k), alpha, dtype=np.float32)
    for x, t, m in zip(chunks, targets, masks, strict=True):
        b += x.T @ (m * t)
        diagonal += x.multiply(x).T @ m
    w = np.zeros((width, k), dtype=np.float32)
    r = b.copy()
    z = r / diagonal
    p = z.copy()
    rz = (r * z).sum(axis=0)
    b_norm = np.linalg.norm(b, axis=0) + 1e-12
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
