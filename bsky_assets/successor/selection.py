"""Choosing the successor's configuration on the group's own history, by k-fold cross-validation.

A small fixed set of candidates (feature set × alpha × target), always including the issue's
baseline exactly: TF-IDF word 1-2 + char_wb 2-5 grams, one ridge with alpha 1 on the raw scores.
Each attribute keeps the candidate with the best **mean cross-validated ROC AUC at 0.5** (over the
folds whose held-out texts have both classes), **mean Spearman as the tie-break** (and the only
criterion for an attribute whose texts never reach 0.5); remaining ties go to the earlier
candidate, the baseline first. So the served model is never worse than the baseline on the
group's own validation, by that criterion.

Folds are assigned by a seeded hash of each text's sha256, so the same text can never sit in two
folds, and the same history always gets the same folds. Ridge is solved exactly in the dual:
one Cholesky factorisation of each fold's centred kernel per alpha gives every target and
attribute at once (an unpenalised intercept, as scikit-learn's Ridge fits); for three alphas on
4,000 texts that is five times faster than one eigendecomposition for all of them. The
cross-validation sees at most `cv_max_texts` training texts (a seeded sample beyond that),
which bounds its cost at 1,000,000.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from scipy.linalg import cho_factor, cho_solve
from scipy.stats import spearmanr
from sklearn.metrics import roc_auc_score

from bsky_assets.successor.features import TFIDF, TFIDF_EMBEDDINGS

THRESHOLD = 0.5
EPSILON = 1e-3  # scores are clipped to [EPSILON, 1 - EPSILON] before the logit
RAW, LOGIT = "raw", "logit"


@dataclass(frozen=True)
class Candidate:
    features: str
    alpha: float
    target: str

    @property
    def name(self) -> str:
        return f"{self.features} α={self.alpha:g} {self.target}"

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


BASELINE = Candidate(TFIDF, 1.0, RAW)
CANDIDATES: tuple[Candidate, ...] = tuple(
    [BASELINE]
    + [
        Candidate(features, alpha, target)
        for features in (TFIDF, TFIDF_EMBEDDINGS)
        for target in (RAW, LOGIT)
        for alpha in (0.3, 1.0, 3.0)
        if Candidate(features, alpha, target) != BASELINE
    ]
)


def logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(p, EPSILON, 1 - EPSILON)
    return np.log(p / (1 - p))


def target_values(scores: np.ndarray, target: str) -> np.ndarray:
    return logit(scores) if target == LOGIT else scores


def fold_ids(shas: list[str], folds: int, seed: int) -> np.ndarray:
    """A fold per text from a seeded hash of its sha256 (duplicates share a fold)."""
    return np.array(
        [int(hashlib.sha256(f"{seed}:{s}".encode()).hexdigest()[:8], 16) % folds for s in shas],
        dtype=np.int32,
    )


# -- the dual solution --------------------------------------------------------------------------


@dataclass
class DualFit:
    """Kernel ridge with an unpenalised intercept, for several alphas (one Cholesky each)."""

    row_means: np.ndarray
    total_mean: float
    coefficients: dict[float, np.ndarray]  # alpha → (train rows, targets)
    target_means: np.ndarray

    @classmethod
    def fit(cls, kernel: np.ndarray, targets: np.ndarray, alphas: list[float]) -> DualFit:
        """(K_c + αI) c = y − ȳ for each alpha, K_c the doubly centred kernel: positive definite
        for α > 0, so a Cholesky factorisation solves it exactly."""
        if any(alpha <= 0 for alpha in alphas):
            raise ValueError(f"ridge alphas must be positive, got {alphas}")
        kernel = np.asarray(kernel)  # float32 or float64; never modified
        row_means = kernel.mean(axis=0, dtype=np.float64)
        total = float(row_means.mean())
        means = targets.mean(axis=0)
        centred_targets = targets - means
        coefficients = {}
        for alpha in alphas:
            # centred afresh per alpha, in place: one n × n float64 array at a time (a kept
            # centred copy beside each alpha's system was 200 MB more at 5,000 texts)
            system = np.array(kernel, dtype=np.float64)
            system -= row_means[None, :]
            system -= row_means[:, None]
            system += total
            system.flat[:: len(system) + 1] += alpha
            # symmetric: its transpose is the Fortran-ordered view LAPACK factors without a copy
            factor = cho_factor(system.T, lower=True, overwrite_a=True, check_finite=False)
            coefficients[alpha] = cho_solve(factor, centred_targets, check_finite=False)
            del system, factor
        return cls(row_means, total, coefficients, means)

    def predict(self, kernel_rows: np.ndarray, alpha: float) -> np.ndarray:
        """`kernel_rows`: (new texts, train rows) kernel values."""
        centred = kernel_rows - kernel_rows.mean(axis=1, keepdims=True, dtype=np.float64)
        centred -= self.row_means[None, :]  # in place: one float64 copy of the rows
        centred += self.total_mean
        return centred @ self.coefficients[alpha] + self.target_means


def presence_groups(present: np.ndarray) -> dict[bytes, list[int]]:
    """Attributes scored on exactly the same texts share one solve."""
    groups: dict[bytes, list[int]] = defaultdict(list)
    for j in range(present.shape[1]):
        groups[np.packbits(present[:, j]).tobytes()].append(j)
    return dict(groups)


# -- cross-validation ----------------------------------------------------------------------------


@dataclass
class CrossValidation:
    candidates: list[Candidate]
    attributes: list[str]
    figures: dict[str, dict[str, dict[str, float | None]]]  # attribute → candidate → figures
    oof: dict[Candidate, np.ndarray]  # (texts, attributes) out-of-fold predictions
    folds: int
    texts: int

    def choose(self, attribute: str, allowed: list[Candidate]) -> Candidate:
        """The CV argmax among `allowed` for one attribute (see the module doc)."""
        figures = self.figures[attribute]

        def key(item: tuple[int, Candidate]) -> tuple[float, float, int]:
            index, candidate = item
            f = figures[candidate.name]
            auc = -1.0 if f["auc"] is None else round(f["auc"], 4)
            rho = -2.0 if f["spearman"] is None else round(f["spearman"], 4)
            return (auc, rho, -index)

        return max(enumerate(allowed), key=key)[1]


def _fold_figures(truth: np.ndarray, predicted: np.ndarray) -> tuple[float | None, float | None]:
    positives = truth >= THRESHOLD
    auc = None
    if 0 < positives.sum() < len(truth):
        auc = float(roc_auc_score(positives, predicted))
    rho = None
    if len(truth) > 2 and truth.std() > 0 and predicted.std() > 0:
        rho = float(spearmanr(truth, predicted).statistic)
    return auc, rho


def cross_validate(
    kernels: dict[str, np.ndarray],
    scores: np.ndarray,
    attributes: list[str],
    folds: np.ndarray,
    candidates: list[Candidate],
) -> CrossValidation:
    """Every candidate whose feature set has a kernel, on every fold; out-of-fold predictions
    and per-candidate mean AUC and Spearman across folds."""
    candidates = [c for c in candidates if c.features in kernels]
    n, k = scores.shape
    present = ~np.isnan(scores)
    oof = {c: np.full((n, k), np.nan) for c in candidates}
    groups = presence_groups(present)
    n_folds = int(folds.max()) + 1 if n else 0
    for features, kernel in kernels.items():
        mine = [c for c in candidates if c.features == features]
        alphas = sorted({c.alpha for c in mine})
        for fold in range(n_folds):
            for columns in groups.values():
                rows = present[:, columns[0]]
                train = np.flatnonzero(rows & (folds != fold))
                test = np.flatnonzero(rows & (folds == fold))
                if len(train) < 3 or not len(test):
                    continue
                targets = np.column_stack(
                    [target_values(scores[train][:, columns], t) for t in (RAW, LOGIT)]
                )
                fit = DualFit.fit(kernel[np.ix_(train, train)], targets, alphas)
                rows_kernel = kernel[np.ix_(test, train)]
                for candidate in mine:
                    predicted = fit.predict(rows_kernel, candidate.alpha)
                    offset = 0 if candidate.target == RAW else len(columns)
                    oof[candidate][np.ix_(test, columns)] = predicted[
                        :, offset : offset + len(columns)
                    ]
    figures: dict[str, dict[str, dict[str, float | None]]] = {}
    for j, attribute in enumerate(attributes):
        figures[attribute] = {}
        for candidate in candidates:
            aucs, rhos = [], []
            for fold in range(n_folds):
                rows = present[:, j] & (folds == fold) & ~np.isnan(oof[candidate][:, j])
                if rows.sum() < 3:
                    continue
                auc, rho = _fold_figures(scores[rows, j], oof[candidate][rows, j])
                if auc is not None:
                    aucs.append(auc)
                if rho is not None:
                    rhos.append(rho)
            figures[attribute][candidate.name] = {
                "auc": round(float(np.mean(aucs)), 4) if aucs else None,
                "spearman": round(float(np.mean(rhos)), 4) if rhos else None,
            }
    return CrossValidation(candidates, attributes, figures, oof, n_folds, n)
