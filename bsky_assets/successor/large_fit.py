"""The successor's fit beyond the cross-validation sample: both tiers' chosen candidates in one
chunked conjugate-gradient solve over every history row's features (ridge.py), calibrated on a
seeded holdout's predictions. Memory stays bounded at 1,000,000 texts: the features are built
once from the counts the TF-IDF fit kept, a block of rows at a time, each block on the columns
it uses, and spill to disk past a limit."""

from __future__ import annotations

from typing import Any

import numpy as np
import polars as pl
from scipy import sparse

from bsky_assets.lib.memory import release_freed_memory
from bsky_assets.lib.process_map import available_cores
from bsky_assets.successor.calibration import QuantileCalibration
from bsky_assets.successor.features import TFIDF_EMBEDDINGS, HashedTfidf
from bsky_assets.successor.model import FAST, DistillParams
from bsky_assets.successor.ridge import Chunks, compact, solve_ridge
from bsky_assets.successor.selection import Candidate, target_values

BLOCK_ROWS = 5_000  # rows per feature block in the CG: the unit of work a thread takes


def _feature_chunks(
    tfidf: HashedTfidf,
    counts: Chunks,
    encoder: Any,
    texts: pl.Series,
    shas: pl.Series,
    params: DistillParams,
) -> tuple[Chunks, list[slice], int]:
    """Every history row's features from the counts the TF-IDF fit kept (each text is hashed
    once), for both solves and the calibration rows: the TF-IDF columns some history text
    uses (a small history touches a fraction of the hashed width, and the solver's vectors
    shrink with it), a constant column (the intercept) and, when an encoder is given, the
    embedding block; in blocks of `BLOCK_ROWS` rows, so every core has a block to work on, each
    on the columns it uses (`compact`).
    `fit_large` maps the solution back to the full width."""
    used = np.flatnonzero(tfidf.seen)
    position = np.full(tfidf.width, -1, dtype=np.int32)
    position[used] = np.arange(len(used), dtype=np.int32)
    # the features have the counts' nonzeros, a constant per row and the embedding block: when
    # that is over the limit they go to disk from the first block (filling memory up to the
    # limit first left that much in the step's peak)
    expected = counts.nonzeros + len(texts) * (1 + (encoder.identity.dimensions if encoder else 0))
    spill = expected > params.in_memory_nonzeros
    chunks, blocks = Chunks(spill=spill, limit=params.in_memory_nonzeros), []
    start = 0
    try:
        for counted in counts.drain():
            rows = counted.matrix.shape[0]
            features = tfidf.weigh(counted.matrix)
            features = sparse.csr_matrix(
                (features.data, position[features.indices], features.indptr),
                shape=(rows, len(used)),
            )
            ones = sparse.csr_matrix(np.ones((rows, 1), dtype=np.float32))
            matrix = sparse.hstack([features, ones], format="csr", dtype=np.float32)
            dense = None
            if encoder is not None:
                dense = encoder.encode(
                    texts.slice(start, rows).to_list(), shas.slice(start, rows).to_list()
                )
            for offset in range(0, rows, BLOCK_ROWS):
                block = slice(offset, min(offset + BLOCK_ROWS, rows))
                local, columns = compact(matrix[block])
                chunks.add(
                    local, None if dense is None else np.ascontiguousarray(dense[block]), columns
                )
                blocks.append(slice(start + block.start, start + block.stop))
            start += rows
    except BaseException:
        chunks.close()
        raise
    finally:
        counts.close()
    if start != len(texts):
        chunks.close()
        raise RuntimeError(f"the kept counts cover {start} of {len(texts)} texts")
    return chunks, blocks, chunks.nonzeros


def _solve_columns(
    chunks: Chunks,
    blocks: list[slice],
    scores: np.ndarray,
    columns: list[tuple[int, Candidate]],
    rows: np.ndarray,
    widths: tuple[int, int],
    params: DistillParams,
    initial: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray, int]:
    """Conjugate gradients for every (attribute, candidate) column at once on the rows where
    `rows` is true; the intercept is a lightly penalised constant column on centred targets.
    Returns the solution (with the intercept row), the targets' offsets and the iterations."""
    sparse_width, dense_width = widths
    present = ~np.isnan(scores)
    mask = np.column_stack([present[:, j] & rows for j, _ in columns])  # bool: a quarter
    transformed = np.zeros(mask.shape, dtype=np.float32)
    offsets = np.zeros(len(columns), dtype=np.float32)
    for m, (j, candidate) in enumerate(columns):
        have = present[:, j]
        transformed[have, m] = target_values(scores[have, j], candidate.target)
        offsets[m] = transformed[mask[:, m], m].mean() if mask[:, m].any() else 0.0
    targets = [(transformed[b] - offsets) * mask[b] for b in blocks]
    del transformed
    solved, iterations = solve_ridge(
        chunks,
        targets,
        [mask[b] for b in blocks],
        sparse_width,
        dense_width,
        np.array([c.alpha for _, c in columns]),
        np.array([c.features == TFIDF_EMBEDDINGS for _, c in columns]),
        params.max_iterations,
        params.tolerance,
        initial=initial,
        threads=available_cores(),
    )
    return solved, offsets, iterations


