"""The distil's held-out figures per tier and attribute: ranking (AUC at 0.5, Spearman,
Pearson), error, calibration by bin, and prevalence at 0.5 beside Google's (share gap, Cohen's
kappa, and Google's own gap between the training and the test part)."""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import polars as pl
from scipy.stats import pearsonr, spearmanr
from sklearn.metrics import cohen_kappa_score, roc_auc_score

from bsky_assets.successor.model import SuccessorModel, mean_or_none
from bsky_assets.successor.selection import THRESHOLD

CALIBRATION_BINS = 10
SCORING_SAMPLE = 2_000  # test texts timed per tier for the report's scoring cost


def _metrics(truth: np.ndarray, predicted: np.ndarray) -> dict[str, Any]:
    positives = int((truth >= THRESHOLD).sum())
    both_classes = 0 < positives < len(truth)
    varies = len(truth) > 2 and truth.std() > 0 and predicted.std() > 0
    bins = np.clip((predicted * CALIBRATION_BINS).astype(int), 0, CALIBRATION_BINS - 1)
    curve = [
        {
            "bin": f"{b / CALIBRATION_BINS:.1f}-{(b + 1) / CALIBRATION_BINS:.1f}",
            "n": int((bins == b).sum()),
            "mean_predicted": round(float(predicted[bins == b].mean()), 4),
            "mean_actual": round(float(truth[bins == b].mean()), 4),
        }
        for b in range(CALIBRATION_BINS)
        if (bins == b).any()
    ]
    google = truth >= THRESHOLD
    ours = predicted >= THRESHOLD
    kappa = None
    if len(truth) and (google.any() or ours.any()) and not (google.all() and ours.all()):
        kappa = round(float(cohen_kappa_score(google, ours)), 4)
        if np.isnan(kappa):
            kappa = None
    return {
        "n_test": len(truth),
        "test_positives": positives,
        "google_share": round(float(google.mean()), 4) if len(truth) else None,
        "successor_share": round(float(ours.mean()), 4) if len(truth) else None,
        "share_gap": round(float(abs(google.mean() - ours.mean())) * 100, 2)
        if len(truth)
        else None,
        "kappa": kappa,
        "spearman": round(float(spearmanr(truth, predicted).statistic), 4) if varies else None,
        "pearson": round(float(pearsonr(truth, predicted).statistic), 4) if varies else None,
        "mae": round(float(np.abs(truth - predicted).mean()), 4) if len(truth) else None,
        "auc": round(float(roc_auc_score(truth >= THRESHOLD, predicted)), 4)
        if both_classes
        else None,
        "calibration": curve,
    }


def shares_at_threshold(scores: np.ndarray, attributes: list[str]) -> dict[str, float | None]:
    """Google's share at >= 0.5 per attribute over the scored rows of `scores`."""
    shares = {}
    for i, attribute in enumerate(attributes):
        have = ~np.isnan(scores[:, i])
        shares[attribute] = float((scores[have, i] >= THRESHOLD).mean()) if have.any() else None
    return shares


def evaluate(
    model: SuccessorModel,
    texts: pl.Series,
    shas: list[str],
    scores: np.ndarray,
    counts: dict[str, int],
    train_shares: dict[str, float | None],
) -> dict[str, Any]:
    """Held-out figures per attribute. Beside the successor's share gap at 0.5 stands Google's
    own: how far its share in the training part is from its share in the test part. A
    calibration fitted on the training part reproduces that part's prevalence, so a gap near
    Google's own is the sample's (or the drift's), not the model's."""
    started = time.monotonic()
    predicted = model.predict(texts, shas)
    per_attribute = {}
    for i, attribute in enumerate(model.attributes):
        have = ~np.isnan(scores[:, i])
        metrics = _metrics(scores[have, i], predicted[have, i])
        train_share = train_shares.get(attribute)
        per_attribute[attribute] = {
            "n_train": counts[attribute],
            "chosen": model.choices[attribute].name,
            **metrics,
            "google_train_share": None if train_share is None else round(train_share, 4),
            "google_own_gap": None
            if train_share is None or metrics["google_share"] is None
            else round(abs(train_share - metrics["google_share"]) * 100, 2),
        }
    figures = list(per_attribute.values())
    aucs = [m["auc"] for m in figures if m["auc"] is not None]
    gaps = [m["share_gap"] for m in figures if m["share_gap"] is not None]
    own_gaps = [m["google_own_gap"] for m in figures if m["google_own_gap"] is not None]
    sample = texts.head(SCORING_SAMPLE)
    timed = time.monotonic()
    model.predict(sample, shas[:SCORING_SAMPLE])  # embeddings are cached by now: see costs
    scoring = time.monotonic() - timed
    return {
        "model_id": model.model_id,
        "attributes": per_attribute,
        "mean_auc": mean_or_none(aucs),
        "min_auc": min(aucs, default=None),
        "mean_spearman": mean_or_none([m["spearman"] for m in figures]),
        "mean_share_gap": mean_or_none(gaps),
        "max_share_gap": max(gaps, default=None),
        "mean_google_own_gap": mean_or_none(own_gaps),
        "max_google_own_gap": max(own_gaps, default=None),
        "mean_kappa": mean_or_none([m["kappa"] for m in figures]),
        "evaluation_seconds": round(time.monotonic() - started, 2),
        "featurize_and_predict_posts_per_s": round(len(sample) / scoring, 1) if scoring else None,
        "weights_mb": round(model.weights.nbytes / 2**20, 1),
        "encoder": model.encoder_identity,
    }
