"""The checks perspective_labels adds to every label asset's own (see lib/labelling/checks.py)."""

from __future__ import annotations

from datetime import date

import dagster as dg

from bsky_assets.lib.db.client import PostgresClient
from bsky_assets.lib.labelling.labeller import CheckSpec
from bsky_assets.perspective import store

CHECK_SPECS = (
    CheckSpec(
        "probabilities_in_unit_interval",
        "Every prob_* score of every label set of the day is within [0, 1].",
    ),
    CheckSpec(
        "every_column_scored",
        "Warns when the step's labeler left prob_* columns empty on every row it scored, "
        "naming the labeler: an emulating scorer may fill only some attributes.",
    ),
)


def probabilities_in_unit_interval(client: PostgresClient, day: date) -> dg.AssetCheckResult:
    bad = store.rows_out_of_unit_interval(client, day)
    return dg.AssetCheckResult(
        check_name="probabilities_in_unit_interval",
        passed=bad == 0,
        metadata={"day": str(day), "rows_out_of_range": bad},
    )


def every_column_scored(
    label_set: str, day: date, coverage: dict[str, dict[str, int]], scorer: str
) -> dg.AssetCheckResult:
    empty = [column for column, counts in coverage.items() if counts["scored"] == 0]
    return dg.AssetCheckResult(
        check_name="every_column_scored",
        passed=not empty,
        severity=dg.AssetCheckSeverity.WARN,
        description=f"{len(empty)} of {len(coverage)} prob_* columns empty: {scorer} "
        "does not score them"
        if empty
        else f"every prob_* column scored by {scorer}",
        metadata={
            "day": str(day),
            "labeler": scorer,
            "label_set": label_set,
            "empty_columns": ", ".join(empty) or "none",
            "columns_scored": len(coverage) - len(empty),
            "columns": len(coverage),
        },
    )
