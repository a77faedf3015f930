"""The distilled successor: per attribute, the ridge configuration the group's own history chose.

Two tiers from one distil, each its own model (own id, own labeler): the **fast** tier uses the
TF-IDF features only (thousands of posts per second on one core); the **full** tier may add the
sentence encoder's embeddings for the attributes where cross-validation says they help (tens of
posts per second per CPU core, far more on a GPU). Both are chosen among the same candidates
(`selection.py`), calibrated by a strictly increasing quantile map fitted on out-of-fold
predictions (`calibration.py`), and stored as JSON and numpy arrays (never pickle: loading a
model runs no code).

Training is exact in the dual when the history fits the cross-validation sample (a few thousand
texts: the common case); beyond it the ridge is solved by conjugate gradients over chunks of the
feature matrix (`ridge.py`), memory bounded by one chunk plus the weights, with a seeded
calibration holdout. Everything is seeded and deterministic.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from functools import cached_property
from importlib.metadata import version
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
from scipy import sparse
from scipy.stats import spearmanr
from sklearn.metrics import roc_auc_score

from bsky_assets.successor.calibration import QuantileCalibration
from bsky_assets.successor.features import TFIDF, TFIDF_EMBEDDINGS, HashedTfidf, TfidfParams
from bsky_assets.successor.ridge import Chunks, solve_ridge
from bsky_assets.successor.selection import (
    BASELINE,
    CANDIDATES,
    RAW,
    THRESHOLD,
    Candidate,
    CrossValidation,
    DualFit,
    cross_validate,
    fold_ids,
    presence_groups,
    target_values,
)

METHOD = "cv-selected-ridge-quantile-calibrated"
FORMAT_VERSION = 2
FAST, FULL = "fast", "full"
LEARNING_CURVE = (0.25, 0.5, 0.75, 1.0)


@dataclass(frozen=True)
class DistillParams:
    """Everything that shapes the model (part of its id)."""

    word_ngrams: tuple[int, int] = (1, 2)
    char_ngrams: tuple[int, int] = (2, 5)
    hash_features: int = 2**18  # per n-gram family: 2^19 measured the same, at twice the memory
    folds: int = 5
    cv_max_texts: int = 5_000  # cross-validation (and the exact dual fit) sees at most these
    max_iterations: int = 60
    tolerance: float = 1e-4
    test_share: float = 0.2
    split: str = "auto"  # the held-out test set: auto (time if dated), time, or hash
    calibration_share: float = 0.1  # above cv_max_texts: the held-out share that calibrates
    min_examples: int = 50  # an attribute with fewer scored training texts is not modelled
    refit_below: int = 200_000  # above cv_max_texts: refit on the calibration rows too below this
    seed: int = 0
    chunk_rows: int = 20_000
    in_memory_nonzeros: int = 30_000_000  # above this the feature chunks spill to disk

    @property
    def tfidf(self) -> TfidfParams:
        return TfidfParams(self.word_ngrams, self.char_ngrams, self.hash_features)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> DistillParams:
        known = {f for f in cls.__dataclass_fields__}
        return cls(
            **{k: tuple(v) if isinstance(v, list) else v for k, v in values.items() if k in known}
        )


def take(texts: Sequence[str] | pl.Series, rows: np.ndarray) -> list[str]:
    """The texts at `rows`, from a list or (without copying the rest) a polars Series."""
    if isinstance(texts, pl.Series):
        return texts.gather(rows).to_list()
    return [texts[i] for i in rows]


@dataclass
class SuccessorModel:
    model_id: str
    tier: str
    attributes: list[str]
    choices: dict[str, Candidate]
    idf: np.ndarray  # (2, hash_features)
    weights: np.ndarray  # (tfidf width + embedding dimensions, attributes), float32
    intercepts: np.ndarray  # (attributes,)
    calibrations: dict[str, QuantileCalibration]
    params: DistillParams
    encoder_identity: dict[str, Any] | None
    created_at: str
    training: dict[str, Any] = field(default_factory=dict)
    encoder: Any = None  # the Encoder that embeds for a full tier (attached, or configured)

    @cached_property
    def featurizer(self) -> HashedTfidf:
        return HashedTfidf(self.params.tfidf, self.idf)

    @property
    def uses_embeddings(self) -> bool:
        return self.encoder_identity is not None

    def attach_encoder(self, encoder: Any = None) -> None:
        """The encoder a full tier scores with; refuses one other than the model's."""
        if not self.uses_embeddings:
            return
        if encoder is None:
            from bsky_assets.successor.encoder import Encoder

            encoder = Encoder.configured()
        encoder.check(self.encoder_identity)
        self.encoder = encoder

    def raw_scores(self, texts: Sequence[str], shas: Sequence[str] | None = None) -> np.ndarray:
        """The ridge's predictions, featurized a chunk at a time (memory bounded by a chunk)."""
        if self.uses_embeddings and self.encoder is None:
            self.attach_encoder()
        return raw_scores(
            self.featurizer, self.encoder, texts, shas, self.weights, self.intercepts, self.params
        )

    def predict(self, texts: Sequence[str], shas: Sequence[str] | None = None) -> np.ndarray:
        """Probabilities on Perspective's scale, (texts, attributes)."""
        raw = self.raw_scores(texts, shas)
        if not len(texts):
            return raw.astype(np.float64)
        return np.column_stack(
            [self.calibrations[a].apply(raw[:, i]) for i, a in enumerate(self.attributes)]
        )

    # -- the artifact: JSON and numpy arrays, never pickle --------------------------------------

    def manifest(self) -> dict[str, Any]:
        return {
            "format": FORMAT_VERSION,
            "model_id": self.model_id,
            "method": METHOD,
            "tier": self.tier,
            "attributes": self.attributes,
            "choices": {a: c.as_dict() for a, c in self.choices.items()},
            "encoder": self.encoder_identity,
            "params": self.params.as_dict(),
            "created_at": self.created_at,
            "training": self.training,
            "versions": {"scikit-learn": version("scikit-learn"), "numpy": np.__version__},
        }

    def save(self, folder: Path) -> Path:
        """Write atomically (a temporary folder renamed into place). A model folder that
        already exists is frozen: same id, same content, so it is left exactly as it is."""
        if (folder / "model.json").is_file():
            return folder
        folder.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{folder.name}-", dir=folder.parent))
        try:
            arrays = {"weights": self.weights, "intercepts": self.intercepts, "idf": self.idf}
            for attribute, calibration in self.calibrations.items():
                arrays[f"cal_x_{attribute}"] = calibration.x
                arrays[f"cal_y_{attribute}"] = calibration.y
            with (staging / "arrays.npz").open("wb") as handle:
                np.savez_compressed(handle, **arrays)
                handle.flush()
                os.fsync(handle.fileno())
            write_json(staging / "model.json", self.manifest())
            if folder.exists():  # a folder without a readable manifest: a failed earlier write
                shutil.rmtree(folder)
            os.rename(staging, folder)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        return folder

    @classmethod
    def load(cls, folder: Path) -> SuccessorModel:
        manifest = json.loads((folder / "model.json").read_text())
        if manifest.get("format") != FORMAT_VERSION or manifest.get("method") != METHOD:
            raise ValueError(f"{folder} is not a distilled model this version can load")
        attributes = list(manifest["attributes"])
        with np.load(folder / "arrays.npz", allow_pickle=False) as arrays:
            calibrations = {
                a: QuantileCalibration(arrays[f"cal_x_{a}"], arrays[f"cal_y_{a}"])
                for a in attributes
            }
            return cls(
                model_id=manifest["model_id"],
                tier=manifest["tier"],
                attributes=attributes,
                choices={a: Candidate(**c) for a, c in manifest["choices"].items()},
                idf=arrays["idf"],
                weights=arrays["weights"],
                intercepts=arrays["intercepts"],
                calibrations=calibrations,
                params=DistillParams.from_dict(manifest["params"]),
                encoder_identity=manifest.get("encoder"),
                created_at=manifest["created_at"],
                training=manifest.get("training", {}),
            )


