"""`<task>_evaluation`: how the configured LLM labeler (model × prompt × shape) scores against the
task's hand labels, and the `<task>_hand_labels` they are imported into.

Not partitioned: each materialization evaluates the label set configured now, stores the result
beside every earlier one (`<task>_evaluations`), and shows all label sets side by side, so a
researcher changing the prompt or the model sees at once whether it got better. The numeric
results are plain metadata, so the asset's Plots tab charts them over materializations.
`bsky-assets eval TASK FILE.csv` runs the same evaluation on a file.
"""

from __future__ import annotations

from typing import Any

import dagster as dg

from bsky_assets.evaluation import metrics, store
from bsky_assets.evaluation.hand_labels import fingerprint, load_hand_labels
from bsky_assets.evaluation.metrics import Evaluation
from bsky_assets.evaluation.tables import evaluations_table, hand_labels_table
from bsky_assets.lib import plots
from bsky_assets.lib.labelling.metadata import markdown_cell
from bsky_assets.lib.runs import launched_for_days
from bsky_assets.llm.labeller import label_set_of
from bsky_assets.llm.task import LLMTask

GROUP = "evaluation"


def hand_labels_asset(task: LLMTask) -> dg.AssetSpec:
    name = hand_labels_table(task).name
    columns = ", ".join(f.name for f in task.fields)
    return dg.AssetSpec(
        name,
        group_name=GROUP,
        kinds={"postgres"},
        description=f"Researchers' own labels for a sample of posts (table {name}: {columns}), "
        f"imported with `bsky-assets eval import-hand-labels FILE.csv --task {task.name}`: the "
        f"ground truth of {task.name}_evaluation.",
    )


def confusion_markdown(matrix: dict[str, dict[str, int]], title: str) -> str:
    names = list(matrix)
    lines = [
        f"**{title}** (rows: hand label, columns: labeler)",
        "",
        "| hand \\ labeler | " + " | ".join(names) + " |",
        "|---|" + "---|" * len(names),
    ]
    for truth in names:
        lines.append(f"| {truth} | " + " | ".join(str(matrix[truth][c]) for c in names) + " |")
    return "\n".join(lines)


def comparison_markdown(task: LLMTask, rows: list[dict[str, Any]], current: str) -> str:
    headline = []
    for f in task.fields:
        headline += (
            [(f"{f.prefix}_f1", f"{f.prefix} F1"), (f"{f.prefix}_accuracy", f"{f.prefix} accuracy")]
            if f.kind == "boolean"
            else [(f"{f.prefix}_macro_f1", f"{f.prefix} macro F1")]
        )
    lines = [
        "| label set | model | prompt | hand labels | "
        + " | ".join(title for _, title in headline)
        + " | evaluated |",
        "|---|---|---|---|" + "---|" * len(headline) + "---|",
    ]
    for row in rows:
        marker = " (this run)" if row["label_set"] == current else ""
        scores = " | ".join(f"{row[key] or 0:.3f}" for key, _ in headline)
        lines.append(
            f"| {markdown_cell(row['label_set'])}{marker} | {markdown_cell(row['model'])} "
            f"| {markdown_cell(row['prompt_version'])} | {row['posts'] - row['failed']} "
            f"| {scores} | {row['evaluated_at']:%Y-%m-%d %H:%M} |"
        )
    return "\n".join(lines)


