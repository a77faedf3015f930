"""The successor's own figures: training time and peak memory, scoring speed.

`python -m bsky_assets.tools.bench.distill N [fast|full|full-memory]` runs in a fresh process
(so its peak RSS is its own): N synthetic posts with a score for every one of the 21
attributes (seeded noise: meaningless, but the work of featurizing, cross-validating and
solving is the same as on real history), distilled exactly as `bsky-assets perspective distill`
does once the history is loaded; then the stored model of that tier scores held-out texts it has
never seen, through the server's scorer (batches of 50) and as the in-process transport does
(batches of 1,000). The full tier embeds with the packaged encoder (its embedding cache starts
empty).

`full-memory` measures what the full tier's training holds at a size the real encoder cannot
reach here (1,000,000 posts is about 7 hours of encoding on 2 cores): a stand-in encoder gives
each text a seeded unit vector, half of each synthetic score comes from those vectors (so the CV
keeps embedding candidates), and nothing is scored. Its time is not the full tier's: add the
encoding at the encoder's posts/s.
"""

from __future__ import annotations

import contextlib
import json
import random
import resource
import subprocess
import sys
import tempfile
import threading
import time
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from bsky_assets.perspective.attributes import ATTRIBUTE_COLUMNS
from bsky_assets.tools.sample_data import PLACES, THINGS, TOPICS

SCORING_POSTS = 20_000
WORDS = [w.strip(".,!?#") for t in TOPICS.values() for s in t for w in s.split()]


def synthetic_text_chunks(n: int, seed: int, size: int = 50_000) -> Iterator[list[str]]:
    """Varied posts (templates plus random words), as long as real ones on average, `size` at
    a time (the same posts whatever the size)."""
    rng = random.Random(seed)
    templates = [t for topic in TOPICS.values() for t in topic if len(t) > 20]
    texts: list[str] = []
    for i in range(n):
        base = rng.choice(templates).format(place=rng.choice(PLACES), thing=rng.choice(THINGS))
        extra = " ".join(rng.choice(WORDS) for _ in range(rng.randint(0, 12)))
        texts.append(f"{base} {extra} {i}")
        if len(texts) == size:
            yield texts
            texts = []
    if texts:
        yield texts


def synthetic_texts(n: int, seed: int) -> list[str]:
    return [text for chunk in synthetic_text_chunks(n, seed) for text in chunk]


def history(n: int, seed: int = 0) -> pl.DataFrame:
    """A history frame as `training_frame` returns it, every attribute scored (seeded noise:
    the bench measures the work, not what is learnt). Built a chunk at a time, as the history
    is read from Postgres: a million Python strings at once would stay in the bench's peak."""
    rng = np.random.default_rng(seed)
    texts = pl.concat(
        [pl.Series("text", chunk, dtype=pl.String) for chunk in synthetic_text_chunks(n, seed)]
        or [pl.Series("text", [], dtype=pl.String)]
    )
    shas = pl.concat(
        [
            pl.Series("text_sha256", [f"{i:064x}" for i in range(s, min(s + 50_000, n))])
            for s in range(0, n, 50_000)
        ]
        or [pl.Series("text_sha256", [], dtype=pl.String)]
    )
    return pl.DataFrame(
        {
            "text_sha256": shas,
            "text": texts,
            "scored_at": pl.Series([None] * n, dtype=pl.Datetime("us", "UTC")),
            **{a: rng.beta(1.2, 4.0, n) for a in ATTRIBUTE_COLUMNS},
        }
    )


FAST, FULL = "fast", "full"
FULL_MEMORY = "full-memory"  # the full tier's training memory, with a stand-in encoder
FULL_SCORING_POSTS = 500
STAND_IN_DIMENSIONS = 384  # all-MiniLM-L6-v2's


class _SeededVectors:
    """Stands in for the sentence model: a seeded unit vector per text, at no cost."""

    def get_embedding_dimension(self) -> int:
        return STAND_IN_DIMENSIONS

    def encode(self, texts: list[str], **_: Any) -> np.ndarray:
        out = np.empty((len(texts), STAND_IN_DIMENSIONS), dtype=np.float32)
        for i, text in enumerate(texts):
            rng = np.random.default_rng(zlib.crc32(text.encode()))
            out[i] = rng.standard_normal(STAND_IN_DIMENSIONS)
        return out / np.linalg.norm(out, axis=1, keepdims=True)


