"""Distil: choose, train and calibrate the successor's two tiers on the history, evaluate them on
a held-out split, store them.

The split is by time when the history has dates (the newest share is the test set, as the model
will score posts newer than its training data), otherwise a seeded random split; everything
that chooses (cross-validation, calibration) sees the training part only. The stored models are
the ones evaluated. Each tier's id hashes the training data, the method, its parameters, the
candidates' cross-validated figures and the choice, so the same history always gives the same
ids and the same scores.
"""

from __future__ import annotations

import hashlib
import json
import logging
import resource
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from bsky_assets import settings
from bsky_assets.lib.db.client import PostgresClient
from bsky_assets.perspective.attributes import ATTRIBUTE_COLUMNS
from bsky_assets.successor.evaluation import evaluate, shares_at_threshold
from bsky_assets.successor.history import training_frame
from bsky_assets.successor.model import (
    FAST,
    FULL,
    METHOD,
    DistillParams,
    SuccessorModel,
    model_id_for,
    write_json,
)
from bsky_assets.successor.selection import BASELINE
from bsky_assets.successor.tables import SUCCESSOR_MODELS
from bsky_assets.successor.training import build_model, train

_logger = logging.getLogger(__name__)


class NotEnoughHistory(ValueError):
    """No attribute has enough scored texts to train on."""


@dataclass
class DistillResult:
    models: dict[str, SuccessorModel]
    paths: dict[str, Path]
    evaluation: dict[str, Any]
    split: str

    @property
    def served_tier(self) -> str:
        return FULL if FULL in self.models else FAST

    @property
    def model(self) -> SuccessorModel:
        """The tier `distilled:latest` serves here (full when there is one)."""
        return self.models[self.served_tier]

    @property
    def path(self) -> Path:
        return self.paths[self.served_tier]

    def summary(self) -> dict[str, Any]:
        """The line `distill --json` prints."""
        return {
            "model_id": self.model.model_id,
            "tiers": {
                tier: {
                    "model_id": model.model_id,
                    "path": str(self.paths[tier]),
                    **{k: self.evaluation["tiers"][tier][k] for k in SUMMARY_FIGURES},
                    "attributes": {
                        a: {k: m[k] for k in ATTRIBUTE_SUMMARY}
                        for a, m in self.evaluation["tiers"][tier]["attributes"].items()
                    },
                }
                for tier, model in self.models.items()
            },
            "served_tier": self.served_tier,
            "attributes": {
                a: {k: m[k] for k in ATTRIBUTE_SUMMARY}
                for a, m in self.evaluation["attributes"].items()
            },
            "baseline_test": self.evaluation["baseline_test"],
            "cross_validation": self.evaluation["cross_validation"],
            "learning_curve": self.evaluation["learning_curve"],
            "costs": self.evaluation["costs"],
            "mean_auc": self.evaluation["mean_auc"],
            "mean_spearman": self.evaluation["mean_spearman"],
            "split": self.split,
            "path": str(self.path),
        }


SUMMARY_FIGURES = (
    "mean_auc", "min_auc", "mean_spearman", "mean_share_gap", "max_share_gap", "mean_kappa",
    "mean_google_own_gap", "max_google_own_gap",
)  # fmt: skip
ATTRIBUTE_SUMMARY = (
    "n_train", "n_test", "spearman", "pearson", "mae", "auc", "google_share", "successor_share",
    "share_gap", "google_train_share", "google_own_gap", "kappa", "chosen",
)  # fmt: skip


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
    # rows in order a slice at a time: a sorted copy of the frame was 250 MB at 1,000,000
    order = frame.get_column("text_sha256").arg_sort()
    for start in range(0, frame.height, 50_000):
        lines = frame[order.slice(start, 50_000)].select(line).to_series()
        digest.update(("\n".join(lines.to_list()) + "\n").encode())
    return digest.hexdigest()


SPLITS = ("auto", "time", "hash")


