"""Ridge regression for many targets over a feature matrix too large to hold: row chunks (a
sparse TF-IDF block and, for the full tier, a dense embedding block) in memory or spilled to
disk, solved by Jacobi-preconditioned conjugate gradients.

This is the large-history path (more training texts than the cross-validation sample holds); a
smaller history is solved exactly in the dual (`selection.py`). Every attribute has its own
alpha, its own row mask, and either uses the dense block or not; all of them are solved in one
pass over the chunks per iteration.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import tempfile
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any, BinaryIO, NamedTuple

import numpy as np
from scipy import sparse

SPARSE_PARTS = ("data", "indices", "indptr")
SPILL_PREFIX = "bsky-distill-"  # + the owning process id, for whoever reads the folder names
OWNER_LOCK = "owner.lock"  # held (flock) by the spilling process for as long as it lives


def remove_stale_spills(root: Path | None = None) -> list[Path]:
    """Remove spill folders whose owner has ended. A distil that is killed (SIGTERM, OOM)
    skips its folder's cleanup, and at 1,000,000 texts that folder holds 3 GB; the next one
    to spill sweeps them. The owner is alive while it holds the lock in its folder: the kernel
    drops a lock when its process ends however it ends, and unlike a process id a lock means
    the same thing to processes in other pid namespaces (containers sharing a /tmp). A folder
    whose lock is held, or that has no lock (one being created, or not ours), is kept."""
    removed = []
    for folder in (root or Path(tempfile.gettempdir())).glob(f"{SPILL_PREFIX}*"):
        try:
            with open(folder / OWNER_LOCK, "rb") as lock:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:  # held (BlockingIOError), absent, or not ours to open
            continue
        shutil.rmtree(folder, ignore_errors=True)
        removed.append(folder)
    return removed


def _hold_owner_lock(folder: Path) -> BinaryIO | None:
    """Take the folder's owner lock under another name, then rename it into place: a sweep
    never sees an `OWNER_LOCK` that is not yet held. Where the filesystem has no locks the
    folder gets none, and no sweep removes it."""
    pending = folder / f"{OWNER_LOCK}.new"
    lock = open(pending, "wb")  # noqa: SIM115 (held until the chunks close)
    try:
        fcntl.flock(lock, fcntl.LOCK_EX)
    except OSError:  # ENOLCK, e.g. some network filesystems
        lock.close()
        return None
    pending.rename(folder / OWNER_LOCK)
    return lock


class Chunk(NamedTuple):
    """Rows of the feature matrix: the sparse block, on the columns `columns` lists (sorted) or,
    when it is None, on every column; and the dense block, when there is one."""

    matrix: sparse.csr_matrix
    dense: np.ndarray | None = None
    columns: np.ndarray | None = None


def compact(matrix: sparse.csr_matrix) -> tuple[sparse.csr_matrix, np.ndarray]:
    """`matrix` on the columns it uses, and those columns. A block of 5,000 texts touches a
    few per cent of the hashed width, so its products in the solver are that much smaller
    (a product on every column was a dense (width, attributes) array per block)."""
    columns = np.unique(matrix.indices)
    local = np.searchsorted(columns, matrix.indices).astype(np.int32)
    shape = (matrix.shape[0], len(columns))
    return sparse.csr_matrix((matrix.data, local, matrix.indptr), shape=shape), columns


class Chunks:
    """A matrix in row chunks, in memory until it holds `limit` nonzeros, then in a temporary
    folder (so memory does not grow with the history)."""

    def __init__(self, spill: bool = False, limit: int | None = None) -> None:
        self.limit = limit
        self.nonzeros = 0
        self._folder: tempfile.TemporaryDirectory[str] | None = None
        self._lock: BinaryIO | None = None
        self._items: list[Any] = []
        if spill:
            self._move_to_disk()

    @property
    def spilled(self) -> bool:
        return self._folder is not None

    def add(
        self,
        matrix: sparse.csr_matrix,
        dense: np.ndarray | None = None,
        columns: np.ndarray | None = None,
    ) -> None:
        self.nonzeros += matrix.nnz
        if self._folder is None and self.limit is not None and self.nonzeros > self.limit:
            self._move_to_disk()
        chunk = Chunk(matrix, dense, columns)
        if self._folder is None:
            self._items.append(chunk)
        else:
            self._items.append(self._write(len(self._items), chunk))

    def _write(self, index: int, chunk: Chunk) -> Path:
        assert self._folder is not None
        base = Path(self._folder.name) / str(index)
        base.mkdir()
        # plain .npy files: an .npz is a zip, and reading one computes its CRC on every pass
        for part in SPARSE_PARTS:
            np.save(base / f"{part}.npy", getattr(chunk.matrix, part))
        np.save(base / "shape.npy", np.array(chunk.matrix.shape))
        for name in ("dense", "columns"):
            if getattr(chunk, name) is not None:
                np.save(base / f"{name}.npy", getattr(chunk, name))
        return base

    def _move_to_disk(self) -> None:
        remove_stale_spills()
        self._folder = tempfile.TemporaryDirectory(prefix=f"{SPILL_PREFIX}{os.getpid()}-")
        self._lock = _hold_owner_lock(Path(self._folder.name))
        self._items = [self._write(i, item) for i, item in enumerate(self._items)]

    def __len__(self) -> int:
        return len(self._items)

    def __getitem__(self, index: int) -> Chunk:
        item = self._items[index]
        if item is None:
            raise IndexError(f"chunk {index} was drained")
        if isinstance(item, Path):
            # read, not mapped: mapped pages of every chunk would count against the step
            data, indices, indptr = (np.load(item / f"{part}.npy") for part in SPARSE_PARTS)
            shape = tuple(np.load(item / "shape.npy"))
            matrix = sparse.csr_matrix((data, indices, indptr), shape=shape, copy=False)
            dense, columns = (
                np.load(item / f"{name}.npy") if (item / f"{name}.npy").exists() else None
                for name in ("dense", "columns")
            )
            return Chunk(matrix, dense, columns)
        return item

    def __iter__(self) -> Iterator[Chunk]:
        for index in range(len(self._items)):
            yield self[index]

    def drain(self) -> Iterator[Chunk]:
        """Every chunk once, each given back (memory or disk) as soon as it is read."""
        for index in range(len(self._items)):
            chunk = self[index]
            item = self._items[index]
            if isinstance(item, Path):
                shutil.rmtree(item)
            self._items[index] = None
            yield chunk
        self.close()

    def close(self) -> None:
        self._items = []
        if self._folder is not None:
            self._folder.cleanup()
        if self._lock is not None:
            self._lock.close()
            self._lock = None


Part = list[tuple[slice | np.ndarray, np.ndarray]]  # (rows of the sum, values) pairs


def _summed(
    chunks: Chunks,
    part: Callable[[int, Chunk], Part],
    shape: tuple[int, int],
    pool: ThreadPoolExecutor | None,
    ahead: int,
) -> np.ndarray:
    """Σ over chunks of `part(i, chunk)`: each part adds its blocks to rows of the sum (a
    chunk's own sparse columns, then the dense block's rows), in chunk order whatever the
    number of threads (so the weights do not depend on the cores a run was given). The pool
    computes up to `ahead` parts beyond the one being added, so the adds (on this thread)
    overlap the products instead of leaving the cores idle between windows, and memory holds
    at most `ahead` + 1 parts whatever the history's size."""
    total = np.zeros(shape, dtype=np.float32)

    def add(blocks: Part) -> None:
        for rows, values in blocks:
            total[rows] += values  # a chunk's columns are unique: no add is lost

    if pool is None or len(chunks) == 1:
        for i in range(len(chunks)):
            add(part(i, chunks[i]))
        return total
    pending: deque[Future[Part]] = deque()
    try:
        for i in range(len(chunks)):
            pending.append(pool.submit(lambda i=i: part(i, chunks[i])))
            if len(pending) > ahead:
                add(pending.popleft().result())
        while pending:
            add(pending.popleft().result())
    finally:
        for future in pending:  # an error: nothing queued keeps running
            future.cancel()
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
    every_sparse_column, dense_rows = slice(0, sparse_width), slice(sparse_width, width)

    def transposed(chunk: Chunk, v: np.ndarray) -> Part:
        columns = every_sparse_column if chunk.columns is None else chunk.columns
        parts: Part = [(columns, chunk.matrix.T @ v)]
        if dense_width:
            parts.append((dense_rows, (np.asarray(chunk.dense).T @ v) * dense_mask))
        return parts

    def forward(chunk: Chunk, w: np.ndarray) -> np.ndarray:
        columns = every_sparse_column if chunk.columns is None else chunk.columns
        v = chunk.matrix @ w[columns]
        if dense_width:
            v += np.asarray(chunk.dense) @ w[dense_rows]
        return v

    def diagonal_part(i: int, chunk: Chunk) -> Part:
        x = chunk.matrix
        squares = (x.multiply(x).T @ masks[i]).astype(np.float32, copy=False)
        columns = every_sparse_column if chunk.columns is None else chunk.columns
        parts: Part = [(columns, squares)]
        if dense_width:
            dense = np.square(np.asarray(chunk.dense)).T @ masks[i]
            parts.append((dense_rows, dense * dense_mask))
        return parts

    pool = ThreadPoolExecutor(threads) if threads > 1 and len(chunks) > 1 else None
    try:

        def apply(p: np.ndarray) -> np.ndarray:
            product = _summed(
                chunks,
                lambda i, c: transposed(c, masks[i] * forward(c, p)),
                (width, k),
                pool,
                threads,
            )
            product += np.multiply(p, alphas, out=scratch)
            return product

        def column_dot(a: np.ndarray, b: np.ndarray) -> np.ndarray:
            return np.einsum("ij,ij->j", a, b)  # no (width, k) temporary

        # the state is five (width, k) arrays updated in place, and one more while a product
        # is summed (z, the preconditioned residual, lives in `scratch`): at 1,000,000 posts
        # and both tiers' 42 columns each is 84 MB, and every temporary one more
        b = _summed(
            chunks, lambda i, c: transposed(c, masks[i] * targets[i]), (width, k), pool, threads
        )
        diagonal = _summed(chunks, diagonal_part, (width, k), pool, threads)
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
        p = np.divide(r, diagonal)
        rz = column_dot(r, p)
        for iterations in range(1, max_iterations + 1):  # noqa: B007 (returned)
            ap = apply(p)
            step = (rz / np.maximum(column_dot(p, ap), 1e-30)).astype(np.float32)
            w += np.multiply(p, step, out=scratch)
            r -= np.multiply(ap, step, out=scratch)
            del ap
            if (np.sqrt(column_dot(r, r)) / b_norm <= tolerance).all():
                break
            z = np.divide(r, diagonal, out=scratch)
            rz_next = column_dot(r, z)
            p *= (rz_next / np.maximum(rz, 1e-30)).astype(np.float32)
            p += z
            rz = rz_next
        return w, iterations
    finally:
        if pool is not None:
            pool.shutdown()
