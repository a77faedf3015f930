"""`bsky-assets`: the project's command line."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import click

from bsky_assets import settings
from bsky_assets.cli.evaluate import evaluate
from bsky_assets.cli.export import export
from bsky_assets.cli.perspective import perspective
from bsky_assets.cli.serve import serve
from bsky_assets.tools.instance import use_project_dagster_home

DAY = click.DateTime(["%Y-%m-%d"])


def yesterday() -> str:
    """The demo's and sample's default day: recent, so the UI's partition pickers (which open on
    the last days) show it, and inside the default partitions."""
    return (datetime.now(UTC).date() - timedelta(days=1)).isoformat()


@click.group()
def main() -> None:
    """Label Bluesky posts with Perspective and an LLM, orchestrated by Dagster."""
    # Everything the project creates (data dir, landing files, DAGSTER_HOME, models, and what
    # `dagster dev` started from here writes) is readable by this user only.
    os.umask(0o077)


@main.command()
@click.option(
    "--day", type=click.DateTime(["%Y-%m-%d"]), default=yesterday, show_default="yesterday (UTC)"
)
@click.option("--posts", type=int, default=2_000, show_default=True)
def demo(day, posts: int) -> None:
    """Write a sample day into the landing folder and materialize the whole graph for it."""
    quiet_library_warnings()
    from bsky_assets.tools.demo import run_demo

    use_project_dagster_home()
    sys.exit(run_demo(day.date(), posts))


def quiet_library_warnings() -> None:
    """The demo's output is the project's: Dagster's notices that an API the project uses is
    beta or preview are for its developers (the suite shows them), not for the researcher."""
    import warnings

    import dagster as dg

    for category in (dg.BetaWarning, dg.PreviewWarning):
        warnings.filterwarnings("ignore", category=category)


def _port(ctx: click.Context, name: str, port: int) -> int:
    """`port` if it is free; a busy default gives way to a free port, a busy port the user chose
    is a one-line error naming the flag."""
    from bsky_assets.servers.http import free_port, port_is_free

    if port_is_free(port):
        return port
    flag = "--" + name.replace("_", "-")
    if ctx.get_parameter_source(name) is not click.core.ParameterSource.DEFAULT:
        raise click.UsageError(f"port {port} is already in use; choose another with {flag}")
    chosen = free_port()
    click.echo(f"port {port} is in use: the local server takes {chosen} ({flag} to choose)")
    return chosen


@main.command(context_settings={"ignore_unknown_options": True})
@click.option("--perspective-port", type=int, default=8081, show_default=True)
@click.option("--llm-port", type=int, default=8082, show_default=True)
@click.argument("dagster_args", nargs=-1, type=click.UNPROCESSED)
@click.pass_context
def dev(
    ctx: click.Context, perspective_port: int, llm_port: int, dagster_args: tuple[str, ...]
) -> None:
    """`dagster dev` with the project-local DAGSTER_HOME, and local API servers when no real
    services are configured (extra args are passed to dagster dev). A busy default port gives
    way to a free one."""
    from bsky_assets.tools.local_services import labelling_services

    if not settings.perspective_configured():
        perspective_port = _port(ctx, "perspective_port", perspective_port)
    if not settings.llm_configured():
        llm_port = _port(ctx, "llm_port", llm_port)
    home = use_project_dagster_home()
    click.echo(f"DAGSTER_HOME={home}")
    dagster = os.path.join(os.path.dirname(sys.executable), "dagster")
    with labelling_services(perspective_port, llm_port) as services:
        click.echo(f"perspective: {services.perspective}")
        click.echo(f"llm:         {services.llm}")
        with contextlib.suppress(KeyboardInterrupt):
            sys.exit(subprocess.call([dagster, "dev", *dagster_args]))


@main.command(
    "dagster",
    context_settings={
        "ignore_unknown_options": True,
        "allow_interspersed_args": False,
        "help_option_names": [],  # `bsky-assets dagster --help` is dagster's own help
    },
)
@click.argument("dagster_args", nargs=-1, type=click.UNPROCESSED)
def dagster_command(dagster_args: tuple[str, ...]) -> None:
    """Any `dagster` command against the project's instance: DAGSTER_HOME is the project-local
    one (unless you set it), as for `dev`, so the UI shows what the command did. E.g.
    `bsky-assets dagster asset materialize -m bsky_assets.definitions --select X --partition D`."""
    home = use_project_dagster_home()
    click.echo(f"DAGSTER_HOME={home}", err=True)
    executable = os.path.join(os.path.dirname(sys.executable), "dagster")
    os.execv(executable, [executable, *dagster_args])


@main.command()
@click.option(
    "--day", type=click.DateTime(["%Y-%m-%d"]), default=yesterday, show_default="yesterday (UTC)"
)
@click.option("--posts", type=int, default=2_000, show_default=True)
@click.option("--batch-size", type=int, default=500, show_default=True)
@click.option("--gzip/--no-gzip", "gzip_batches", default=False)
@click.option("--malformed/--no-malformed", default=True, help="Add a few unusable lines.")
def sample(day, posts: int, batch_size: int, gzip_batches: bool, malformed: bool) -> None:
    """Write a synthetic day of preprocessed batches into the landing folder."""
    from bsky_assets.tools.sample_data import write_sample_day

    written = write_sample_day(
        settings.landing_dir(),
        day.date(),
        posts,
        batch_size,
        malformed=malformed,
        gzip_batches=gzip_batches,
    )
    click.echo(
        f"wrote {written.lines} lines in {len(written.files)} batches to "
        f"{settings.landing_dir() / written.day.isoformat()}"
    )


main.add_command(serve)
main.add_command(perspective)


main.add_command(evaluate)
main.add_command(export)


@main.command()
@click.option("--posts", type=int, default=5_000, show_default=True, help="Posts in the day.")
@click.option("--quota-rps", type=float, default=100.0, show_default=True)
@click.option("--llm-rpm", type=int, default=1_200, show_default=True)
@click.option("--llm-latency-ms", type=float, default=500.0, show_default=True)
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    default=Path("docs/benchmark.md"),
    show_default=True,
)
@click.option("--json", "as_json", is_flag=True, help="Also print the figures as JSON, last.")
@click.option(
    "--ingest-only", is_flag=True, help="Only the ingest steps' time and memory (P3 at 1M posts)."
)
@click.option(
    "--distill-posts",
    type=int,
    default=100_000,
    show_default=True,
    help="History size for the successor's training figures (P6) and scoring (P7).",
)
@click.option(
    "--distill-full-posts",
    type=int,
    default=2_000,
    show_default=True,
    help="History size for the full tier's P6/P7 (sentence encoder; 0 skips it).",
)
@click.option(
    "--successor-labeller",
    is_flag=True,
    help="Label the main day with a fast-tier successor scored in the step "
    "(BSKY_PERSPECTIVE_TRANSPORT=in-process:...), not the synthetic scorer behind the server.",
)
@click.option(
    "--label-slots",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="Label steps at once on the main day: 1 measures each stage alone; the cores (2 here) "
    "run them side by side as the job's multiprocess executor does, for the day's wall time.",
)
def bench(
    posts: int,
    quota_rps: float,
    llm_rpm: int,
    llm_latency_ms: float,
    out: Path,
    as_json: bool,
    ingest_only: bool,
    distill_posts: int,
    distill_full_posts: int,
    successor_labeller: bool,
    label_slots: int,
) -> None:
    """Measure throughput, quota use and memory for a synthetic day, beside the seed's method."""
    import json

    from bsky_assets.tools.bench.config import BenchConfig
    from bsky_assets.tools.bench.run import run

    config = BenchConfig(
        posts=posts,
        quota_rps=quota_rps,
        llm_rpm=llm_rpm,
        llm_latency_ms=llm_latency_ms,
        ingest_only=ingest_only,
        distill_posts=distill_posts,
        distill_full_posts=distill_full_posts,
        successor_labeller=successor_labeller,
        label_slots=label_slots,
    )
    results = run(config, out)
    click.echo(results.pop("report"))
    click.echo(f"written to {out}")
    if as_json:
        click.echo(json.dumps(results, default=str))


