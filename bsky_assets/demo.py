"""The README's first command: one sample day through the whole graph, then a summary."""

from __future__ import annotations

from datetime import date

import click
import dagster as dg

from bsky_assets import settings
from bsky_assets.db.embedded import to_libpq_url
from bsky_assets.resources.postgres import PostgresResource, resolve_database_url
from bsky_assets.sample_data import write_sample_day


def run_demo(day: date, posts: int) -> int:
    """Write the sample day (unless already there), materialize it, print what happened."""
    from bsky_assets.definitions import defs

    landing = settings.landing_dir()
    if (landing / day.isoformat()).is_dir():
        click.echo(f"landing: reusing {landing / day.isoformat()}")
    else:
        written = write_sample_day(landing, day, posts)
        click.echo(
            f"landing: wrote {written.lines} lines in {len(written.files)} batches "
            f"to {landing / day.isoformat()}"
        )
    url = resolve_database_url()
    click.echo(f"database: {url.render_as_string(hide_password=True)}")
    with dg.DagsterInstance.get() as instance:
        result = defs.resolve_job_def("label_posts").execute_in_process(
            partition_key=day.isoformat(),
            instance=instance,
            raise_on_error=False,
            run_config={"loggers": {"console": {"config": {"log_level": "INFO"}}}},
        )
    if not result.success:
        click.echo("the run failed; see the errors above", err=True)
        return 1
    print_summary(day)
    return 0


def print_summary(day: date) -> None:
    client = PostgresResource().get_client()
    schema = client.schema

    def scalar(sql: str) -> int:
        return int(client.fetch_all(sql, (day,))[0][0])

    posts = scalar(f"SELECT count(*) FROM {schema}.preprocessed_posts WHERE partition_date = %s")
    valid = scalar(
        f"SELECT count(*) FROM {schema}.valid_posts WHERE partition_date = %s AND is_valid"
    )
    rejects = client.fetch_all(
        f"SELECT reason, count(*) FROM {schema}.landing_rejects WHERE partition_date = %s "
        "GROUP BY reason ORDER BY reason",
        (day,),
    )
    invalid = client.fetch_all(
        f"SELECT invalid_reason, count(*) FROM {schema}.valid_posts WHERE partition_date = %s "
        "AND NOT is_valid GROUP BY invalid_reason ORDER BY invalid_reason",
        (day,),
    )
    click.echo(f"\n== {day}: summary ==")
    click.echo(f"posts (deduplicated): {posts}")
    click.echo(f"valid for labelling:  {valid}")
    for reason, n in invalid:
        click.echo(f"  invalid, {reason}: {n}")
    for reason, n in rejects:
        click.echo(f"  landing line rejected, {reason}: {n}")
    click.echo(f"\ntables: schema {schema!r} in {to_libpq_url(client.url)}")
    click.echo("query them: bsky-assets db psql")
    click.echo("open the UI: bsky-assets dev   (then http://127.0.0.1:3000)")