def write_json(path: Path, payload: Any) -> None:
    with path.open("w") as handle:
        handle.write(json.dumps(payload, indent=2, sort_keys=True))
        handle.flush()
        os.fsync(handle.fileno())


def model_id_for(data_digest: str, params: DistillParams, record: dict[str, Any]) -> str:
    """A hash of the training data, the method, its parameters, the candidates with their
    cross-validated figures and the choice (`record`), and the feature code's versions."""
    canonical = json.dumps(
        [data_digest, METHOD, FORMAT_VERSION, params.as_dict(), record, version("scikit-learn")],
        sort_keys=True,
        default=str,
    )
    return hashlib.sha256(canonical.encode()).hexdigest()[:12]


def raw_scores(
    featurizer: HashedTfidf,
    encoder: Any,
    texts: Sequence[str] | pl.Series,
    shas: Sequence[str] | None,
    weights: np.ndarray,
    intercepts: np.ndarray,
    params: DistillParams,
) -> np.ndarray:
    width = featurizer.width
    dense = weights.shape[0] > width
    out = np.zeros((len(texts), weights.shape[1]), dtype=np.float32)
    for start in range(0, len(texts), params.chunk_rows):
        chunk = texts[start : start + params.chunk_rows]
        if isinstance(chunk, pl.Series):
            chunk = chunk.to_list()
        block = featurizer.transform(chunk) @ weights[:width]
        if dense:
            chunk_shas = None if shas is None else shas[start : start + params.chunk_rows]
            block += encoder.encode(chunk, chunk_shas) @ weights[width:]
        out[start : start + len(chunk)] = block + intercepts
    return out


