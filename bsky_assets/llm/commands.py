"""`bsky-assets eval ...`: hand labels in, labelers scored against them."""

from __future__ import annotations

from pathlib import Path

import click

from bsky_assets import settings


@click.group("eval")
def evaluate() -> None:
    """Evaluate a labeller against hand labels."""


def _print_hand_label_report(report) -> None:
    for reason, n in sorted(report.rejects.items()):
        click.echo(f"  rejected, {reason}: {n}")
    for example in report.examples:
        click.echo(f"    {example}")


@evaluate.command("import-hand-labels")
@click.argument("csv_path", type=click.Path(exists=True, dir_okay=False, path_type=Path))
def eval_import_hand_labels(csv_path: Path) -> None:
    """Import hand labels (columns uri or text, is_sociopolitical, political_ideology_label).

    One hand label per post: importing again adds nothing, a corrected file updates what it
    changes. Rows given by uri alone take the text of the landed post. Then materialize
    sociopolitical_evaluation (in the UI, or: bsky-assets eval sociopolitical).
    """
    import dagster as dg

    from bsky_assets.llm.hand_labels import HandLabelFileError, import_hand_labels
    from bsky_assets.resources.postgres import PostgresResource

    try:
        report = import_hand_labels(PostgresResource().get_client(), csv_path)
    except HandLabelFileError as error:
        raise click.ClickException(str(error)) from None
    click.echo(
        f"{csv_path.name}: {report.rows_read} rows read; {report.added} added, "
        f"{report.updated} updated, {report.unchanged} already known, "
        f"{sum(report.rejects.values())} rejected"
    )
    _print_hand_label_report(report)
    from bsky_assets.instance import use_project_dagster_home

    use_project_dagster_home()
    with dg.DagsterInstance.get() as instance:  # the UI's hand_labels asset shows the import
        instance.report_runless_asset_event(
            dg.AssetMaterialization(
                "hand_labels",
                metadata={
                    "source": csv_path.name,
                    "rows_read": report.rows_read,
                    "added": report.added,
                    "updated": report.updated,
                    "rejected": dict(report.rejects),
                },
            )
        )


@evaluate.command("sociopolitical")
@click.argument("csv_path", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--store/--no-store", default=True, help="Keep the result in Postgres.")
def eval_sociopolitical(csv_path: Path, store: bool) -> None:
    """Score a CSV of hand labels through the configured LLM labeler (the asset's code).

    Uses the same configuration as the asset: OPENAI_API_KEY, OPENAI_BASE_URL, BSKY_LLM_MODEL.
    """
    import dagster as dg

    from bsky_assets.llm import evaluation
    from bsky_assets.llm.hand_labels import HandLabelFileError, read_hand_labels
    from bsky_assets.llm.labeller import label_set_for
    from bsky_assets.llm.resource import LLMResource
    from bsky_assets.resources.postgres import PostgresResource
    from bsky_assets.sociopolitical.task import SOCIOPOLITICAL

    resource = LLMResource()
    try:
        client = resource.get_client(SOCIOPOLITICAL)
    except dg.Failure as failure:
        raise click.ClickException(failure.description or str(failure)) from None
    db = PostgresResource().get_client()
    try:
        labels, report = read_hand_labels(csv_path, db)
    except HandLabelFileError as error:
        raise click.ClickException(str(error)) from None
    if report.rejects:
        click.echo(f"{sum(report.rejects.values())} rows rejected:")
        _print_hand_label_report(report)
    if not labels:
        raise click.ClickException(f"{csv_path}: no usable hand labels")
    result = evaluation.evaluate(client, labels)
    click.echo(result.report())
    if store:
        label_set = label_set_for(SOCIOPOLITICAL, client.labeler, client.settings)
        evaluation.store(db, result, str(csv_path), label_set.id, labels)
        click.echo(f"\nstored in {settings.db_schema()}.sociopolitical_evaluations")
