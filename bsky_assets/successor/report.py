"""How a distil chose and how its tiers did, for a terminal and for the UI.

The UI renders an inline markdown table only under about 1,000 characters, so the key tables
(tiers against the baseline, the learning curve, the costs) are short; the per-attribute and
per-candidate figures are the long ones (behind a click in the UI, in full in the JSON).
"""

from __future__ import annotations

from typing import Any

from bsky_assets.successor.distill import DistillResult

ATTRIBUTE_COLUMNS = (
    ("n_test", "n"),
    ("auc", "AUC"),
    ("spearman", "ρ"),
    ("google_share", "Google ≥0.5"),
    ("successor_share", "successor ≥0.5"),
    ("google_train_share", "Google ≥0.5, training part"),
    ("kappa", "κ"),
)


def _cell(value: Any, digits: int = 3) -> str:
    if value is None:
        return "—"
    return f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def _pct(value: float | None) -> str:
    return "—" if value is None else f"{100 * value:.1f}%"


def short_name(attribute: str) -> str:
    return attribute.removesuffix("_EXPERIMENTAL")


def tiers_table(evaluation: dict[str, Any]) -> str:
    """Each tier beside the TF-IDF baseline on the held-out split."""
    lines = [
        "| model | mean AUC | worst AUC | mean ρ | mean gap ≥0.5 | worst gap | mean κ |",
        "|---|---|---|---|---|---|---|",
    ]
    for tier, figures in evaluation["tiers"].items():
        lines.append(
            f"| {tier} `{figures['model_id']}` | {_cell(figures['mean_auc'])} | "
            f"{_cell(figures['min_auc'])} | {_cell(figures['mean_spearman'])} | "
            f"{_cell(figures['mean_share_gap'], 1)} pp | {_cell(figures['max_share_gap'], 1)} pp "
            f"| {_cell(figures['mean_kappa'], 2)} |"
        )
    baseline = evaluation.get("baseline_test") or {}
    if baseline:
        lines.append(
            f"| baseline (TF-IDF, ridge α=1, raw) | {_cell(baseline.get('mean_auc'))} | "
            f"{_cell(baseline.get('min_auc'))} | {_cell(baseline.get('mean_spearman'))} | "
            "— | — | — |"
        )
    first = next(iter(evaluation["tiers"].values()), {})
    if first.get("mean_google_own_gap") is not None:
        # what sampling and drift alone give: Google's share, training part against test part
        lines.append(
            f"| Google itself, training part vs test part | — | — | — | "
            f"{_cell(first['mean_google_own_gap'], 1)} pp | "
            f"{_cell(first['max_google_own_gap'], 1)} pp | — |"
        )
    return "\n".join(lines)


def attributes_table(evaluation: dict[str, Any], tier: str | None = None) -> str:
    """Per attribute of one tier: held-out figures and the shares at 0.5 beside Google's."""
    figures = evaluation["tiers"][tier or evaluation["served_tier"]]["attributes"]
    lines = [
        "| attribute | " + " | ".join(label for _, label in ATTRIBUTE_COLUMNS) + " |",
        "|---|" + "---|" * len(ATTRIBUTE_COLUMNS),
    ]
    for attribute, metrics in figures.items():
        cells = []
        for key, _ in ATTRIBUTE_COLUMNS:
            value = metrics.get(key)
            cells.append(_pct(value) if key.endswith("share") else _cell(value, 2))
        lines.append(f"| {short_name(attribute)} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def choice_table(evaluation: dict[str, Any]) -> str:
    """Per attribute: the candidate each tier chose and its CV AUC beside the baseline's."""
    cv = evaluation["cross_validation"]
    tiers = list(cv["chosen"])
    lines = [
        "| attribute | baseline CV AUC | "
        + " | ".join(f"{t}: chosen (CV AUC)" for t in tiers)
        + " |",
        "|---|---|" + "---|" * len(tiers),
    ]
    for attribute, figures in cv["figures"].items():
        cells = []
        for tier in tiers:
            chosen = cv["chosen"][tier][attribute]
            cells.append(f"{chosen} ({_cell(figures[chosen]['auc'])})")
        baseline = _cell(figures[cv["baseline"]]["auc"])
        lines.append(f"| {short_name(attribute)} | {baseline} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def curve_table(evaluation: dict[str, Any]) -> str:
    lines = ["| training texts | mean AUC | worst AUC | mean ρ |", "|---|---|---|---|"]
    for point in evaluation["learning_curve"]:
        lines.append(
            f"| {point['texts']} ({point['share']:.0%}) | {_cell(point['mean_auc'])} | "
            f"{_cell(point['min_auc'])} | {_cell(point['mean_spearman'])} |"
        )
    return "\n".join(lines)


def costs_table(evaluation: dict[str, Any]) -> str:
    costs = evaluation["costs"]
    lines = ["| cost | value |", "|---|---|"]
    for key, value in costs.items():
        lines.append(f"| {key.replace('_', ' ')} | {value} |")
    for tier, figures in evaluation["tiers"].items():
        lines.append(
            f"| {tier}: scoring posts/s (1 process, featurize + predict) | "
            f"{figures['featurize_and_predict_posts_per_s']} |"
        )
        lines.append(f"| {tier}: weights MB | {figures['weights_mb']} |")
    return "\n".join(lines)


def text_report(result: DistillResult) -> str:
    evaluation = result.evaluation
    cv = evaluation["cross_validation"]
    lines = [
        f"{len(result.model.attributes)} attributes from {evaluation['texts']} Google-scored "
        f"texts, split {result.split}; {evaluation['training_texts']} training texts",
        "",
        "Held-out split, each tier beside the TF-IDF baseline:",
        tiers_table(evaluation),
        "",
        f"Candidates ({cv['folds']}-fold CV on {cv['texts']} training texts; {cv['criterion']}):",
        "  " + "; ".join(cv["candidates"]),
    ]
    for attribute, figures in cv["figures"].items():
        cells = ", ".join(
            f"{name} {_cell(f['auc'])}/{_cell(f['spearman'])}" for name, f in figures.items()
        )
        lines.append(f"  {short_name(attribute)} (AUC/ρ): {cells}")
    lines += ["", "Chosen per attribute:", choice_table(evaluation)]
    for tier in evaluation["tiers"]:
        lines += ["", f"{tier} tier per attribute (held out):", attributes_table(evaluation, tier)]
    lines += [
        "",
        "Learning curve (served tier's configuration, held-out split):",
        curve_table(evaluation),
        "",
        "Costs:",
        costs_table(evaluation),
    ]
    if evaluation["not_modelled"]:
        lines.append(
            "not modelled (too few scored texts): "
            + ", ".join(f"{a} ({n})" for a, n in evaluation["not_modelled"].items())
        )
    for tier, model in result.models.items():
        lines.append(f"{tier} tier: model {model.model_id}, stored in {result.paths[tier]}")
    lines.append(
        f"serve it: bsky-assets serve perspective --scorer distilled:{result.model.model_id}"
        + ("  (fast tier: distilled:latest-fast)" if len(result.models) > 1 else "")
    )
    return "\n".join(lines)
