"""Distil: train the successor on the history, evaluate it on a held-out split, store it.

The split is by time when the history has dates (the newest share is the test set, as the model
will score posts newer than its training data), otherwise a seeded random split. The stored model
is the one evaluated. Its id hashes the training data, the method and its parameters, so the same
history always gives the same id and the same scores.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
from scipy.stats import pearsonr, spearmanr
from sklearn.metrics import roc_auc_score

from bsky_assets import settings
from bsky_assets.db.client import PostgresClient
from bsky_assets.db.tables import SUCCESSOR_MODELS
from bsky_assets.perspective.attributes import ATTRIBUTE_COLUMNS
from bsky_assets.successor.history import training_frame
from bsky_assets.successor.model import (
    METHOD,
    DistillParams,
    SuccessorModel,
    mean_or_none,
    model_id_for,
    train,
)

THRESHOLD = 0.5  # Perspective's own cut-off for "the attribute is present"
CALIBRATION_BINS = 10


class NotEnoughHistory(ValueError):
    """No attribute has enough scored texts to train on."""


@dataclass
class DistillResult:
    model: SuccessorModel
    path: Path
    evaluation: dict[str, Any]
    split: str

    def summary(self) -> dict[str, Any]:
        """The line `distill --json` prints."""
        attributes = self.evaluation["attributes"]
        return {
            "model_id": self.model.model_id,
            "attributes": {
                a: {k: m[k] for k in ("n_train", "n_test", "spearman", "pearson", "mae", "auc")}
                for a, m in attributes.items()
            },
            "mean_auc": self.evaluation["mean_auc"],
            "mean_spearman": self.evaluation["mean_spearman"],
            "split": self.split,
            "path": str(self.path),
        }


def data_digest(frame: pl.DataFrame, attributes: list[str]) -> str:
    """A stable hash of the training rows (texts by hash, scores, times), in a canonical order."""
    digest = hashlib.sha256()
    line = pl.concat_str(
        [
            pl.col("text_sha256"),
            pl.col("scored_at").dt.epoch("s").cast(pl.String()).fill_null(""),
            *[pl.col(a).round(6).cast(pl.String()).fill_null("") for a in attributes],
        ],
        separator=",",
    )
    ordered = frame.select("text_sha256", "scored_at", *attributes).sort("text_sha256")
    for start in range(0, ordered.height, 50_000):  # a slice at a time: bounded memory
        lines = ordered.slice(start, 50_000).select(line).to_series()
        digest.update(("\n".join(lines.to_list()) + "\n").encode())
    return digest.hexdigest()


def split(frame: pl.DataFrame, params: DistillParams) -> tuple[np.ndarray, str]:
    """A boolean test mask: the newest share by time if most rows are dated, else seeded."""
    n = frame.height
    n_test = max(1, round(n * params.test_share))
    dated = frame.get_column("scored_at").is_not_null().sum()
    test = np.zeros(n, dtype=bool)
    if dated >= 0.9 * n:
        order = np.lexsort(
            (
                np.arange(n),
                frame.get_column("scored_at").dt.epoch("us").fill_null(0).to_numpy(),
            )
        )
        test[order[-n_test:]] = True
        return test, "by time (newest share is the test set)"
    test[np.random.default_rng(params.seed).permutation(n)[:n_test]] = True
    return test, f"random (seed {params.seed}): the history has too few dates"


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
    return {
        "n_test": len(truth),
        "test_positives": positives,
        "spearman": round(float(spearmanr(truth, predicted).statistic), 4) if varies else None,
        "pearson": round(float(pearsonr(truth, predicted).statistic), 4) if varies else None,
        "mae": round(float(np.abs(truth - predicted).mean()), 4) if len(truth) else None,
        "auc": round(float(roc_auc_score(truth >= THRESHOLD, predicted)), 4)
        if both_classes
        else None,
        "calibration": curve,
    }


def distill(
    client: PostgresClient,
    params: DistillParams | None = None,
    models_dir: Path | None = None,
) -> DistillResult:
    """Train on every Google-scored text the project knows, evaluate, store, register."""
    result = distill_frame(training_frame(client), params, models_dir)
    client.insert_rows(
        SUCCESSOR_MODELS,
        [
            {
                "model_id": result.model.model_id,
                "created_at": result.model.created_at,
                "path": str(result.path),
                "method": METHOD,
                "training_rows": result.evaluation["training_texts"],
                "evaluation": json.dumps(result.evaluation),
            }
        ],
        on_conflict="update",
    )
    return result


def distill_frame(
    frame: pl.DataFrame, params: DistillParams | None = None, models_dir: Path | None = None
) -> DistillResult:
    """Train, evaluate and store a model from a history frame (see `training_frame`)."""
    params = params or DistillParams()
    candidates = list(ATTRIBUTE_COLUMNS)
    test, how = split(frame, params) if frame.height else (np.zeros(0, dtype=bool), "none")
    train_rows = np.flatnonzero(~test)
    counts = {
        a: int(frame.get_column(a).is_not_null().to_numpy()[train_rows].sum()) for a in candidates
    }
    attributes = [a for a in candidates if counts[a] >= params.min_examples]
    if not attributes:
        raise NotEnoughHistory(
            f"no attribute has {params.min_examples} scored texts in the training split "
            f"({frame.height} texts in the history): import Perspective history with "
            "`bsky-assets perspective import-history`, or label days with Google's API first"
        )
    digest = data_digest(frame, attributes)
    model_id = model_id_for(digest, params)
    texts = frame.get_column("text")
    scores = frame.select(attributes).to_numpy().astype(np.float64)
    model = train(texts.gather(train_rows), scores[train_rows], attributes, params, model_id)
    model.training |= {"data_sha256": digest, "split": how}

    test_rows = np.flatnonzero(test)
    predicted = model.predict(texts.gather(test_rows))
    per_attribute = {}
    for i, attribute in enumerate(attributes):
        have = ~np.isnan(scores[test_rows, i])
        per_attribute[attribute] = {
            "n_train": counts[attribute],
            **_metrics(scores[test_rows[have], i], predicted[have, i]),
        }
    aucs = [m["auc"] for m in per_attribute.values() if m["auc"] is not None]
    evaluation = {
        "attributes": per_attribute,
        "mean_auc": mean_or_none(aucs),
        "min_auc": min(aucs, default=None),
        "mean_spearman": mean_or_none([m["spearman"] for m in per_attribute.values()]),
        "not_modelled": {a: counts[a] for a in candidates if a not in attributes},
        "split": how,
        "texts": frame.height,
        "training_texts": len(train_rows),
    }
    folder = (models_dir or settings.models_dir()) / model_id
    model.save(folder)
    (folder / "evaluation.json").write_text(json.dumps(evaluation, indent=2, sort_keys=True))
    return DistillResult(model, folder, evaluation, how)


def resolve_model(spec: str, models_dir: Path | None = None) -> Path:
    """A model folder from `latest`, a model id, or a path."""
    root = models_dir or settings.models_dir()
    if spec == "latest":
        manifests = sorted(
            root.glob("*/model.json"),
            key=lambda p: (json.loads(p.read_text()).get("created_at", ""), p.parent.name),
        )
        if not manifests:
            raise FileNotFoundError(
                f"no distilled model in {root}: run `bsky-assets perspective distill` first"
            )
        return manifests[-1].parent
    candidate = Path(spec)
    if (candidate / "model.json").is_file():
        return candidate
    if (root / spec / "model.json").is_file():
        return root / spec
    raise FileNotFoundError(f"no distilled model {spec!r} (looked in {root} and at the path)")


def latest_model_exists(models_dir: Path | None = None) -> bool:
    try:
        resolve_model("latest", models_dir)
    except FileNotFoundError:
        return False
    return True
