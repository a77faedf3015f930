"""Training the successor's tiers: cross-validated selection, the exact dual fit for a history
the size of the CV sample, calibration and the learning curve (beyond the CV sample the fit is
large_fit.py's; the model itself and its scoring are in model.py)."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np
import polars as pl
from scipy import sparse
from scipy.stats import spearmanr
from sklearn.metrics import roc_auc_score

from bsky_assets.lib.memory import release_freed_memory
from bsky_assets.lib.process_map import available_cores
from bsky_assets.successor.calibration import QuantileCalibration
from bsky_assets.successor.features import TFIDF, TFIDF_EMBEDDINGS, HashedTfidf
from bsky_assets.successor.large_fit import fit_large
from bsky_assets.successor.model import (
    FAST,
    FULL,
    LEARNING_CURVE,
    DistillParams,
    SuccessorModel,
    take,
)
from bsky_assets.successor.ridge import Chunks
from bsky_assets.successor.selection import (
    BASELINE,
    CANDIDATES,
    THRESHOLD,
    Candidate,
    CrossValidation,
    DualFit,
    cross_validate,
    fold_ids,
    presence_groups,
    target_values,
)

KERNEL_BLOCK_ROWS = 500
# texts from which the TF-IDF fit hashes on every core: below, spawning the worker processes
# (each imports scikit-learn) costs about what they save
PARALLEL_HASHING_FROM = 60_000


@dataclass
class Trained:
    """What one distil produced: the tiers' parts (ids are given by the caller), the
    cross-validation behind the choice, the learning curve, and what each step cost."""

    tiers: dict[str, dict[str, Any]]
    cross_validation: CrossValidation
    learning_curve: list[dict[str, Any]]
    costs: dict[str, Any]
    tfidf: HashedTfidf
    encoder: Any
    baseline_test: dict[str, Any] = field(default_factory=dict)  # the baseline, same split


def _kernel(rows: sparse.csr_matrix, columns: sparse.csr_matrix) -> np.ndarray:
    """rows · columnsᵀ as a dense float32 array (float64 per solve), a block of rows at a time
    on every core: the whole sparse product would hold four times the result in memory."""
    out = np.empty((rows.shape[0], columns.shape[0]), dtype=np.float32)
    transposed = columns.T.tocsc()
    starts = range(0, rows.shape[0], KERNEL_BLOCK_ROWS)

    def block(start: int) -> None:
        out[start : start + KERNEL_BLOCK_ROWS] = (
            rows[start : start + KERNEL_BLOCK_ROWS] @ transposed
        ).toarray()

    with ThreadPoolExecutor(available_cores()) as pool:
        list(pool.map(block, starts))
    return out


def _square(kernel: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """The kernel between `rows` (sorted indices): itself when they are every row, so that the
    fit's own float64 copy is the only one (the full CV sample's is 100 MB more otherwise)."""
    if len(rows) == len(kernel):
        return kernel
    return kernel[np.ix_(rows, rows)]


def _dual_weights(
    tfidf_rows: sparse.csr_matrix,
    embeddings: np.ndarray | None,
    kernels: dict[str, np.ndarray],
    scores: np.ndarray,
    choices: dict[int, Candidate],
) -> tuple[np.ndarray, np.ndarray]:
    """Exact weights on every training row: w = Xᵀα, b = ȳ − mean(Kα); one
    factorisation per feature set, presence pattern and alpha."""
    k = scores.shape[1]
    tfidf_width = tfidf_rows.shape[1]
    width = tfidf_width + (embeddings.shape[1] if embeddings is not None else 0)
    weights = np.zeros((width, k), dtype=np.float32)
    intercepts = np.zeros(k, dtype=np.float32)
    present = ~np.isnan(scores)
    for columns in presence_groups(present).values():
        rows = np.flatnonzero(present[:, columns[0]])
        by_features: dict[str, list[int]] = {}
        for j in columns:
            by_features.setdefault(choices[j].features, []).append(j)
        for features, js in by_features.items():
            kernel = _square(kernels[features], rows)
            targets = np.column_stack(
                [target_values(scores[rows, j], choices[j].target) for j in js]
            )
            fit = DualFit.fit(kernel, targets, sorted({choices[j].alpha for j in js}))
            for i, j in enumerate(js):
                coefficients = fit.coefficients[choices[j].alpha][:, i]
                weights[:tfidf_width, j] = tfidf_rows[rows].T @ coefficients
                if features == TFIDF_EMBEDDINGS and embeddings is not None:
                    weights[tfidf_width:, j] = embeddings[rows].T @ coefficients
                intercepts[j] = fit.target_means[i] - float((kernel @ coefficients).mean())
    return weights, intercepts


def _dual_predictions(
    kernels: dict[str, np.ndarray],
    new_kernels: dict[str, np.ndarray],
    scores: np.ndarray,
    choices: dict[int, Candidate],
    rows: np.ndarray,
) -> np.ndarray:
    """Each attribute's chosen candidate fitted on `rows` (exactly, in the dual), predicting the
    texts of `new_kernels`; one factorisation per feature set, presence pattern and alpha."""
    n_new = next(iter(new_kernels.values())).shape[0]
    predictions = np.full((n_new, scores.shape[1]), np.nan)
    present = ~np.isnan(scores[rows])
    for columns in presence_groups(present).values():
        have = rows[present[:, columns[0]]]
        if len(have) < 3:
            continue
        by_features: dict[str, list[int]] = {}
        for j in columns:
            by_features.setdefault(choices[j].features, []).append(j)
        for features, js in by_features.items():
            targets = np.column_stack(
                [target_values(scores[have, j], choices[j].target) for j in js]
            )
            alphas = sorted({choices[j].alpha for j in js})
            fit = DualFit.fit(_square(kernels[features], have), targets, alphas)
            kernel_rows = new_kernels[features][:, have]
            for alpha in alphas:
                predicted = fit.predict(kernel_rows, alpha)
                for i, j in enumerate(js):
                    if choices[j].alpha == alpha:
                        predictions[:, j] = predicted[:, i]
    return predictions


def _curve_point(
    kernels: dict[str, np.ndarray],
    test_kernels: dict[str, np.ndarray],
    scores: np.ndarray,
    test_scores: np.ndarray,
    choices: dict[int, Candidate],
    subset: np.ndarray,
) -> dict[str, Any]:
    predictions = _dual_predictions(kernels, test_kernels, scores, choices, subset)
    aucs, rhos = [], []
    for j in choices:
        have = ~np.isnan(test_scores[:, j]) & ~np.isnan(predictions[:, j])
        if have.sum() < 3:
            continue
        truth, predicted = test_scores[have, j], predictions[have, j]
        if 0 < (truth >= THRESHOLD).sum() < len(truth):
            aucs.append(float(roc_auc_score(truth >= THRESHOLD, predicted)))
        if truth.std() > 0 and predicted.std() > 0:
            rhos.append(float(spearmanr(truth, predicted).statistic))
    return {
        "mean_auc": round(float(np.mean(aucs)), 4) if aucs else None,
        "min_auc": round(float(np.min(aucs)), 4) if aucs else None,
        "mean_spearman": round(float(np.mean(rhos)), 4) if rhos else None,
    }


def train(
    texts: pl.Series,
    shas: pl.Series,
    scores: np.ndarray,
    attributes: list[str],
    params: DistillParams,
    encoder: Any = None,
    test_texts: pl.Series | None = None,
    test_shas: list[str] | None = None,
    test_scores: np.ndarray | None = None,
) -> Trained:
    """Select by cross-validation, fit both tiers, calibrate them, trace the learning curve.

    `scores` is (texts, attributes) with NaN where a text has no score for an attribute;
    `shas` are the texts' sha256 (a polars Series: a million Python strings are 120 MB).
    """
    n = len(texts)
    costs: dict[str, Any] = {}
    started = time.monotonic()
    exact = n <= params.cv_max_texts
    counts = None if exact else Chunks(limit=params.in_memory_nonzeros)  # for the CG's features
    tfidf = HashedTfidf(params.tfidf).fit(
        (texts.slice(s, params.chunk_rows).to_list() for s in range(0, n, params.chunk_rows)),
        keep=None if counts is None else counts.add,
        workers=available_cores() if n >= PARALLEL_HASHING_FROM else 1,
    )
    rng = np.random.default_rng(params.seed)
    cv_rows = np.arange(n) if exact else np.sort(rng.permutation(n)[: params.cv_max_texts])
    cv_texts, cv_shas = take(texts, cv_rows), shas.gather(cv_rows).to_list()
    if test_texts is not None and len(test_texts) > params.cv_max_texts:
        # the learning curve and the baseline need kernel rows: a seeded sample bounds them
        keep = np.sort(rng.permutation(len(test_texts))[: params.cv_max_texts])
        test_texts = test_texts.gather(keep)
        test_shas = None if test_shas is None else [test_shas[i] for i in keep]
        test_scores = None if test_scores is None else test_scores[keep]
    cv_tfidf = tfidf.transform(cv_texts)
    kernels = {TFIDF: _kernel(cv_tfidf, cv_tfidf)}
    test_tfidf = tfidf.transform(test_texts.to_list()) if test_texts is not None else None
    test_kernels = {TFIDF: _kernel(test_tfidf, cv_tfidf)} if test_tfidf is not None else {}
    costs["tfidf_seconds"] = round(time.monotonic() - started, 2)
    cv_embeddings = None
    if encoder is not None:
        started_encoding = time.monotonic()
        calls_before = encoder.texts_encoded
        # float32 throughout, summed in place: the kernels are stored as float32, and a
        # float64 sum beside them was 500 MB at 5,000 texts
        cv_embeddings = encoder.encode(cv_texts, cv_shas)
        combined = cv_embeddings @ cv_embeddings.T
        combined += kernels[TFIDF]
        kernels[TFIDF_EMBEDDINGS] = combined
        if test_texts is not None:
            test_embeddings = encoder.encode(test_texts.to_list(), test_shas)
            combined = test_embeddings @ cv_embeddings.T
            combined += test_kernels[TFIDF]
            test_kernels[TFIDF_EMBEDDINGS] = combined
        seconds = time.monotonic() - started_encoding
        encoded = encoder.texts_encoded - calls_before
        costs["encoding_seconds"] = round(seconds, 2)
        costs["texts_encoded"] = encoded
        costs["texts_from_cache"] = (
            len(cv_texts) + (len(test_texts) if test_texts is not None else 0) - encoded
        )
    started_cv = time.monotonic()
    cv_scores = scores[cv_rows]
    cv = cross_validate(
        kernels,
        cv_scores,
        attributes,
        fold_ids(cv_shas, params.folds, params.seed),
        list(CANDIDATES),
    )
    costs["cross_validation_seconds"] = round(time.monotonic() - started_cv, 2)
    fast_allowed = [c for c in cv.candidates if c.features == TFIDF]
    tier_choices = {FAST: {j: cv.choose(a, fast_allowed) for j, a in enumerate(attributes)}}
    if encoder is not None:
        full = {j: cv.choose(a, cv.candidates) for j, a in enumerate(attributes)}
        if any(c.features == TFIDF_EMBEDDINGS for c in full.values()):
            tier_choices[FULL] = full
        else:
            costs["full_tier"] = "not stored: no attribute gained from embeddings in CV"

    started_curve = time.monotonic()
    curve = []
    if test_scores is not None and len(test_scores):
        served = tier_choices.get(FULL, tier_choices[FAST])
        order = np.random.default_rng(params.seed + 1).permutation(len(cv_rows))
        for share in LEARNING_CURVE:
            subset = np.sort(order[: max(3, round(share * len(cv_rows)))])
            point = _curve_point(kernels, test_kernels, cv_scores, test_scores, served, subset)
            curve.append({"share": share, "texts": len(subset), **point})
    baseline_test = {}
    if test_scores is not None and len(test_scores):
        baseline = dict.fromkeys(range(len(attributes)), BASELINE)
        everything = np.arange(len(cv_rows))
        baseline_test = _curve_point(
            kernels, test_kernels, cv_scores, test_scores, baseline, everything
        )
        baseline_test["texts"] = len(cv_rows)
    costs["learning_curve_seconds"] = round(time.monotonic() - started_curve, 2)

    started_fit = time.monotonic()
    tiers: dict[str, dict[str, Any]] = {}
    if exact:
        for tier, choices in tier_choices.items():
            weights, intercepts = _dual_weights(
                cv_tfidf, cv_embeddings if tier == FULL else None, kernels, scores, choices
            )
            calibrations = {}
            for j, attribute in enumerate(attributes):
                have = ~np.isnan(scores[:, j]) & ~np.isnan(cv.oof[choices[j]][:, j])
                calibrations[attribute] = QuantileCalibration.fit(
                    cv.oof[choices[j]][have, j], scores[have, j]
                )
            tiers[tier] = {
                "choices": choices,
                "weights": weights,
                "intercepts": intercepts,
                "calibrations": calibrations,
                "training": {"solver": "exact (dual)", "rows": n, "calibrated_on": "out-of-fold"},
            }
    else:
        del kernels, test_kernels  # the chunked fit needs neither: their memory goes back
        cv.oof.clear()
        release_freed_memory()  # before the solve's peak, not beneath it
        assert counts is not None
        tiers = fit_large(
            tfidf, counts, encoder, texts, shas, scores, attributes, tier_choices, params
        )
    costs["fit_seconds"] = round(time.monotonic() - started_fit, 2)

    return Trained(tiers, cv, curve, costs, tfidf, encoder, baseline_test)


def build_model(
    model_id: str,
    tier: str,
    attributes: list[str],
    part: dict[str, Any],
    trained: Trained,
    params: DistillParams,
) -> SuccessorModel:
    encoder = trained.encoder if tier == FULL else None
    return SuccessorModel(
        model_id=model_id,
        tier=tier,
        attributes=list(attributes),
        choices={attributes[j]: c for j, c in part["choices"].items()},
        idf=trained.tfidf.idf,
        weights=part["weights"],
        intercepts=part["intercepts"],
        calibrations=part["calibrations"],
        params=params,
        encoder_identity=encoder.identity.as_dict() if encoder is not None else None,
        created_at=datetime.now(UTC).isoformat(timespec="seconds"),
        training=dict(part["training"]),
        encoder=encoder,
    )
