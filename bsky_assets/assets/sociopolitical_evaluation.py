"""sociopolitical_evaluation: how the configured labeler (model × prompt × shape) scores against
the hand labels.

Not partitioned: each materialization evaluates the label set configured now, stores the result
beside every earlier one (`sociopolitical_evaluations`), and shows all label sets side by side,
so a researcher changing the prompt or the model sees at once whether it got better. The
numeric results are plain metadata, so the asset's Plots tab charts them over materializations.
`bsky-assets eval sociopolitical FILE.csv` runs the same evaluation on a file.
"""

from typing import Any

import dagster as dg

from bsky_assets.lib import plots
from bsky_assets.lib.labelling.metadata import markdown_cell
from bsky_assets.llm import evaluation
from bsky_assets.llm.hand_labels import fingerprint, load_hand_labels
from bsky_assets.llm.labeller import label_set_for
from bsky_assets.llm.resource import LLMResource
from bsky_assets.resources.postgres import PostgresResource
from bsky_assets.sociopolitical.task import SOCIOPOLITICAL

hand_labels = dg.AssetSpec(
    "hand_labels",
    group_name="evaluation",
    kinds={"postgres"},
    description="Researchers' own labels for a sample of posts (table hand_labels), imported "
    "with `bsky-assets eval import-hand-labels FILE.csv`: the ground truth of "
    "sociopolitical_evaluation.",
)


def confusion_markdown(matrix: dict[str, dict[str, int]], title: str) -> str:
    classes = list(matrix)
    lines = [
        f"**{title}** (rows: hand label, columns: labeler)",
        "",
        "| hand \\ labeler | " + " | ".join(classes) + " |",
        "|---|" + "---|" * len(classes),
    ]
    for truth in classes:
        lines.append(f"| {truth} | " + " | ".join(str(matrix[truth][c]) for c in classes) + " |")
    return "\n".join(lines)


def comparison_markdown(rows: list[dict[str, Any]], current: str) -> str:
    lines = [
        "| label set | model | prompt | hand labels | civic F1 | civic accuracy | lean macro F1 "
        "| evaluated |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        marker = " (this run)" if row["label_set"] == current else ""
        lines.append(
            f"| {markdown_cell(row['label_set'])}{marker} | {markdown_cell(row['model'])} "
            f"| {markdown_cell(row['prompt_version'])} | {row['posts'] - row['failed']} "
            f"| {row['civic_f1']:.3f} | {row['civic_accuracy']:.3f} "
            f"| {row['ideology_macro_f1']:.3f} | {row['evaluated_at']:%Y-%m-%d %H:%M} |"
        )
    return "\n".join(lines)


@dg.asset(
    deps=[hand_labels, "sociopolitical_labels"],
    output_required=False,  # no hand labels yet: the step says so, nothing is stored
    group_name="evaluation",
    kinds={"openai", "postgres"},
)
def sociopolitical_evaluation(
    context: dg.AssetExecutionContext, postgres: PostgresResource, llm: LLMResource
):
    """The configured LLM labeler scored on the hand labels: accuracy, precision, recall and F1
    per class, macro F1 and confusion matrices; one materialization per run, every label set
    side by side."""
    db = postgres.get_client()
    labels = load_hand_labels(db)
    if not labels:
        context.log.warning(
            "no hand labels to evaluate on: import some with "
            "`bsky-assets eval import-hand-labels FILE.csv` (columns uri or text, "
            "is_sociopolitical, political_ideology_label)"
        )
        return
    client = llm.get_client(SOCIOPOLITICAL)
    label_set = label_set_for(SOCIOPOLITICAL, client.labeler, client.settings)
    context.log.info(f"evaluating label set {label_set.id} on {len(labels)} hand labels")
    result = evaluation.evaluate(client, labels)
    evaluation.store(db, result, "hand_labels table", label_set.id, labels)
    civic, ideology = result.civic, result.ideology
    per_class = {
        metric: {cls: values[metric] for cls, values in ideology["per_class"].items()}
        for metric in ("precision", "recall", "f1")
    }
    yield dg.MaterializeResult(
        metadata={
            "label_set": label_set.id,
            "labeler": result.labeler,
            "llm_model": result.model,
            "llm_model_requested": client.settings.model,
            "prompt_version": result.prompt_version,
            "posts_per_prompt": client.settings.posts_per_prompt,
            "hand_labels": result.posts,
            "hand_labels_fingerprint": fingerprint(labels),
            "failed": result.failed,
            "civic_accuracy": civic["accuracy"],
            "civic_precision": civic["precision"],
            "civic_recall": civic["recall"],
            "civic_f1": civic["f1"],
            "lean_accuracy": ideology["accuracy"],
            "lean_macro_f1": ideology["macro_f1"],
            **{f"lean_f1_{cls}": v for cls, v in per_class["f1"].items()},
            "per_class": {cls: v for cls, v in ideology["per_class"].items()},
            "confusion": dg.MetadataValue.md(
                confusion_markdown(civic["confusion"], "is_sociopolitical")
                + "\n\n"
                + confusion_markdown(ideology["confusion"], "political_ideology_label")
            ),
            "all_label_sets": dg.MetadataValue.md(
                comparison_markdown(evaluation.latest_per_label_set(db), label_set.id)
            ),
            "per_class_scores": plots.grouped_bars(
                per_class, f"Lean per class, {result.model}, prompt {result.prompt_version}", ""
            ),
        }
    )
