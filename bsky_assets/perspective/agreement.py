"""perspective_agreement: how the labelers that scored the same posts on a day agree.

The seam across Google's shutdown, measured: for every pair of label sets that scored the same
posts that day (Google's API and the distilled successor, two successor versions, ...), per
column: how many posts both scored, Spearman and Pearson correlation, mean absolute difference,
the AUC of the other labeler's score for the reference labeler's verdict at Perspective's
0.5 threshold, each labeler's share of posts at >= 0.5 (the daily prevalence a research group
reports) and Cohen's kappa between the two verdicts. The reference is Google's set when
present. Computed in SQL (ranks by window functions), so a day of a million posts never passes
through Python.
"""

from datetime import date
from itertools import combinations

import dagster as dg
import polars as pl

from bsky_assets.lib import plots
from bsky_assets.lib.db.client import PostgresClient
from bsky_assets.lib.db.resource import PostgresResource
from bsky_assets.perspective import store
from bsky_assets.perspective.attributes import PROB_COLUMNS
from bsky_assets.perspective.tables import PERSPECTIVE_AGREEMENT, PERSPECTIVE_LABELS

THRESHOLD = 0.5


def agreement_row(
    client: PostgresClient, day: date, reference: str, other: str, column: str
) -> dict:
    """How `other`'s scores of `column` agree with `reference`'s on the day's shared posts."""
    n, spearman, pearson, mae, positives, rank_sum, other_positives, agree = store.agreement_sums(
        client, day, reference, other, column, THRESHOLD
    )
    n, positives = int(n), int(positives)
    negatives = n - positives
    auc = None
    if positives and negatives:
        auc = (float(rank_sum) - positives * (positives + 1) / 2) / (positives * negatives)
    return {
        **agreement_at_threshold(n, positives, int(other_positives), int(agree)),
        "column_name": column,
        "n": n,
        "spearman": None if spearman is None else round(float(spearman), 4),
        "pearson": None if pearson is None else round(float(pearson), 4),
        "mae": None if mae is None else round(float(mae), 4),
        "reference_positives": positives,
        "auc": None if auc is None else round(auc, 4),
    }


def agreement_at_threshold(n: int, positives: int, other_positives: int, agree: int) -> dict:
    """Each labeler's share of posts at >= 0.5 and Cohen's kappa between their verdicts: how a
    daily prevalence series moves when one labeler replaces the other."""
    if not n:
        return {"reference_share": None, "other_share": None, "kappa": None}
    p_reference, p_other = positives / n, other_positives / n
    expected = p_reference * p_other + (1 - p_reference) * (1 - p_other)
    kappa = None if expected >= 1 else (agree / n - expected) / (1 - expected)
    return {
        "reference_share": round(p_reference, 4),
        "other_share": round(p_other, 4),
        "kappa": None if kappa is None else round(kappa, 4),
    }


def agreement_asset(partitions: dg.PartitionsDefinition) -> dg.AssetsDefinition:
    """perspective_agreement over `partitions`."""
    return dg.asset(
        name="perspective_agreement",
        deps=["perspective_labels"],
        partitions_def=partitions,  # a backfill is one run per day, each tagged with its day
        io_manager_key="postgres_io_manager",
        metadata=PERSPECTIVE_AGREEMENT.as_metadata(),
        group_name="labels",
        kinds={"postgres"},
    )(perspective_agreement)


def perspective_agreement(
    context: dg.AssetExecutionContext, postgres: PostgresResource
) -> dg.Output[pl.DataFrame]:
    """Per pair of labelers that scored the same posts this day, per column: n, Spearman,
    Pearson, MAE and AUC at 0.5 against the reference (Google's, when it is one of the two),
    both labelers' share of posts at >= 0.5 and Cohen's kappa between their verdicts there."""
    client = postgres.get_client()
    client.ensure_table(PERSPECTIVE_LABELS)
    day = date.fromisoformat(context.partition_key)
    label_sets = store.scoring_label_sets(client, day)
    rows = []
    for (reference, reference_labeler), (other, other_labeler) in combinations(label_sets, 2):
        for column in PROB_COLUMNS:
            row = agreement_row(client, day, reference, other, column)
            if row["n"]:
                rows.append(
                    {
                        "reference_label_set": reference,
                        "other_label_set": other,
                        "reference_labeler": reference_labeler,
                        "other_labeler": other_labeler,
                        **row,
                    }
                )
    columns = [c for c in PERSPECTIVE_AGREEMENT.column_names if c != "partition_date"]
    frame = pl.DataFrame(rows, schema=PERSPECTIVE_AGREEMENT.polars_schema(columns))
    metadata: dict = {"labelers": [f"{labeler} ({s})" for s, labeler in label_sets]}
    if frame.height:
        spearman = {}
        for (a, b), group in frame.group_by(["reference_labeler", "other_labeler"]):
            spearman[f"{b} vs {a}"] = {
                c: s
                for c, s in group.select("column_name", "spearman").iter_rows()
                if s is not None
            }
        metadata["pairs"] = len(spearman)
        metadata["agreement"] = dg.MetadataValue.md(_markdown(frame))
        metadata["spearman_by_column"] = plots.grouped_bars(
            spearman, f"Agreement between labelers, {day}", "Spearman"
        )
    else:
        metadata["pairs"] = 0
        context.log.info(f"{day}: fewer than two labelers scored the same posts")
    return dg.Output(frame, metadata=metadata)


def _shares(row: dict) -> str:
    if row["reference_share"] is None:
        return "—"
    return f"{row['reference_share']:.1%} → {row['other_share']:.1%}"


def _markdown(frame: pl.DataFrame) -> str:
    lines = [
        "| other vs reference | column | n | Spearman | MAE | AUC at 0.5 | share ≥ 0.5 | κ |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for row in frame.iter_rows(named=True):
        cells = [
            f"{row['other_labeler']} vs {row['reference_labeler']}",
            row["column_name"],
            str(row["n"]),
            *("—" if row[k] is None else f"{row[k]:.3f}" for k in ("spearman", "mae", "auc")),
            _shares(row),
            "—" if row["kappa"] is None else f"{row['kappa']:.2f}",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)
