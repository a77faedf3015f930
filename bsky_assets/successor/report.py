"""How a distilled successor did on its held-out split, for a terminal and for the UI."""

from __future__ import annotations

from typing import Any

from bsky_assets.successor.distill import DistillResult

COLUMNS = ("n_train", "n_test", "test_positives", "spearman", "pearson", "mae", "auc")


def _cell(value: Any) -> str:
    if value is None:
        return "—"
    return f"{value:.3f}" if isinstance(value, float) else str(value)


def markdown_table(evaluation: dict[str, Any]) -> str:
    """Per attribute: counts and metrics (AUC at Perspective's 0.5 threshold)."""
    lines = [
        "| attribute | " + " | ".join(COLUMNS) + " |",
        "|---|" + "---|" * len(COLUMNS),
    ]
    for attribute, metrics in evaluation["attributes"].items():
        cells = " | ".join(_cell(metrics.get(c)) for c in COLUMNS)
        lines.append(f"| {attribute} | {cells} |")
    return "\n".join(lines)


def text_report(result: DistillResult) -> str:
    evaluation = result.evaluation
    lines = [
        f"model {result.model.model_id}: {len(result.model.attributes)} attributes from "
        f"{evaluation['texts']} Google-scored texts, split {result.split}",
        f"stored in {result.path}",
        "",
        f"{'attribute':<30}" + "".join(f"{c:>15}" for c in COLUMNS),
    ]
    for attribute, metrics in evaluation["attributes"].items():
        lines.append(f"{attribute:<30}" + "".join(f"{_cell(metrics.get(c)):>15}" for c in COLUMNS))
    lines += [
        "",
        f"mean AUC {_cell(evaluation['mean_auc'])} (worst {_cell(evaluation['min_auc'])}), "
        f"mean Spearman {_cell(evaluation['mean_spearman'])}",
    ]
    if evaluation["not_modelled"]:
        lines.append(
            "not modelled (too few scored texts): "
            + ", ".join(f"{a} ({n})" for a, n in evaluation["not_modelled"].items())
        )
    lines.append(
        f"serve it: bsky-assets serve perspective --scorer distilled:{result.model.model_id}"
    )
    return "\n".join(lines)
