"""`bsky-assets perspective ...`: import Google-scored history, distil a successor from it."""

from __future__ import annotations

from pathlib import Path

import click


@click.group()
def perspective() -> None:
    """The Perspective successor: import Google-scored history, distil a model from it."""


@perspective.command("import-history")
@click.argument("path", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--text-column", default="text", show_default=True)
@click.option(
    "--column",
    "columns",
    multiple=True,
    metavar="COLUMN=ATTRIBUTE",
    help="Map a score column explicitly, e.g. prob_constructive=CONSTRUCTIVE_EXPERIMENTAL "
    "(repeatable). prob_* columns of the 22-column set are mapped by default, except the "
    "ambiguous prob_constructive.",
)
@click.option("--time-column", default=None, help="When each text was scored (default: guess).")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON, last.")
def perspective_import_history(
    path: Path, text_column: str, columns: tuple[str, ...], time_column: str | None, as_json: bool
) -> None:
    """Import a CSV or Parquet file of texts scored by Google's Perspective API."""
    import json

    from bsky_assets.lib.db.resource import PostgresResource
    from bsky_assets.successor.history import HistoryFileError, import_history, parse_column_map

    try:
        report = import_history(
            PostgresResource().get_client(),
            path,
            text_column=text_column,
            column_map=parse_column_map(list(columns)),
            time_column=time_column,
        )
    except HistoryFileError as error:
        raise click.ClickException(str(error)) from None
    for warning in report.warnings:
        click.echo(f"warning: {warning}", err=True)
    click.echo(
        f"{path.name}: {report.rows_read} rows read, {report.rows_imported} imported, "
        f"{sum(report.rejects.values())} rejected; {report.duplicate_texts_merged} duplicate "
        f"texts merged ({report.conflicting_scores} conflicting scores, the first kept); "
        f"{report.scores_added} scores added, {report.scores_already_known} already known"
        + (" (this file was imported before)" if report.already_imported else "")
    )
    for reason, n in sorted(report.rejects.items()):
        click.echo(f"  rejected, {reason}: {n}")
    click.echo("  columns: " + ", ".join(f"{c} → {a}" for c, a in report.column_map.items()))
    if report.ignored_columns:
        click.echo("  ignored: " + ", ".join(report.ignored_columns))
    if as_json:
        click.echo(json.dumps(report.as_dict()))


@perspective.command("distill")
@click.option("--min-examples", type=int, default=50, show_default=True)
@click.option("--test-share", type=float, default=0.2, show_default=True)
@click.option(
    "--split",
    "split_by",
    type=click.Choice(["auto", "time", "hash"]),
    default="auto",
    show_default=True,
    help="The held-out test set: the newest share (time), a seeded hash of each text (hash), "
    "or time when the history is dated (auto).",
)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print model ids and metrics as JSON, last.")
def perspective_distill(
    min_examples: int, test_share: float, split_by: str, seed: int, as_json: bool
) -> None:
    """Choose and train a Perspective successor (fast and, with the embeddings extra, full
    tier) on every Google-scored text by cross-validation, evaluate it, store it."""
    import json

    from bsky_assets.lib.db.resource import PostgresResource
    from bsky_assets.successor.distill import NotEnoughHistory, distill
    from bsky_assets.successor.model import DistillParams
    from bsky_assets.successor.report import text_report

    params = DistillParams(
        min_examples=min_examples, test_share=test_share, split=split_by, seed=seed
    )
    try:
        result = distill(PostgresResource().get_client(), params)
    except NotEnoughHistory as error:
        raise click.ClickException(str(error)) from None
    click.echo(text_report(result))
    if as_json:
        click.echo(json.dumps(result.summary()))
