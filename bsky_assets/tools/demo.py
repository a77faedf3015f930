"""The README's first command: one sample day through the whole graph, then a summary."""

from __future__ import annotations

import sys
from datetime import date
from typing import Any

import click
import dagster as dg

from bsky_assets import settings
from bsky_assets.cli.export import how_to_read
from bsky_assets.definitions import build_definitions
from bsky_assets.exports.destination import Destination
from bsky_assets.lib.db.client import PostgresClient
from bsky_assets.lib.db.connection import resolve_database_url
from bsky_assets.lib.db.resource import PostgresResource
from bsky_assets.lib.labelling.progress import Progress, listen
from bsky_assets.tools.local_services import labelling_services
from bsky_assets.tools.sample_data import write_sample_day


class ProgressBars:
    """A progress bar per labelling step, fed by the steps' own progress
    (lib/labelling/progress.py): the demo runs every step in this process.

    Not on a terminal (piped, a log file) a bar cannot redraw itself, so each step prints a few
    plain lines instead: when it starts, at each quarter, and when it is done."""

    QUARTERS = 4

    def __init__(self, interactive: bool | None = None) -> None:
        self.interactive = sys.stdout.isatty() if interactive is None else interactive
        self._bars: dict[str, tuple[Any, int]] = {}
        self._quarters: dict[str, int] = {}  # step -> the last quarter printed (plain lines)

    def __call__(self, progress: Progress) -> None:
        if not self.interactive:
            self._plain(progress)
            return
        if progress.step not in self._bars:
            bar = click.progressbar(
                length=max(progress.total, 1),
                label=f"{progress.step:<22}",
                show_pos=True,
                show_eta=True,
            )
            bar.__enter__()
            self._bars[progress.step] = (bar, 0)
        bar, shown = self._bars[progress.step]
        bar.update(progress.done - shown)
        self._bars[progress.step] = (bar, progress.done)
        if progress.finished:
            bar.__exit__(None, None, None)
            del self._bars[progress.step]

    def _plain(self, progress: Progress) -> None:
        total = max(progress.total, 1)
        quarter = self.QUARTERS + 1 if progress.finished else progress.done * 4 // total
        if quarter <= self._quarters.get(progress.step, -1):
            return
        self._quarters[progress.step] = quarter
        share = f" ({progress.done / total:.0%})" if progress.total else ""
        done = ", done" if progress.finished else ""
        click.echo(f"{progress.step:<22} {progress.done:,}/{progress.total:,}{share}{done}")
        if progress.finished:
            self._quarters.pop(progress.step, None)


def run_demo(day: date, posts: int) -> int:
    """Write the sample day (unless already there), materialize it, print what happened."""
    landing = settings.landing_dir()
    if (landing / day.isoformat()).is_dir():
        click.echo(f"landing:     reusing {landing / day.isoformat()}")
    else:
        written = write_sample_day(landing, day, posts)
        click.echo(
            f"landing:     wrote {written.lines} lines in {len(written.files)} batches "
            f"to {landing / day.isoformat()}"
        )
    url = resolve_database_url()
    click.echo(f"database:    {url.render_as_string(hide_password=True)}")
    with labelling_services() as services:
        click.echo(f"perspective: {services.perspective}")
        click.echo(f"llm:         {services.llm}")
        stop_listening = listen(ProgressBars())
        try:
            with dg.DagsterInstance.get() as instance:
                result = (
                    build_definitions()
                    .resolve_job_def("label_posts")
                    .execute_in_process(
                        partition_key=day.isoformat(),
                        instance=instance,
                        raise_on_error=False,
                        run_config={"loggers": {"console": {"config": {"log_level": "WARNING"}}}},
                    )
                )
        finally:
            stop_listening()
    if not result.success:
        click.echo("the run failed; see the errors above", err=True)
        return 1
    print_summary(PostgresResource().get_client(), day)
    return 0


def _rows(client: PostgresClient, sql: str, day: date) -> list[tuple]:
    return client.fetch_all(sql.format(s=client.schema), (day,))


def print_summary(client: PostgresClient, day: date) -> None:
    where = "WHERE partition_date = %s"
    posts = _rows(client, f"SELECT count(*) FROM {{s}}.preprocessed_posts {where}", day)[0][0]
    rejects = _rows(
        client,
        f"SELECT reason, count(*) FROM {{s}}.landing_rejects {where} GROUP BY 1 ORDER BY 1",
        day,
    )
    click.echo(f"\n== {day} ==")
    click.echo(f"posts (deduplicated by uri): {posts}")
    for reason, n in rejects:
        click.echo(f"  landing line rejected, {reason}: {n}")
    producers = {
        "perspective_labels": "labeler || ' ' || labeler_version",
        "sociopolitical_labels": "labeler || ', model ' || llm_model_name",
    }
    for table, producer in producers.items():
        click.echo(f"\n{table}:")
        outcomes = _rows(
            client,
            "SELECT CASE WHEN was_successfully_labeled THEN 'labelled' ELSE 'failed: ' || reason "
            f"END, count(*) FROM {{s}}.{table} {where} GROUP BY 1 ORDER BY 2 DESC",
            day,
        )
        for outcome, n in outcomes:
            click.echo(f"  {outcome}: {n}")
        labelers = _rows(
            client,
            f"SELECT {producer}, count(*) FROM {{s}}.{table} {where} "
            "AND was_successfully_labeled GROUP BY 1",
            day,
        )
        for labeler, n in labelers:
            click.echo(f"  labelled by {labeler}: {n}")
    # prob_toxic, or prob_profanity when the scorer left prob_toxic empty (the offline one).
    column = "prob_toxic"
    if not _rows(client, f"SELECT 1 FROM {{s}}.perspective_labels {where} AND prob_toxic IS "
                 "NOT NULL LIMIT 1", day):  # fmt: skip
        column = "prob_profanity"
    toxic = _rows(
        client,
        f"SELECT width_bucket({column}, 0, 1.0000001, 5) AS b, count(*) FROM "
        f"{{s}}.perspective_labels {where} AND {column} IS NOT NULL GROUP BY 1 ORDER BY 1",
        day,
    )
    click.echo(f"\n{column} distribution:")
    for bucket, n in toxic:
        low = (bucket - 1) / 5
        click.echo(f"  {low:.1f}-{low + 0.2:.1f}: {n}")
    leans = _rows(
        client,
        "SELECT coalesce(political_ideology_label, 'not sociopolitical'), count(*) FROM "
        f"{{s}}.sociopolitical_labels {where} AND was_successfully_labeled GROUP BY 1 "
        "ORDER BY 2 DESC",
        day,
    )
    click.echo("\nsociopolitical posts by lean:")
    for lean, n in leans:
        click.echo(f"  {lean}: {n}")
    where = client.url.set(drivername="postgresql").render_as_string(hide_password=True)
    click.echo(f"\ntables: schema {client.schema!r} in {where}")
    click.echo("query them:  .venv/bin/bsky-assets db psql")
    for line in how_to_read(Destination.configured().url):  # label_exports wrote the day
        click.echo(line)
    click.echo("open the UI: .venv/bin/bsky-assets dev   (then http://127.0.0.1:3000)")