def split(frame: pl.DataFrame, params: DistillParams) -> tuple[np.ndarray, str]:
    """A boolean test mask and how it was drawn (`params.split`):

    - `time`: the newest share is the test set, as the model will score posts newer than its
      history (prevalence drifting over time shows in the figures);
    - `hash`: a seeded hash of each text's sha256, the split a group evaluates a labeller on when
      it holds out posts by id (no drift between the parts; a duplicate text is on one side);
    - `auto`: by time when most rows are dated, else by hash.
    """
    if params.split not in SPLITS:
        raise ValueError(f"split must be one of {', '.join(SPLITS)}, got {params.split!r}")
    n = frame.height
    n_test = max(1, round(n * params.test_share))
    dated = frame.get_column("scored_at").is_not_null().sum() >= 0.9 * n
    if params.split == "time" and not dated:
        raise ValueError("a split by time needs a date on at least 90 % of the history's rows")
    test = np.zeros(n, dtype=bool)
    if params.split == "time" or (params.split == "auto" and dated):
        order = np.lexsort(
            (
                np.arange(n),
                frame.get_column("scored_at").dt.epoch("us").fill_null(0).to_numpy(),
            )
        )
        test[order[-n_test:]] = True
        return test, "by time (newest share is the test set)"
    keys = [
        hashlib.sha256(f"{params.seed}:{sha}".encode()).digest()
        for sha in frame.get_column("text_sha256").to_list()
    ]
    test[np.argsort(np.array(keys, dtype=object), kind="stable")[:n_test]] = True
    why = "" if params.split == "hash" else ": the history has too few dates"
    return test, f"by a hash of each text (seed {params.seed}){why}"


def distill(
    client: PostgresClient,
    params: DistillParams | None = None,
    models_dir: Path | None = None,
    encoder: Any = None,
) -> DistillResult:
    """Train on every Google-scored text the project knows, evaluate, store, register.

    The full tier's embeddings are cached in Postgres (`successor_embeddings`), so distilling
    again encodes only texts it has not seen."""
    if encoder is None:
        encoder = _configured_encoder(client)
    result = distill_frame(training_frame(client), params, models_dir, encoder)
    client.insert_rows(
        SUCCESSOR_MODELS,
        [
            {
                "model_id": model.model_id,
                "created_at": model.created_at,
                "path": str(result.paths[tier]),
                "method": METHOD,
                "tier": tier,
                "training_rows": result.evaluation["training_texts"],
                "evaluation": json.dumps(result.evaluation),
            }
            for tier, model in result.models.items()
        ],
        on_conflict="update",
    )
    return result


def _configured_encoder(client: PostgresClient | None) -> Any:
    """The full tier's encoder when the extra is installed, with the Postgres cache; None
    (the fast tier only) otherwise."""
    from bsky_assets.successor.embedding_cache import MemoryCache, PostgresCache
    from bsky_assets.successor.encoder import Encoder, EncoderUnavailable

    try:
        encoder = Encoder.configured(PostgresCache(client) if client else MemoryCache(10**6))
        encoder.identity  # noqa: B018  (loads it: fail here, not halfway through training)
    except EncoderUnavailable as error:
        _logger.warning(f"the successor's full tier is not trained: {error}")
        return None
    return encoder


def _scores(frame: pl.DataFrame, attributes: list[str], rows: np.ndarray) -> np.ndarray:
    """(rows, attributes) float64 with NaN where unscored, a column at a time (the whole
    frame as one array, then its parts, would be three copies of it)."""
    out = np.empty((len(rows), len(attributes)), dtype=np.float64)
    for j, attribute in enumerate(attributes):
        column = frame.get_column(attribute).cast(pl.Float64).to_numpy()
        out[:, j] = column[rows]
    return out


