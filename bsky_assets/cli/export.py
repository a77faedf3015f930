"""`bsky-assets export --from D --to D [--dest URL]`: export a range of days from the shell.

Each day is a materialization of `label_exports` in this process (recorded in the project's
Dagster instance, so the UI shows it), with the demo's progress bars. A day whose rows have not
changed since its files were written is left as it is, so re-running a range is cheap.
"""

from __future__ import annotations

import sys
from datetime import date, timedelta

import click

from bsky_assets import settings

DAY = click.DateTime(["%Y-%m-%d"])


def how_to_read(destination_url: str) -> list[str]:
    """Where the export is and one DuckDB line to read it (the demo prints the same)."""
    glob = f"{destination_url}/perspective_labels/*/*.parquet"
    sql = f"select labeler, count(*) from read_parquet('{glob}', hive_partitioning=1) group by 1"
    return [
        f"exports:     {destination_url} (dictionary: {destination_url}/README.md)",
        f'read them:   .venv/bin/python -c "import duckdb; duckdb.sql(\\"{sql}\\").show()"',
    ]


def _days(first: date, last: date) -> list[date]:
    return [first + timedelta(days=i) for i in range((last - first).days + 1)]


def _failure(result) -> str:
    for event in result.all_node_events:
        if event.is_step_failure:
            return event.step_failure_data.error.message.strip().splitlines()[0]
    return "the run failed"


@click.command("export")
@click.option("--from", "first", type=DAY, required=True, help="First day (YYYY-MM-DD).")
@click.option("--to", "last", type=DAY, default=None, help="Last day (default: --from).")
@click.option(
    "--dest",
    default=None,
    help="A folder or s3://… / gs://… URL (default: BSKY_EXPORT_DEST, else "
    "$BSKY_DATA_DIR/exports). Credentials come from the environment only.",
)
@click.option("--force", is_flag=True, help="Rewrite days whose rows have not changed.")
def export(first, last, dest: str | None, force: bool) -> None:
    """Export the label tables and posts_labelled for a range of days as Parquet."""
    import dagster as dg

    from bsky_assets.exports.destination import Destination, DestinationError
    from bsky_assets.lib.labelling.progress import listen
    from bsky_assets.tools.demo import ProgressBars
    from bsky_assets.tools.instance import use_project_dagster_home

    first = first.date()
    last = last.date() if last else first
    if last < first:
        raise click.UsageError("--to is before --from")
    if dest:
        settings.use_export_destination(dest)
    try:
        destination = Destination.configured()
    except DestinationError as error:
        raise click.UsageError(str(error)) from None
    use_project_dagster_home()
    from bsky_assets.definitions import build_definitions

    job = (
        build_definitions()
        .resolve_implicit_global_asset_job_def()
        .get_subset(asset_selection={dg.AssetKey("label_exports")})
    )
    config = {
        "ops": {"label_exports": {"config": {"force": force}}},
        "loggers": {"console": {"config": {"log_level": "WARNING"}}},
    }
    failed = 0
    stop_listening = listen(ProgressBars())
    try:
        with dg.DagsterInstance.get() as instance:
            for day in _days(first, last):
                result = job.execute_in_process(
                    partition_key=day.isoformat(),
                    instance=instance,
                    raise_on_error=False,
                    run_config=config,
                )
                if not result.success:
                    failed += 1
                    click.echo(f"{day}: failed: {_failure(result)}", err=True)
                    continue
                (event,) = result.get_asset_materialization_events()
                metadata = event.step_materialization_data.materialization.metadata
                files = ", ".join(
                    f"{key.removesuffix('_rows')} {value.value:,} rows"
                    for key, value in metadata.items()
                    if key.endswith("_rows") and not key.startswith("dagster/")
                )
                written = metadata["files_written"].value
                click.echo(f"{day}: {files} ({written} file(s) written, the rest unchanged)")
    finally:
        stop_listening()
    for line in how_to_read(destination.url):
        click.echo(line)
    sys.exit(1 if failed else 0)
