"""Synthetic Perspective history whose scores follow words in the text: a model that learned
anything ranks the texts the way the scores do."""

import csv
import random
from pathlib import Path

TOXIC_WORDS = ("awful", "idiot", "hate", "disgusting")
KIND_WORDS = ("friend", "thank", "grateful", "together")
FILLER = (
    "the", "council", "meeting", "weather", "bus", "garden", "river", "music", "coffee", "train",
    "library", "market", "school", "game", "photo", "city", "morning", "news", "dinner", "park",
)  # fmt: skip


def synthetic_history(n: int = 400, seed: int = 1) -> list[dict]:
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        words = [rng.choice(FILLER) for _ in range(rng.randint(6, 14))]
        toxic = rng.random() < 0.35
        kind = rng.random() < 0.35
        if toxic:
            words.insert(rng.randrange(len(words)), rng.choice(TOXIC_WORDS))
        if kind:
            words.insert(rng.randrange(len(words)), rng.choice(KIND_WORDS))
        rows.append(
            {
                "text": f"{' '.join(words)} #{i}",
                "created_utc": str(1_700_000_000 + 3600 * i),
                "prob_toxic": f"{(0.75 if toxic else 0.08) + rng.uniform(-0.05, 0.05):.4f}",
                "prob_affinity": f"{(0.7 if kind else 0.15) + rng.uniform(-0.05, 0.05):.4f}",
            }
        )
    return rows


def write_csv(path: Path, rows: list[dict]) -> Path:
    fields = list(dict.fromkeys(k for row in rows for k in row))
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)
    return path