# -- training -------------------------------------------------------------------------------------


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


def _kernel(matrix: sparse.csr_matrix) -> np.ndarray:
    return (matrix @ matrix.T).toarray().astype(np.float32)  # float64 per solve


def _dual_weights(
    tfidf_rows: sparse.csr_matrix,
    embeddings: np.ndarray | None,
    kernels: dict[str, np.ndarray],
    scores: np.ndarray,
    choices: dict[int, Candidate],
) -> tuple[np.ndarray, np.ndarray]:
    """Exact weights on every training row: w = Xᵀα, b = ȳ − mean(Kα); one
    eigendecomposition per feature set and presence pattern."""
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
            kernel = kernels[features][np.ix_(rows, rows)]  # a copy
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


def _primal_weights(
    tfidf: HashedTfidf,
    encoder: Any,
    texts: pl.Series,
    shas: list[str],
    rows: np.ndarray,
    scores: np.ndarray,
    columns: list[tuple[int, Candidate]],
    params: DistillParams,
) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """Conjugate gradients over chunks for every (attribute, candidate) column at once; the
    intercept is a lightly penalised constant column on centred targets."""
    uses_dense = np.array([c.features == TFIDF_EMBEDDINGS for _, c in columns])
    dense_width = encoder.identity.dimensions if uses_dense.any() else 0
    present = ~np.isnan(scores)
    offsets = np.zeros(len(columns), dtype=np.float32)
    transformed = np.zeros((len(scores), len(columns)), dtype=np.float32)
    for m, (j, candidate) in enumerate(columns):
        have = present[:, j]
        transformed[have, m] = target_values(scores[have, j], candidate.target)
        offsets[m] = transformed[rows[have[rows]], m].mean()
    chunks = Chunks(spill=False)
    targets, masks, nonzeros = [], [], 0
    width = tfidf.width + 1  # + the intercept column
    ones = None
    try:
        for start in range(0, len(rows), params.chunk_rows):
            chunk_rows = rows[start : start + params.chunk_rows]
            chunk_texts = take(texts, chunk_rows)
            matrix = tfidf.transform(chunk_texts)
            ones = sparse.csr_matrix(np.ones((len(chunk_rows), 1), dtype=np.float32))
            matrix = sparse.hstack([matrix, ones], format="csr", dtype=np.float32)
            dense = None
            if dense_width:
                dense = encoder.encode(chunk_texts, [shas[i] for i in chunk_rows])
            nonzeros += matrix.nnz
            if not chunks.spilled and nonzeros > params.in_memory_nonzeros:
                chunks = chunks.spill()
            chunks.add(matrix, dense)
            mask = np.column_stack([present[chunk_rows, j] for j, _ in columns]).astype(np.float32)
            targets.append(((transformed[chunk_rows] - offsets) * mask).astype(np.float32))
            masks.append(mask)
        solved = solve_ridge(
            chunks,
            targets,
            masks,
            width,
            dense_width,
            np.array([c.alpha for _, c in columns]),
            uses_dense,
            params.max_iterations,
            params.tolerance,
        )
    finally:
        chunks.close()
    weights = np.vstack([solved[: tfidf.width], solved[width:]]) if dense_width else solved[:-1]
    intercepts = solved[tfidf.width] + offsets
    return (
        weights,
        intercepts,
        {"rows": len(rows), "nonzeros": int(nonzeros), "spilled": chunks.spilled},
    )


