"""Score an LLM task's labeller against hand labels: accuracy, P/R/F1, confusion matrices.

Per field of the task: a yes/no field gets accuracy, precision, recall and F1 of its positive
class and a 2×2 confusion matrix; a category field gets accuracy, per-class P/R/F1 with support,
macro F1 over the classes that occur, and the full confusion matrix (a null answer is the class
`none`). The seed's reference points on its 361 hand-labelled pilot posts: GPT-4 civic F1 0.878,
Llama3-70B with context civic accuracy 0.906.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from bsky_assets.evaluation.hand_labels import HandLabel, fingerprint
from bsky_assets.evaluation.tables import evaluations_table
from bsky_assets.lib.db.client import PostgresClient
from bsky_assets.llm.client import LLMTaskClient, Post
from bsky_assets.llm.task import AnswerField, LLMTask

NONE = "none"  # a category field's null answer, as a class
NOT = "not"  # a yes/no field's negative class


def _prf(tp: int, fp: int, fn: int) -> dict[str, float]:
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"precision": round(precision, 4), "recall": round(recall, 4), "f1": round(f1, 4)}


def classes(answer_field: AnswerField) -> list[str]:
    if answer_field.kind == "boolean":
        return [answer_field.positive, NOT]
    return [*answer_field.categories, *([NONE] if answer_field.nullable else [])]


def _class(answer_field: AnswerField, value: Any) -> str:
    if answer_field.kind == "boolean":
        return answer_field.positive if value else NOT
    return value or NONE


def field_metrics(answer_field: AnswerField, pairs: list[tuple[Any, Any]]) -> dict[str, Any]:
    """The metrics of one field over (hand label, answer) value pairs."""
    names = classes(answer_field)
    matrix = {t: dict.fromkeys(names, 0) for t in names}
    for truth, answer in pairs:
        matrix[_class(answer_field, truth)][_class(answer_field, answer)] += 1
    correct = sum(matrix[c][c] for c in names)
    accuracy = round(correct / len(pairs), 4) if pairs else 0.0
    if answer_field.kind == "boolean":
        counts = Counter((bool(t), bool(a)) for t, a in pairs)
        tp, fp, fn = counts[(True, True)], counts[(False, True)], counts[(True, False)]
        return {"accuracy": accuracy, **_prf(tp, fp, fn), "confusion": matrix}
    per_class = {}
    for c in names:
        tp = matrix[c][c]
        fp = sum(matrix[t][c] for t in names) - tp
        fn = sum(matrix[c].values()) - tp
        per_class[c] = {**_prf(tp, fp, fn), "support": sum(matrix[c].values())}
    supported = [c for c in names if per_class[c]["support"]]
    macro = sum(per_class[c]["f1"] for c in supported) / len(supported) if supported else 0.0
    return {
        "accuracy": accuracy,
        "macro_f1": round(macro, 4),
        "per_class": per_class,
        "confusion": matrix,
    }


@dataclass
class Evaluation:
    task: LLMTask
    model: str
    labeler: str
    prompt_version: str
    posts: int
    failed: int
    metrics: dict[str, dict[str, Any]] = field(default_factory=dict)  # by field metric key

    def report(self) -> str:
        lines = [
            f"model {self.model} via {self.labeler}, prompt {self.prompt_version}",
            f"posts {self.posts}, scored {self.posts - self.failed}, failed {self.failed}",
        ]
        for answer_field in self.task.fields:
            m = self.metrics[answer_field.metric_key]
            names = classes(answer_field)
            lines.append("")
            if answer_field.kind == "boolean":
                lines.append(
                    f"{answer_field.name}   accuracy {m['accuracy']:.3f}  precision "
                    f"{m['precision']:.3f}  recall {m['recall']:.3f}  F1 {m['f1']:.3f}"
                )
            else:
                lines.append(
                    f"{answer_field.name}   accuracy {m['accuracy']:.3f}  "
                    f"macro F1 {m['macro_f1']:.3f}"
                )
                for c in names:
                    p = m["per_class"][c]
                    lines.append(
                        f"  {c:<9} precision {p['precision']:.3f}  recall {p['recall']:.3f}  "
                        f"F1 {p['f1']:.3f}  support {p['support']}"
                    )
            lines.append("  confusion (rows: hand label, columns: model)")
            lines.append("  " + " " * 14 + "".join(f"{c:>14}" for c in names))
            for truth in names:
                counts = m["confusion"][truth]
                lines.append(f"  {truth:<14}" + "".join(f"{counts[c]:>14}" for c in names))
        return "\n".join(lines)


def evaluate(client: LLMTaskClient, hand_labels: list[HandLabel]) -> Evaluation:
    """Ask the client's task of every hand-labelled text and score the answers."""
    task = client.task
    posts = [Post(str(i), h.text) for i, h in enumerate(hand_labels)]
    results = {r.key: r for batch in client.label(posts) for r in batch}
    pairs = [(h, results[str(i)]) for i, h in enumerate(hand_labels) if results[str(i)].ok]
    model = next((r.model for r in results.values() if r.model), client.settings.model)
    metrics = {
        f.metric_key: field_metrics(
            f, [(h.values[f.name], (r.values or {}).get(f.name)) for h, r in pairs]
        )
        for f in task.fields
    }
    return Evaluation(
        task=task,
        model=model,
        labeler=client.labeler,
        prompt_version=task.prompt_version,
        posts=len(hand_labels),
        failed=len(hand_labels) - len(pairs),
        metrics=metrics,
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
    task = evaluation.task
    db.insert_rows(
        evaluations_table(task),
        [
            {
                "evaluated_at": datetime.now(UTC),
                "label_set": label_set,
                "hand_labels_sha256": fingerprint(task, hand_labels),
                "model": evaluation.model,
                "labeler": evaluation.labeler,
                "prompt_version": evaluation.prompt_version,
                "source": source,
                "posts": evaluation.posts,
                "failed": evaluation.failed,
                **{key: json.dumps(value) for key, value in evaluation.metrics.items()},
            }
        ],
    )