def distill_frame(
    frame: pl.DataFrame,
    params: DistillParams | None = None,
    models_dir: Path | None = None,
    encoder: Any = None,
    attributes: list[str] | None = None,
) -> DistillResult:
    """Train, evaluate and store both tiers from a history frame (see `training_frame`).

    `attributes` defaults to the 21 of the project's set that the frame has columns for."""
    params = params or DistillParams()
    candidates = attributes or [a for a in ATTRIBUTE_COLUMNS if a in frame.columns]
    test, how = split(frame, params) if frame.height else (np.zeros(0, dtype=bool), "none")
    train_rows = np.flatnonzero(~test)
    counts = {
        a: int(frame.get_column(a).is_not_null().to_numpy()[train_rows].sum()) for a in candidates
    }
    modelled = [a for a in candidates if counts[a] >= params.min_examples]
    if not modelled:
        raise NotEnoughHistory(
            f"no attribute has {params.min_examples} scored texts in the training split "
            f"({frame.height} texts in the history): import Perspective history with "
            "`bsky-assets perspective import-history`, or label days with Google's API first"
        )
    digest = data_digest(frame, modelled)
    n_texts = frame.height
    test_rows = np.flatnonzero(test)
    train_scores, test_scores = (_scores(frame, modelled, rows) for rows in (train_rows, test_rows))
    train_shares = shares_at_threshold(train_scores, modelled)
    train_texts, test_texts = (frame.get_column("text").gather(r) for r in (train_rows, test_rows))
    train_shas = frame.get_column("text_sha256").gather(train_rows)
    test_shas = frame.get_column("text_sha256").gather(test_rows).to_list()
    # the frame's columns go back now (when the caller holds no reference to it, as `distill`
    # does not): at 1,000,000 texts it is 350 MB beside the training's peak
    del frame
    started = time.monotonic()
    trained = train(
        train_texts,
        train_shas,
        train_scores,
        modelled,
        params,
        encoder,
        test_texts,
        test_shas,
        test_scores,
    )
    del train_texts, train_shas, train_scores
    trained.costs["training_seconds"] = round(time.monotonic() - started, 2)
    cv = trained.cross_validation
    cv_record = {
        "folds": cv.folds,
        "texts": cv.texts,
        "criterion": "mean CV ROC AUC at 0.5, then mean CV Spearman, then the earlier candidate",
        "baseline": BASELINE.name,
        "candidates": [c.name for c in cv.candidates],
        "figures": cv.figures,
        "chosen": {
            tier: {modelled[j]: c.name for j, c in part["choices"].items()}
            for tier, part in trained.tiers.items()
        },
    }
    models, paths, tiers = {}, {}, {}
    root = models_dir or settings.models_dir()
    for tier, part in trained.tiers.items():
        record = {
            "tier": tier,
            "cross_validation": cv_record["figures"],
            "candidates": cv_record["candidates"],
            "chosen": cv_record["chosen"][tier],
            "encoder": trained.encoder.identity.as_dict() if tier == FULL else None,
        }
        model = build_model(
            model_id_for(digest, params, record), tier, modelled, part, trained, params
        )
        model.training |= {"data_sha256": digest, "split": how}
        tiers[tier] = evaluate(model, test_texts, test_shas, test_scores, counts, train_shares)
        models[tier] = model
    trained.costs["peak_rss_mb"] = round(
        resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1
    )
    served = FULL if FULL in models else FAST
    evaluation = {
        **{k: tiers[served][k] for k in SUMMARY_FIGURES},
        "attributes": tiers[served]["attributes"],
        "served_tier": served,
        "tiers": tiers,
        "baseline_test": trained.baseline_test,
        "cross_validation": cv_record,
        "learning_curve": trained.learning_curve,
        "costs": trained.costs,
        "not_modelled": {a: counts[a] for a in candidates if a not in modelled},
        "split": how,
        "texts": n_texts,
        "training_texts": len(train_rows),
    }
    for tier, model in models.items():
        folder = root / model.model_id
        model.save(folder)
        evaluation_file = folder / "evaluation.json"
        if not evaluation_file.exists():
            write_json(evaluation_file, evaluation)
        paths[tier] = folder
    return DistillResult(models, paths, evaluation, how)