def _dual_predictions(
    kernels: dict[str, np.ndarray],
    new_kernels: dict[str, np.ndarray],
    scores: np.ndarray,
    choices: dict[int, Candidate],
    rows: np.ndarray,
) -> np.ndarray:
    """Each attribute's chosen candidate fitted on `rows` (exactly, in the dual), predicting the
    texts of `new_kernels`; one eigendecomposition per feature set and presence pattern."""
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
            fit = DualFit.fit(kernels[features][np.ix_(have, have)], targets, alphas)
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
    shas: list[str],
    scores: np.ndarray,
    attributes: list[str],
    params: DistillParams,
    encoder: Any = None,
    test_texts: pl.Series | None = None,
    test_shas: list[str] | None = None,
    test_scores: np.ndarray | None = None,
) -> Trained:
    """Select by cross-validation, fit both tiers, calibrate them, trace the learning curve.

    `scores` is (texts, attributes) with NaN where a text has no score for an attribute.
    """
    n = len(texts)
    costs: dict[str, Any] = {}
    started = time.monotonic()
    tfidf = HashedTfidf(params.tfidf).fit(
        texts.slice(s, params.chunk_rows).to_list() for s in range(0, n, params.chunk_rows)
    )
    rng = np.random.default_rng(params.seed)
    exact = n <= params.cv_max_texts
    cv_rows = np.arange(n) if exact else np.sort(rng.permutation(n)[: params.cv_max_texts])
    cv_texts, cv_shas = take(texts, cv_rows), [shas[i] for i in cv_rows]
    if test_texts is not None and len(test_texts) > params.cv_max_texts:
        # the learning curve and the baseline need kernel rows: a seeded sample bounds them
        keep = np.sort(rng.permutation(len(test_texts))[: params.cv_max_texts])
        test_texts = test_texts.gather(keep)
        test_shas = None if test_shas is None else [test_shas[i] for i in keep]
        test_scores = None if test_scores is None else test_scores[keep]
    cv_tfidf = tfidf.transform(cv_texts)
    kernels = {TFIDF: _kernel(cv_tfidf)}
    test_tfidf = tfidf.transform(test_texts.to_list()) if test_texts is not None else None
    test_kernels = {TFIDF: (test_tfidf @ cv_tfidf.T).toarray()} if test_tfidf is not None else {}
    costs["tfidf_seconds"] = round(time.monotonic() - started, 2)
    cv_embeddings = None
    if encoder is not None:
        started_encoding = time.monotonic()
        calls_before = encoder.texts_encoded
        cv_embeddings = encoder.encode(cv_texts, cv_shas).astype(np.float64)
        kernels[TFIDF_EMBEDDINGS] = (kernels[TFIDF] + cv_embeddings @ cv_embeddings.T).astype(
            np.float32
        )
        if test_texts is not None:
            test_embeddings = encoder.encode(test_texts.to_list(), test_shas).astype(np.float64)
            test_kernels[TFIDF_EMBEDDINGS] = (
                test_kernels[TFIDF] + test_embeddings @ cv_embeddings.T
            ).astype(np.float32)
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
        tiers = _fit_large(tfidf, encoder, texts, shas, scores, attributes, tier_choices, params)
    costs["fit_seconds"] = round(time.monotonic() - started_fit, 2)

    return Trained(tiers, cv, curve, costs, tfidf, encoder, baseline_test)


