"""perspective_successor: a model distilled from every text Google's API scored for this group.

Not partitioned: it learns from the whole history (imported files and every day Google labelled),
so it sits downstream of perspective_labels in lineage and is materialized on demand (the UI's
Materialize button, or `bsky-assets perspective distill`, which runs the same code).
"""

import dagster as dg

from bsky_assets.lib import plots
from bsky_assets.lib.db.resource import PostgresResource
from bsky_assets.lib.runs import launched_for_days


class DistillConfig(dg.Config):
    min_examples: int = 50
    test_share: float = 0.2
    seed: int = 0


@dg.asset(
    deps=["perspective_labels"],
    output_required=False,  # no model without enough history: the step says so, nothing stored
    group_name="successor",
    kinds={"scikitlearn", "postgres"},
    description="A Perspective successor distilled from Google-scored history: per attribute the "
    "configuration the history's own cross-validation chose (the TF-IDF baseline among the "
    "candidates), a fast tier (n-grams) and a full tier (with sentence embeddings, when the "
    "extra is installed), calibrated so shares at 0.5 follow Google's; evaluated on a held-out "
    "split, stored under BSKY_DATA_DIR/models. Serve it with "
    "`bsky-assets serve perspective --scorer distilled:latest` (Google's API ends 2026-12-31).",
)
def perspective_successor(
    context: dg.AssetExecutionContext, config: DistillConfig, postgres: PostgresResource
):
    days = launched_for_days(context)
    if days:
        context.log.info(
            f"perspective_successor is not per day: this run was launched for {days}, so it "
            "trains nothing (materialize it on its own, from its asset page, or run "
            "`bsky-assets perspective distill`)"
        )
        return
    # Imported here: scikit-learn and scipy cost every other step's process ~80 MB and a second.
    from bsky_assets.successor.distill import NotEnoughHistory, distill
    from bsky_assets.successor.model import DistillParams
    from bsky_assets.successor.report import (
        attributes_table,
        choice_table,
        costs_table,
        curve_table,
        tiers_table,
    )

    params = DistillParams(
        min_examples=config.min_examples, test_share=config.test_share, seed=config.seed
    )
    try:
        result = distill(postgres.get_client(), params)
    except NotEnoughHistory as error:
        # Not a failure of the run that happened to include this asset (a `*` selection):
        # no model is stored, and the log says why and what to do.
        context.log.warning(f"no successor trained: {error}")
        return
    evaluation = result.evaluation
    ids = {tier: model.model_id for tier, model in result.models.items()}
    context.log.info(
        f"models {ids}: {len(result.model.attributes)} attributes, served tier "
        f"{result.served_tier}: mean AUC {evaluation['mean_auc']}, mean Spearman "
        f"{evaluation['mean_spearman']}, worst share gap at 0.5 {evaluation['max_share_gap']} pp"
    )
    curves = {a: m["calibration"] for a, m in evaluation["attributes"].items()}
    yield dg.MaterializeResult(
        metadata={
            "model_id": result.model.model_id,
            "tier": result.served_tier,
            "model_ids": ids,
            "path": dg.MetadataValue.path(str(result.path)),
            "serve_with": f"--scorer distilled:{result.model.model_id}",
            "labeler": f"bsky-perspective-server/distilled-{result.model.model_id} (model)",
            "attributes_modelled": len(result.model.attributes),
            "not_modelled": evaluation["not_modelled"],
            "history_texts": evaluation["texts"],
            "split": result.split,
            "mean_auc": evaluation["mean_auc"],
            "min_auc": evaluation["min_auc"],
            "mean_spearman": evaluation["mean_spearman"],
            "mean_share_gap_pp": evaluation["mean_share_gap"],
            "max_share_gap_pp": evaluation["max_share_gap"],
            # the same gap for Google itself, training part against test part: the floor
            # sampling and drift set under the successor's
            "google_own_mean_gap_pp": evaluation["mean_google_own_gap"],
            "google_own_max_gap_pp": evaluation["max_google_own_gap"],
            "mean_kappa": evaluation["mean_kappa"],
            "tiers": dg.MetadataValue.md(tiers_table(evaluation)),
            "learning_curve": dg.MetadataValue.md(curve_table(evaluation)),
            "costs": dg.MetadataValue.md(costs_table(evaluation)),
            "evaluation": dg.MetadataValue.md(attributes_table(evaluation)),
            "chosen": dg.MetadataValue.md(choice_table(evaluation)),
            "cross_validation": dg.MetadataValue.json(evaluation["cross_validation"]),
            "calibration": plots.calibration(curves, "Calibration on the held-out split"),
        }
    )
