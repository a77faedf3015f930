"""`bsky-assets eval ...`: hand labels in, an LLM task's labeller scored against them."""

from __future__ import annotations

from pathlib import Path

import click

from bsky_assets import settings


def _tasks() -> dict:
    """The LLM tasks of the project's labellers, by name."""
    from bsky_assets.definitions import LABELLERS
    from bsky_assets.llm.labeller import LLMLabeller

    return {lab.task.name: lab.task for lab in LABELLERS if isinstance(lab, LLMLabeller)}


def _task(name: str):
    tasks = _tasks()
    if name not in tasks:
        raise click.BadParameter(f"{name!r}: the LLM tasks are {', '.join(sorted(tasks))}")
    return tasks[name]


@click.group("eval")
def evaluate() -> None:
    """Evaluate an LLM labeller against hand labels."""


def _print_hand_label_report(report) -> None:
    for reason, n in sorted(report.rejects.items()):
        click.echo(f"  rejected, {reason}: {n}")
    for example in report.examples:
        click.echo(f"    {example}")


@evaluate.command("import-hand-labels")
@click.argument("csv_path", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--task", "task_name", default="sociopolitical", show_default=True)
def eval_import_hand_labels(csv_path: Path, task_name: str) -> None:
    """Import hand labels (columns uri or text, and one per field of the task: for
    sociopolitical is_sociopolitical and political_ideology_label; for intergroup is_intergroup).

    One hand label per post: importing again adds nothing, a corrected file updates what it
    changes. Rows given by uri alone take the text of the landed post. Then materialize
    `<task>_evaluation` (in the UI, or: bsky-assets eval TASK FILE.csv).
    """
    import dagster as dg

    from bsky_assets.evaluation.hand_labels import HandLabelFileError, import_hand_labels
    from bsky_assets.evaluation.tables import hand_labels_table
    from bsky_assets.lib.db.connection import connect
    from bsky_assets.tools.instance import use_project_dagster_home

    task = _task(task_name)
    try:
        report = import_hand_labels(task, connect(), csv_path)
    except HandLabelFileError as error:
        raise click.ClickException(str(error)) from None
    click.echo(
        f"{csv_path.name}: {report.rows_read} rows read; {report.added} added, "
        f"{report.updated} updated, {report.unchanged} already known, "
        f"{sum(report.rejects.values())} rejected"
    )
    _print_hand_label_report(report)
    use_project_dagster_home()
    with dg.DagsterInstance.get() as instance:  # the UI's hand-labels asset shows the import
        instance.report_runless_asset_event(
            dg.AssetMaterialization(
                hand_labels_table(task).name,
                metadata={
                    "source": csv_path.name,
                    "rows_read": report.rows_read,
                    "added": report.added,
                    "updated": report.updated,
                    "rejected": dict(report.rejects),
                },
            )
        )


@evaluate.command("run")
@click.argument("task_name", metavar="TASK")
@click.argument("csv_path", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--store/--no-store", default=True, help="Keep the result in Postgres.")
def eval_run(task_name: str, csv_path: Path, store: bool) -> None:
    """Score a CSV of hand labels through the configured LLM labeler of TASK (the asset's code).

    Uses the same configuration as the asset: OPENAI_API_KEY, OPENAI_BASE_URL, BSKY_LLM_MODEL.
    """
    _evaluate_file(_task(task_name), csv_path, store)


@evaluate.command("sociopolitical")
@click.argument("csv_path", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--store/--no-store", default=True, help="Keep the result in Postgres.")
def eval_sociopolitical(csv_path: Path, store: bool) -> None:
    """`eval run sociopolitical FILE.csv` (kept: the README and scripts use it)."""
    _evaluate_file(_task("sociopolitical"), csv_path, store)


def _evaluate_file(task, csv_path: Path, store: bool) -> None:
    import dagster as dg

    from bsky_assets.evaluation import metrics
    from bsky_assets.evaluation.hand_labels import HandLabelFileError, read_hand_labels
    from bsky_assets.evaluation.tables import evaluations_table
    from bsky_assets.lib.db.connection import connect
    from bsky_assets.llm.labeller import label_set_of
    from bsky_assets.llm.resource import LLMResource

    try:
        client = LLMResource().get_client(task)
    except dg.Failure as failure:
        raise click.ClickException(failure.description or str(failure)) from None
    db = connect()
    try:
        labels, report = read_hand_labels(task, csv_path, db)
    except HandLabelFileError as error:
        raise click.ClickException(str(error)) from None
    if report.rejects:
        click.echo(f"{sum(report.rejects.values())} rows rejected:")
        _print_hand_label_report(report)
    if not labels:
        raise click.ClickException(f"{csv_path}: no usable hand labels")
    result = metrics.evaluate(client, labels)
    click.echo(result.report())
    if store:
        label_set = label_set_of(task, client)
        metrics.store(db, result, str(csv_path), label_set.id, labels)
        click.echo(f"\nstored in {settings.db_schema()}.{evaluations_table(task).name}")