@main.group()
def db() -> None:
    """The database holding the labels."""


@db.command("url")
@click.option(
    "--show-password", is_flag=True, help="Include the password (it is hidden by default)."
)
def db_url(show_password: bool) -> None:
    """Print the connection URL of the database in use (starting the embedded one if needed)."""
    from bsky_assets.lib.db.connection import resolve_database_url

    url = resolve_database_url().set(drivername="postgresql")
    click.echo(url.render_as_string(hide_password=not show_password))


@db.command("stop")
def db_stop() -> None:
    """Stop the embedded Postgres of this data dir (it keeps running between commands, since
    Dagster starts a process per run; the next command that needs it starts it again)."""
    from bsky_assets.lib.db.embedded import stop_embedded_server

    if settings.database_url():
        click.echo("DATABASE_URL is set: that database is not touched, only an embedded one")
    pgdata = settings.embedded_pgdata()
    if not (pgdata / "postmaster.pid").exists():
        click.echo(f"the embedded Postgres in {pgdata} is not running")
        return
    stop_embedded_server(pgdata)
    if (pgdata / "postmaster.pid").exists():
        raise click.ClickException(f"pg_ctl could not stop the embedded Postgres in {pgdata}")
    click.echo(f"stopped the embedded Postgres in {pgdata}")


@db.command("psql", context_settings={"ignore_unknown_options": True})
@click.argument("psql_args", nargs=-1, type=click.UNPROCESSED)
def db_psql(psql_args: tuple[str, ...]) -> None:
    """Open psql on the database in use, with search_path set to the project's schema."""
    from bsky_assets.lib.db.connection import resolve_database_url
    from bsky_assets.lib.db.embedded import psql_executable, psql_invocation

    psql = psql_executable()
    if psql is None:
        raise click.ClickException("no psql found; install postgresql-client")
    argv, env = psql_invocation(psql, resolve_database_url(), settings.db_schema(), psql_args)
    sys.exit(subprocess.call(argv, env=env))


if __name__ == "__main__":
    main()