def _fit_large(
    tfidf: HashedTfidf,
    encoder: Any,
    texts: pl.Series,
    shas: list[str],
    scores: np.ndarray,
    attributes: list[str],
    tier_choices: dict[str, dict[int, Candidate]],
    params: DistillParams,
) -> dict[str, dict[str, Any]]:
    """Beyond the CV sample: both tiers' columns in one CG solve on all but a seeded
    calibration holdout, calibrated on the holdout's predictions, then (below `refit_below`)
    solved again on every row."""
    n = len(texts)
    holdout = np.zeros(n, dtype=bool)
    holdout[
        np.random.default_rng(params.seed).permutation(n)[
            : max(1, round(n * params.calibration_share))
        ]
    ] = True
    fit_rows, cal_rows = np.flatnonzero(~holdout), np.flatnonzero(holdout)
    columns = [(j, c) for choices in tier_choices.values() for j, c in sorted(choices.items())]
    weights, intercepts, fitted = _primal_weights(
        tfidf, encoder, texts, shas, fit_rows, scores, columns, params
    )
    raw = (
        raw_scores(
            tfidf,
            encoder,
            take(texts, cal_rows),
            [shas[i] for i in cal_rows],
            weights,
            intercepts,
            params,
        )
        if len(cal_rows)
        else np.zeros((0, len(columns)))
    )
    calibrations: list[QuantileCalibration] = []
    for m, (j, _) in enumerate(columns):
        have = ~np.isnan(scores[cal_rows, j])
        calibrations.append(QuantileCalibration.fit(raw[have, m], scores[cal_rows[have], j]))
    if n < params.refit_below:
        weights, intercepts, fitted = _primal_weights(
            tfidf, encoder, texts, shas, np.arange(n), scores, columns, params
        )
    tiers = {}
    k = len(attributes)
    for t, (tier, choices) in enumerate(tier_choices.items()):
        part = slice(t * k, (t + 1) * k)
        tier_weights = weights[:, part]
        if tier == FAST and weights.shape[0] > tfidf.width:
            tier_weights = tier_weights[: tfidf.width]
        tiers[tier] = {
            "choices": choices,
            "weights": np.ascontiguousarray(tier_weights),
            "intercepts": intercepts[part].copy(),
            "calibrations": dict(zip(attributes, calibrations[part], strict=True)),
            "training": {
                "solver": "conjugate gradients (chunked)",
                "calibrated_on": f"a seeded {params.calibration_share:.0%} holdout",
                "calibration_rows": len(cal_rows),
                **fitted,
            },
        }
    return tiers


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


def mean_or_none(values: list[float | None]) -> float | None:
    real = [v for v in values if v is not None and not math.isnan(v)]
    return round(sum(real) / len(real), 4) if real else None


__all__ = ["FAST", "FULL", "RAW", "DistillParams", "SuccessorModel", "train"]
