"""Score the sociopolitical labeller against hand labels: accuracy, P/R/F1, confusion matrices.

The seed's reference points on its 361 hand-labelled pilot posts: GPT-4 civic F1 0.878,
Llama3-70B with context civic accuracy 0.906.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from bsky_assets.db.client import PostgresClient
from bsky_assets.db.tables import SOCIOPOLITICAL_EVALUATIONS
from bsky_assets.llm.client import LLMTaskClient, Post
from bsky_assets.llm.hand_labels import HandLabel, fingerprint
from bsky_assets.sociopolitical.task import IDEOLOGY_LABELS, PROMPT_VERSION

NOT_SOCIOPOLITICAL = "none"
IDEOLOGY_CLASSES = [*IDEOLOGY_LABELS, NOT_SOCIOPOLITICAL]


def _prf(tp: int, fp: int, fn: int) -> dict[str, float]:
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"precision": round(precision, 4), "recall": round(recall, 4), "f1": round(f1, 4)}


@dataclass
class Evaluation:
    model: str
    labeler: str
    prompt_version: str
    posts: int
    failed: int
    civic: dict[str, Any] = field(default_factory=dict)
    ideology: dict[str, Any] = field(default_factory=dict)

    def report(self) -> str:
        lines = [
            f"model {self.model} via {self.labeler}, prompt {self.prompt_version}",
            f"posts {self.posts}, scored {self.posts - self.failed}, failed {self.failed}",
            "",
            "is_sociopolitical   accuracy {accuracy:.3f}  precision {precision:.3f}  "
            "recall {recall:.3f}  F1 {f1:.3f}".format(**self.civic),
            "  confusion (rows: hand label, columns: model): "
            + json.dumps(self.civic["confusion"]),
            "",
            f"political_ideology_label   accuracy {self.ideology['accuracy']:.3f}  "
            f"macro F1 {self.ideology['macro_f1']:.3f}",
        ]
        for cls in IDEOLOGY_CLASSES:
            m = self.ideology["per_class"][cls]
            lines.append(
                f"  {cls:<9} precision {m['precision']:.3f}  recall {m['recall']:.3f}  "
                f"F1 {m['f1']:.3f}  support {m['support']}"
            )
        lines.append("  confusion (rows: hand label, columns: model)")
        lines.append("  " + " " * 10 + "".join(f"{c:>10}" for c in IDEOLOGY_CLASSES))
        for truth in IDEOLOGY_CLASSES:
            counts = self.ideology["confusion"][truth]
            lines.append(f"  {truth:<10}" + "".join(f"{counts[c]:>10}" for c in IDEOLOGY_CLASSES))
        return "\n".join(lines)


def evaluate(client: LLMTaskClient, hand_labels: list[HandLabel]) -> Evaluation:
    posts = [Post(str(i), h.text) for i, h in enumerate(hand_labels)]
    results = {r.key: r for batch in client.label(posts) for r in batch}
    pairs = [(h, results[str(i)]) for i, h in enumerate(hand_labels) if results[str(i)].ok]
    model = next((r.model for r in results.values() if r.model), client.settings.model)

    civic = Counter((h.is_sociopolitical, r.values["is_sociopolitical"]) for h, r in pairs)
    tp, fp, fn = civic[(True, True)], civic[(False, True)], civic[(True, False)]
    civic_metrics = {
        "accuracy": round((tp + civic[(False, False)]) / len(pairs), 4) if pairs else 0.0,
        **_prf(tp, fp, fn),
        "confusion": {
            "sociopolitical": {"sociopolitical": tp, "not": fn},
            "not": {"sociopolitical": fp, "not": civic[(False, False)]},
        },
    }

    def cls(label: str | None) -> str:
        return label or NOT_SOCIOPOLITICAL

    matrix = {t: dict.fromkeys(IDEOLOGY_CLASSES, 0) for t in IDEOLOGY_CLASSES}
    for h, r in pairs:
        matrix[cls(h.political_ideology_label)][cls(r.values["political_ideology_label"])] += 1
    per_class = {}
    for c in IDEOLOGY_CLASSES:
        tp_c = matrix[c][c]
        fp_c = sum(matrix[t][c] for t in IDEOLOGY_CLASSES) - tp_c
        fn_c = sum(matrix[c].values()) - tp_c
        per_class[c] = {**_prf(tp_c, fp_c, fn_c), "support": sum(matrix[c].values())}
    supported = [c for c in IDEOLOGY_CLASSES if per_class[c]["support"]]
    ideology = {
        "accuracy": round(sum(matrix[c][c] for c in IDEOLOGY_CLASSES) / len(pairs), 4)
        if pairs
        else 0.0,
        "macro_f1": round(sum(per_class[c]["f1"] for c in supported) / len(supported), 4)
        if supported
        else 0.0,
        "per_class": per_class,
        "confusion": matrix,
    }
    return Evaluation(
        model=model,
        labeler=client.labeler,
        prompt_version=PROMPT_VERSION,
        posts=len(hand_labels),
        failed=len(hand_labels) - len(pairs),
        civic=civic_metrics,
        ideology=ideology,
    )


def store(
    db: PostgresClient,
    evaluation: Evaluation,
    source: str,
    label_set: str,
    hand_labels: list[HandLabel],
) -> None:
    """Keep every evaluation with its label set, model and prompt version, queryable next to
    the labels, and with which hand labels it was scored on."""
    db.insert_rows(
        SOCIOPOLITICAL_EVALUATIONS,
        [
            {
                "evaluated_at": datetime.now(UTC),
                "label_set": label_set,
                "hand_labels_sha256": fingerprint(hand_labels),
                "model": evaluation.model,
                "labeler": evaluation.labeler,
                "prompt_version": evaluation.prompt_version,
                "source": source,
                "posts": evaluation.posts,
                "failed": evaluation.failed,
                "civic": json.dumps(evaluation.civic),
                "ideology": json.dumps(evaluation.ideology),
            }
        ],
    )


def latest_per_label_set(db: PostgresClient) -> list[dict[str, Any]]:
    """The newest evaluation of every label set, best macro F1 first: prompts and models side
    by side."""
    db.ensure_table(SOCIOPOLITICAL_EVALUATIONS)
    rows = db.fetch_all(
        "SELECT DISTINCT ON (coalesce(label_set, labeler || prompt_version)) label_set, model, "
        "prompt_version, posts, failed, (civic->>'f1')::float, (civic->>'accuracy')::float, "
        "(ideology->>'macro_f1')::float, evaluated_at, hand_labels_sha256 "
        f"FROM {db.qualified(SOCIOPOLITICAL_EVALUATIONS.name)} "
        "ORDER BY coalesce(label_set, labeler || prompt_version), evaluated_at DESC"
    )
    names = ["label_set", "model", "prompt_version", "posts", "failed", "civic_f1",
             "civic_accuracy", "ideology_macro_f1", "evaluated_at", "hand_labels"]  # fmt: skip
    found = [dict(zip(names, row, strict=True)) for row in rows]
    return sorted(found, key=lambda r: -(r["ideology_macro_f1"] or 0))
