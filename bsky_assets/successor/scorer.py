"""The successor as a Perspective scorer: what the compatible service and the in-process transport
score with when the labeller is `distilled:MODEL`."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from bsky_assets.perspective.scorers import Scorer


class DistilledScorer(Scorer):
    """A Perspective successor distilled from a group's own Google-scored history
    (`bsky-assets perspective distill`). It scores the attributes it was trained on, on
    Perspective's probability scale, and reports every other attribute unsupported.

    A full-tier model embeds with its encoder, checked against the one it was trained with at
    load (a different encoder is refused with a clear error, never scored with), and keeps a
    bounded in-process cache of embeddings (the server has no database): a text it scored
    recently is not encoded again."""

    synthetic = False

    def __init__(self, folder: Path, encoder=None) -> None:
        from bsky_assets.successor.model import SuccessorModel

        self.model = SuccessorModel.load(folder)
        if self.model.uses_embeddings:
            if encoder is None:
                from bsky_assets.successor.embedding_cache import MemoryCache
                from bsky_assets.successor.encoder import Encoder

                encoder = Encoder.configured(MemoryCache())
            self.model.attach_encoder(encoder)
        self.name = f"distilled-{self.model.model_id}"
        self.supported_attributes = frozenset(self.model.attributes)

    @property
    def version(self) -> str:
        return self.model.model_id

    @property
    def tier(self) -> str:
        return self.model.tier

    def score(self, texts: Sequence[str]) -> list[dict[str, float]]:
        if not texts:
            return []
        scores = self.model.predict(list(texts))
        # Full precision: rounding would tie texts the calibration keeps strictly apart.
        return [{a: float(row[i]) for i, a in enumerate(self.model.attributes)} for row in scores]