def _predict_rows(
    chunks: Chunks,
    blocks: list[slice],
    solved: np.ndarray,
    offsets: np.ndarray,
    rows: np.ndarray,
    sparse_width: int,
) -> np.ndarray:
    """The solution's raw predictions on `rows` (sorted indices), from the stored features."""
    out = np.zeros((len(rows), solved.shape[1]), dtype=np.float32)
    for index, block in enumerate(blocks):
        mine = (rows >= block.start) & (rows < block.stop)
        if not mine.any():
            continue
        chunk = chunks[index]
        local = rows[mine] - block.start
        columns = slice(0, sparse_width) if chunk.columns is None else chunk.columns
        values = chunk.matrix[local] @ solved[columns]
        if chunk.dense is not None:
            values += np.asarray(chunk.dense)[local] @ solved[sparse_width:]
        out[mine] = values + offsets
    return out


def fit_large(
    tfidf: HashedTfidf,
    counts: Chunks,
    encoder: Any,
    texts: pl.Series,
    shas: pl.Series,
    scores: np.ndarray,
    attributes: list[str],
    tier_choices: dict[str, dict[int, Candidate]],
    params: DistillParams,
) -> dict[str, dict[str, Any]]:
    """Beyond the CV sample: both tiers' columns in one CG solve on all but a seeded
    calibration holdout, calibrated on the holdout's predictions, then (below `refit_below`)
    solved again on every row, warm-started from the first solution. The features are
    computed once for all three, from the counts the TF-IDF fit kept."""
    n = len(texts)
    holdout = np.zeros(n, dtype=bool)
    holdout[
        np.random.default_rng(params.seed).permutation(n)[
            : max(1, round(n * params.calibration_share))
        ]
    ] = True
    cal_rows = np.flatnonzero(holdout)
    columns = [(j, c) for choices in tier_choices.values() for j, c in sorted(choices.items())]
    dense = encoder is not None and any(c.features == TFIDF_EMBEDDINGS for _, c in columns)
    dense_width = encoder.identity.dimensions if dense else 0
    used = np.flatnonzero(tfidf.seen)
    widths = (len(used) + 1, dense_width)  # the columns in use + the intercept column
    chunks, blocks, nonzeros = _feature_chunks(
        tfidf, counts, encoder if dense else None, texts, shas, params
    )
    release_freed_memory()  # what building the features freed, before the solve's peak
    try:
        solved, offsets, iterations = _solve_columns(
            chunks, blocks, scores, columns, ~holdout, widths, params
        )
        raw = _predict_rows(chunks, blocks, solved, offsets, cal_rows, widths[0])
        calibrations: list[QuantileCalibration] = []
        for m, (j, _) in enumerate(columns):
            have = ~np.isnan(scores[cal_rows, j])
            calibrations.append(QuantileCalibration.fit(raw[have, m], scores[cal_rows[have], j]))
        fitted: dict[str, Any] = {"rows": n - len(cal_rows), "iterations": iterations}
        if n < params.refit_below:
            solved, offsets, refit_iterations = _solve_columns(
                chunks,
                blocks,
                scores,
                columns,
                np.ones(n, dtype=bool),
                widths,
                params,
                initial=solved,
            )
            fitted = {"rows": n, "iterations": iterations, "refit_iterations": refit_iterations}
        spilled = chunks.spilled
    finally:
        chunks.close()
    width = tfidf.width
    weights = np.zeros((width + dense_width, len(columns)), dtype=np.float32)
    weights[used] = solved[: len(used)]
    weights[width:] = solved[len(used) + 1 :]
    intercepts = solved[len(used)] + offsets
    tiers = {}
    k = len(attributes)
    for t, (tier, choices) in enumerate(tier_choices.items()):
        part = slice(t * k, (t + 1) * k)
        tier_weights = weights[:, part]
        if tier == FAST and weights.shape[0] > width:
            tier_weights = tier_weights[:width]
        tiers[tier] = {
            "choices": choices,
            "weights": np.ascontiguousarray(tier_weights),
            "intercepts": intercepts[part].copy(),
            "calibrations": dict(zip(attributes, calibrations[part], strict=True)),
            "training": {
                "solver": "conjugate gradients (chunked)",
                "calibrated_on": f"a seeded {params.calibration_share:.0%} holdout",
                "calibration_rows": len(cal_rows),
                "nonzeros": int(nonzeros),
                "spilled": spilled,
                **fitted,
            },
        }
    return tiers
