"""The successor's own figures: training time and peak memory, scoring speed.

`python -m bsky_assets.bench.distill N` runs in a fresh process (so its peak RSS is its own):
N synthetic posts with a score for every one of the 21 attributes (seeded noise:
meaningless, but the work of featurizing and solving is the same as on real history),
distilled exactly as `bsky-assets perspective distill` does once the history is loaded; then the
stored model scores 20,000 held-out texts through the server's scorer.
"""

from __future__ import annotations

import json
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from bsky_assets.perspective.attributes import ATTRIBUTE_COLUMNS
from bsky_assets.sample_data import PLACES, THINGS, TOPICS

SCORING_POSTS = 20_000
WORDS = [w.strip(".,!?#") for t in TOPICS.values() for s in t for w in s.split()]


def synthetic_texts(n: int, seed: int) -> list[str]:
    """Varied posts (templates plus random words), as long as real ones on average."""
    rng = random.Random(seed)
    templates = [t for topic in TOPICS.values() for t in topic if len(t) > 20]
    texts = []
    for i in range(n):
        base = rng.choice(templates).format(place=rng.choice(PLACES), thing=rng.choice(THINGS))
        extra = " ".join(rng.choice(WORDS) for _ in range(rng.randint(0, 12)))
        texts.append(f"{base} {extra} {i}")
    return texts


def history(n: int, seed: int = 0) -> pl.DataFrame:
    """A history frame as `training_frame` returns it, every attribute scored (seeded noise:
    the bench measures the work, not what is learnt)."""
    rng = np.random.default_rng(seed)
    return pl.DataFrame(
        {
            "text_sha256": [f"{i:064x}" for i in range(n)],
            "text": synthetic_texts(n, seed),
            "scored_at": pl.Series([None] * n, dtype=pl.Datetime("us", "UTC")),
            **{a: rng.beta(1.2, 4.0, n) for a in ATTRIBUTE_COLUMNS},
        }
    )


def main(posts: int) -> None:
    from bsky_assets.servers.perspective.scorers import load_scorer
    from bsky_assets.successor.distill import distill_frame

    frame = history(posts)
    models = Path(tempfile.mkdtemp(prefix="bsky-bench-models-"))
    started = time.monotonic()
    result = distill_frame(frame, models_dir=models)
    training_seconds = time.monotonic() - started
    del frame
    scorer = load_scorer(f"distilled:{result.path}")
    texts = synthetic_texts(SCORING_POSTS, seed=1)
    started = time.monotonic()
    for start in range(0, len(texts), 50):  # the server scores one batch request at a time
        scorer.score(texts[start : start + 50])
    scoring_seconds = time.monotonic() - started
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(
        json.dumps(
            {
                "posts": posts,
                "attributes": len(result.model.attributes),
                "training_seconds": round(training_seconds, 1),
                "peak_rss_mb": round(peak, 1),
                "spilled_to_disk": result.model.training.get("spilled", False),
                "scoring_posts_per_s": round(SCORING_POSTS / scoring_seconds, 1),
            }
        )
    )


def run_distill_bench(posts: int, env: dict[str, str] | None = None) -> dict[str, Any]:
    completed = subprocess.run(
        [sys.executable, "-m", "bsky_assets.bench.distill", str(posts)],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    if completed.returncode:
        raise RuntimeError(f"distill bench failed:\n{completed.stderr[-3000:]}")
    return json.loads(completed.stdout.strip().splitlines()[-1])


if __name__ == "__main__":
    main(int(sys.argv[1]))