class _NoCache:
    """The distil's cache is Postgres (nothing in the process); the bench keeps nothing."""

    def get_many(self, encoder_sha256: str, shas: Any) -> dict[str, np.ndarray]:
        return {}

    def put_many(self, encoder_sha256: str, vectors: dict[str, np.ndarray]) -> None:
        return None


def stand_in_encoder() -> Any:
    """An `Encoder` whose model is `_SeededVectors`: what the full tier's training holds in
    memory at 1,000,000 posts can be measured without the 7 hours of encoding (41 posts/s
    here) that the real encoder would take first. Never used to score."""
    from bsky_assets.successor.encoder import Encoder, EncoderIdentity

    class StandInEncoder(Encoder):
        _model = _SeededVectors()
        identity = EncoderIdentity(
            "stand-in: seeded unit vectors (bench only)", "0" * 64, STAND_IN_DIMENSIONS
        )

    return StandInEncoder("stand-in", "cpu", _NoCache())


def with_embedding_signal(frame: pl.DataFrame) -> pl.DataFrame:
    """Half of each score from the stand-in vectors, so that the CV keeps embedding candidates
    and the full tier's solve carries its dense block (pure noise might choose none)."""
    directions = np.random.default_rng(7).standard_normal((STAND_IN_DIMENSIONS, 21))
    signal = np.vstack(  # a chunk of vectors at a time: all of them would be 1.5 GB
        [
            1 / (1 + np.exp(-4 * (vectors @ directions)))
            for start in range(0, frame.height, 50_000)
            for vectors in [_SeededVectors().encode(frame["text"].slice(start, 50_000).to_list())]
        ]
    )
    return frame.with_columns(
        pl.Series(a, 0.5 * frame[a].to_numpy() + 0.5 * signal[:, j])
        for j, a in enumerate(ATTRIBUTE_COLUMNS)
    )


def main(posts: int, tier: str = FAST) -> None:
    with tempfile.TemporaryDirectory(prefix="bsky-bench-models-") as models:
        print(json.dumps(_measured(posts, tier, Path(models))))


class ProcessTreeRss:
    """The peak of this process's RSS plus its children's (the workers that hash n-grams),
    sampled twice a second while training runs: `ru_maxrss` covers this process alone, and a
    child's own counter is no help (a forked child's high-water mark starts at the parent's).
    `own_peak_mb` is this process's own peak when the block ends: training's, whatever the
    process does after it (the full tier's scoring loads a second encoder)."""

    def __init__(self, interval: float = 0.5) -> None:
        self.peak_mb = 0.0
        self.own_peak_mb = 0.0
        self._interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def __enter__(self) -> ProcessTreeRss:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()
        own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # a spike between samples
        self.own_peak_mb = round(own, 1)
        self.peak_mb = max(self.peak_mb, self.own_peak_mb)

    def _sample(self) -> None:
        import psutil

        me = psutil.Process()
        while not self._stop.wait(self._interval):
            total = me.memory_info().rss
            for child in me.children(recursive=True):
                with contextlib.suppress(psutil.Error):
                    total += child.memory_info().rss
            self.peak_mb = max(self.peak_mb, round(total / 2**20, 1))


