"""perspective_successor: a model distilled from every text Google's API scored for this group.

Not partitioned: it learns from the whole history (imported files and every day Google labelled),
so it sits downstream of perspective_labels in lineage and is materialized on demand (the UI's
Materialize button, or `bsky-assets perspective distill`, which runs the same code).
"""

import dagster as dg

from bsky_assets.lib import plots
from bsky_assets.resources.postgres import PostgresResource


class DistillConfig(dg.Config):
    min_examples: int = 50
    test_share: float = 0.2
    seed: int = 0


@dg.asset(
    deps=["perspective_labels"],
    output_required=False,  # no model without enough history: the step says so, nothing stored
    group_name="successor",
    kinds={"scikitlearn", "postgres"},
    description="A Perspective successor distilled from Google-scored history: one model per "
    "attribute, evaluated on a held-out split, stored under BSKY_DATA_DIR/models. Serve it with "
    "`bsky-assets serve perspective --scorer distilled:latest` (Google's API ends 2026-12-31).",
)
def perspective_successor(
    context: dg.AssetExecutionContext, config: DistillConfig, postgres: PostgresResource
):
    # Imported here: scikit-learn and scipy cost every other step's process ~80 MB and a second.
    from bsky_assets.successor.distill import NotEnoughHistory, distill
    from bsky_assets.successor.model import DistillParams
    from bsky_assets.successor.report import markdown_table

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
    context.log.info(
        f"model {result.model.model_id}: {len(result.model.attributes)} attributes, mean AUC "
        f"{evaluation['mean_auc']}, mean Spearman {evaluation['mean_spearman']}"
    )
    curves = {a: m["calibration"] for a, m in evaluation["attributes"].items()}
    yield dg.MaterializeResult(
        metadata={
            "model_id": result.model.model_id,
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
            "evaluation": dg.MetadataValue.md(markdown_table(evaluation)),
            "calibration": plots.calibration(curves, "Calibration on the held-out split"),
        }
    )
