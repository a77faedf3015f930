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
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from functools import cached_property
from importlib.metadata import version
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from bsky_assets.successor.calibration import QuantileCalibration
from bsky_assets.successor.features import HashedTfidf, TfidfParams
from bsky_assets.successor.selection import (
    RAW,
    Candidate,
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
    # above cv_max_texts, below this: solve again on the calibration rows too. Off: the
    # calibration was fitted on the first solve's predictions, and a refit would serve other
    # weights with it (and cost a second solve) for 10 % more rows
    refit_below: int = 0
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


def mean_or_none(values: list[float | None]) -> float | None:
    real = [v for v in values if v is not None and not math.isnan(v)]
    return round(sum(real) / len(real), 4) if real else None


__all__ = ["FAST", "FULL", "RAW", "DistillParams", "SuccessorModel"]