def _measured(posts: int, tier: str, models: Path) -> dict[str, Any]:
    from bsky_assets import settings
    from bsky_assets.lib.process_map import available_cores
    from bsky_assets.successor.distill import distill_frame
    from bsky_assets.successor.embedding_cache import MemoryCache
    from bsky_assets.successor.encoder import Encoder, configured_encoder, resolve_device
    from bsky_assets.successor.scorer import DistilledScorer

    encoder = None
    if tier == FULL:
        settings.use_default_successor_encoder()
        encoder = Encoder(configured_encoder(), "auto", MemoryCache(2 * posts))
    elif tier == FULL_MEMORY:
        encoder = stand_in_encoder()
    frames = [with_embedding_signal(history(posts)) if tier == FULL_MEMORY else history(posts)]
    started = time.monotonic()
    # handed over, not held: `distill_frame` lets the history go once it has its parts, as it
    # does for `perspective distill`, which reads the frame from Postgres straight into the call
    with ProcessTreeRss() as tree:
        result = distill_frame(frames.pop(), models_dir=models, encoder=encoder)
    training_seconds = time.monotonic() - started
    if tier in (FULL, FULL_MEMORY) and FULL not in result.models:
        reason = "no attribute gained from embeddings in CV on this synthetic history"
        return {"posts": posts, "tier": tier, "skipped": reason}
    if tier == FULL_MEMORY:
        model = result.models[FULL]
        figures = {
            "posts": posts,
            "tier": tier,
            "encoder": encoder.identity.name,
            "attributes_with_embeddings": sum(
                c.features != "tfidf" for c in model.choices.values()
            ),
            "training_seconds": round(training_seconds, 1),
            "peak_rss_mb": tree.own_peak_mb,
            "peak_rss_with_workers_mb": tree.peak_mb,
            "spilled_to_disk": model.training.get("spilled", False),
            "cores": available_cores(),
            "costs": result.evaluation["costs"],
        }
        return figures
    scorer = DistilledScorer(
        result.paths[tier], Encoder(configured_encoder(), "auto") if tier == FULL else None
    )
    texts = synthetic_texts(SCORING_POSTS if tier == FAST else FULL_SCORING_POSTS, seed=1)
    started = time.monotonic()
    for start in range(0, len(texts), 50):  # the server scores one batch request at a time
        scorer.score(texts[start : start + 50])
    scoring_seconds = time.monotonic() - started
    fresh = synthetic_texts(len(texts), seed=2)
    started = time.monotonic()
    for start in range(0, len(fresh), 1_000):
        scorer.score(fresh[start : start + 1_000])
    in_process_seconds = time.monotonic() - started
    # the whole run's peak: training's, or scoring's where that is higher (the full tier's
    # scorer loads an encoder of its own beside the one training used)
    run_peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    figures: dict[str, Any] = {
        "posts": posts,
        "tier": tier,
        "attributes": len(result.model.attributes),
        "training_seconds": round(training_seconds, 1),
        "peak_rss_mb": tree.own_peak_mb,
        "peak_rss_with_workers_mb": tree.peak_mb,
        "peak_rss_with_scoring_mb": round(run_peak, 1),
        "spilled_to_disk": result.models[tier].training.get("spilled", False),
        "scoring_posts_per_s": round(len(texts) / scoring_seconds, 1),
        "in_process_posts_per_s": round(len(fresh) / in_process_seconds, 1),
        "cores": available_cores(),
        "costs": result.evaluation["costs"],
    }
    if encoder is not None:
        figures["encoder"] = encoder.identity.name
        figures["device"] = resolve_device("auto")
        seconds = result.evaluation["costs"].get("encoding_seconds") or 0
        encoded = result.evaluation["costs"].get("texts_encoded") or 0
        figures["encoding_posts_per_s"] = round(encoded / seconds, 1) if seconds else None
    return figures


def successor_for_labelling(models: Path, posts: int = 5_000) -> Path:
    """A fast-tier model for the bench's successor-labelled day (distilled in a child process,
    so the bench's own memory is not the figure)."""
    completed = subprocess.run(
        [
            sys.executable,
            "-m",
            "bsky_assets.tools.bench.distill",
            "--model-only",
            str(posts),
            str(models),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    if completed.returncode:
        raise RuntimeError(f"distilling the bench's successor failed:\n{completed.stderr[-3000:]}")
    return Path(completed.stdout.strip().splitlines()[-1])


def _model_only(posts: int, models: Path) -> None:
    from bsky_assets.successor.distill import distill_frame

    result = distill_frame(history(posts), models_dir=models)
    print(result.paths[FAST])


def run_distill_bench(
    posts: int, env: dict[str, str] | None = None, tier: str = FAST
) -> dict[str, Any]:
    if tier == FULL:
        from bsky_assets.successor.encoder import embeddings_installed

        if not embeddings_installed():
            return {"skipped": "the .[embeddings] extra is not installed"}
    completed = subprocess.run(
        [sys.executable, "-m", "bsky_assets.tools.bench.distill", str(posts), tier],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    if completed.returncode:
        raise RuntimeError(f"distill bench failed:\n{completed.stderr[-3000:]}")
    return json.loads(completed.stdout.strip().splitlines()[-1])


if __name__ == "__main__":
    if sys.argv[1] == "--model-only":
        _model_only(int(sys.argv[2]), Path(sys.argv[3]))
    else:
        main(int(sys.argv[1]), sys.argv[2] if len(sys.argv) > 2 else FAST)  # fast|full|full-memory