def _ranked(task: LLMTask, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Best first, by the last field's headline (a category's macro F1, else a yes/no's F1)."""
    last = task.fields[-1]
    key = f"{last.prefix}_macro_f1" if last.kind == "category" else f"{last.prefix}_f1"
    return sorted(rows, key=lambda r: -(r[key] or 0))


def figures(task: LLMTask, result: Evaluation) -> dict[str, Any]:
    """Per field, the numbers the UI shows (and charts over materializations)."""
    shown: dict[str, Any] = {}
    for f in task.fields:
        m = result.metrics[f.metric_key]
        shown[f"{f.prefix}_accuracy"] = m["accuracy"]
        if f.kind == "boolean":
            shown |= {f"{f.prefix}_{k}": m[k] for k in ("precision", "recall", "f1")}
        else:
            shown[f"{f.prefix}_macro_f1"] = m["macro_f1"]
            shown |= {f"{f.prefix}_f1_{c}": v["f1"] for c, v in m["per_class"].items()}
    categories = [f for f in task.fields if f.kind == "category"]
    if categories:
        shown["per_class"] = dict(result.metrics[categories[0].metric_key]["per_class"])
    return shown


def per_class_plot(task: LLMTask, result: Evaluation) -> dg.MetadataValue:
    """Precision, recall and F1 per class of the task's last field."""
    f = task.fields[-1]
    m = result.metrics[f.metric_key]
    if f.kind == "category":
        per_class = m["per_class"]
    else:  # a yes/no field: its positive class (the figures above) is the one shown
        per_class = {f.positive: {k: m[k] for k in ("precision", "recall", "f1")}}
    grouped = {
        metric: {c: values[metric] for c, values in per_class.items()}
        for metric in ("precision", "recall", "f1")
    }
    title = f"{f.name} per class, {result.model}, prompt {result.prompt_version}"
    return plots.grouped_bars(grouped, title, "")


def evaluation_asset(task: LLMTask, hand_labels: dg.AssetSpec) -> dg.AssetsDefinition:
    @dg.asset(
        name=f"{task.name}_evaluation",
        deps=[hand_labels, task.table_name],
        output_required=False,  # no hand labels yet: the step says so, nothing is stored
        group_name=GROUP,
        kinds={"openai", "postgres"},
        required_resource_keys={"postgres", "llm"},
        description=f"The configured {task.name} labeler scored on {hand_labels.key.path[-1]}: "
        "accuracy, precision, recall and F1 per class, macro F1 and confusion matrices; one "
        "materialization per run, every label set side by side.",
    )
    def _evaluate(context):  # (an annotation here trips Dagster's context check)
        days = launched_for_days(context)
        if days:
            context.log.info(
                f"{task.name}_evaluation is not per day: this run was launched for {days}, so "
                "it evaluates nothing (materialize it on its own, from its asset page)"
            )
            return
        db = context.resources.postgres.get_client()
        labels = load_hand_labels(task, db)
        if not labels:
            context.log.warning(
                "no hand labels to evaluate on: import some with "
                f"`bsky-assets eval import-hand-labels FILE.csv --task {task.name}` (columns uri "
                f"or text, {', '.join(f.name for f in task.fields)})"
            )
            return
        client = context.resources.llm.get_client(task)
        label_set = label_set_of(task, client)
        context.log.info(f"evaluating label set {label_set.id} on {len(labels)} hand labels")
        result = metrics.evaluate(client, labels)
        metrics.store(db, result, f"{hand_labels.key.path[-1]} table", label_set.id, labels)
        confusion = "\n\n".join(
            confusion_markdown(result.metrics[f.metric_key]["confusion"], f.name)
            for f in task.fields
        )
        latest = store.latest_per_label_set(db, evaluations_table(task), task)
        yield dg.MaterializeResult(
            metadata={
                "label_set": label_set.id,
                "labeler": result.labeler,
                "llm_model": result.model,
                "llm_model_requested": client.settings.model,
                "prompt_version": result.prompt_version,
                "posts_per_prompt": client.settings.posts_per_prompt,
                "hand_labels": result.posts,
                "hand_labels_fingerprint": fingerprint(task, labels),
                "failed": result.failed,
                **figures(task, result),
                "confusion": dg.MetadataValue.md(confusion),
                "all_label_sets": dg.MetadataValue.md(
                    comparison_markdown(task, _ranked(task, latest), label_set.id)
                ),
                "per_class_scores": per_class_plot(task, result),
            }
        )

    return _evaluate


def evaluation_assets(task: LLMTask) -> list[dg.AssetSpec | dg.AssetsDefinition]:
    """The task's hand labels (external: imported from the shell) and its evaluation."""
    hand_labels = hand_labels_asset(task)
    return [hand_labels, evaluation_asset(task, hand_labels)]
