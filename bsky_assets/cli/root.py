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


def _refuse_key_in_argv(ctx: click.Context, _param: click.Parameter, value: object) -> None:
    if value:
        raise click.UsageError(
            "--api-key would show the key to every user of this machine (ps, /proc). Set "
            "BSKY_SERVER_API_KEY in the environment, or pass --api-key-file PATH (a file only "
            "you can read, one key per line).",
            ctx,
        )


def _server_key_options(client_variable: str):
    """--api-key-file, and a hidden --api-key that refuses to take a key from argv."""

    def decorate(command):
        command = click.option(
            "--api-key-file",
            type=click.Path(exists=True, dir_okay=False, path_type=Path),
            default=None,
            help="Accept only the key(s) in this file (one per line; chmod 600), or set "
            f"BSKY_SERVER_API_KEY. Clients send it as {client_variable}. Guards every request "
            "but discovery and health, /stats included. Use one on a shared host.",
        )(command)
        return click.option(
            "--api-key", hidden=True, expose_value=False, callback=_refuse_key_in_argv
        )(command)

    return decorate


def _server_keys(key_file: Path | None) -> tuple[str, ...]:
    """The keys a local server accepts: BSKY_SERVER_API_KEY and/or the lines of `key_file`,
    which must be readable by its owner alone."""
    keys = [key] if (key := settings.server_api_key()) else []
    if key_file is not None:
        if key_file.stat().st_mode & 0o077:
            raise click.UsageError(f"{key_file} can be read by other users: chmod 600 {key_file}")
        keys += [line.strip() for line in key_file.read_text().splitlines() if line.strip()]
    return tuple(keys)


@main.group()
def serve() -> None:
    """Run a local API server (the test double, offline demo, and post-shutdown labeler)."""


@serve.command("perspective")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", type=int, default=8081, show_default=True)
@click.option(
    "--scorer",
    default=None,
    help="distilled:MODEL (a model id, latest, or a folder) | profanity-check | synthetic | "
    "package.module:ScorerClass. Default: distilled:latest when a model exists, else "
    "profanity-check.",
)
@click.option("--quota-per-minute", type=int, default=None, help="Parts per minute, then 429s.")
@click.option("--latency-ms", type=float, default=0.0, show_default=True)
@click.option("--fault-429", type=float, default=0.0, help="Share of parts answering 429.")
@click.option("--fault-5xx", type=float, default=0.0, help="Share of parts answering 503.")
@click.option("--drop-connections", type=float, default=0.0, help="Share of requests dropped.")
@_server_key_options("PERSPECTIVE_SERVER_API_KEY")
@click.option("--verbose", is_flag=True, help="Log every request.")
def serve_perspective(
    host: str,
    port: int,
    scorer: str,
    quota_per_minute: int | None,
    latency_ms: float,
    fault_429: float,
    fault_5xx: float,
    drop_connections: float,
    api_key_file: Path | None,
    verbose: bool,
) -> None:
    """A Perspective-compatible server (discovery doc, comments:analyze, /batch)."""
    from bsky_assets.servers.perspective.server import PerspectiveServer, ServerOptions
    from bsky_assets.tools.local_services import default_scorer

    api_keys = _server_keys(api_key_file)
    options = ServerOptions(
        scorer=scorer or default_scorer(),
        quota_per_minute=quota_per_minute,
        latency_ms=latency_ms,
        fault_429_share=fault_429,
        fault_5xx_share=fault_5xx,
        drop_connection_share=drop_connections,
        require_key=bool(api_keys),
        api_keys=api_keys,
    )
    server = PerspectiveServer(options, host, port, verbose=verbose)
    click.echo(
        f"Perspective-compatible server on {server.url} "
        f"(labeler: {server.service.scorer.labeler} {server.service.scorer.version})"
    )
    click.echo(f"use it with: PERSPECTIVE_URL={server.url}")
    with contextlib.suppress(KeyboardInterrupt):
        server.serve_forever()


@serve.command("openai")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", type=int, default=8082, show_default=True)
@click.option("--latency-ms", type=float, default=0.0, show_default=True)
@click.option("--requests-per-minute", type=int, default=None, help="Then 429 + retry-after.")
@click.option("--fault-5xx", type=float, default=0.0)
@click.option("--fault-malformed-json", type=float, default=0.0)
@click.option("--fault-missing-id", type=float, default=0.0)
@click.option("--fault-extra-id", type=float, default=0.0)
@click.option("--fault-truncation", type=float, default=0.0)
@click.option(
    "--batch-delay", type=float, default=2.0, show_default=True, help="Seconds a batch takes."
)
@click.option("--batch-line-failures", type=float, default=0.0, help="Share of lines failing.")
@click.option("--batch-expire", is_flag=True, help="Batches expire with half their lines done.")
@_server_key_options("OPENAI_API_KEY")
@click.option("--verbose", is_flag=True)
def serve_openai(
    host: str,
    port: int,
    latency_ms: float,
    requests_per_minute: int | None,
    fault_5xx: float,
    fault_malformed_json: float,
    fault_missing_id: float,
    fault_extra_id: float,
    fault_truncation: float,
    batch_delay: float,
    batch_line_failures: float,
    batch_expire: bool,
    api_key_file: Path | None,
    verbose: bool,
) -> None:
    """An OpenAI-compatible server answering from a documented keyword heuristic
    (chat completions, and the Files and Batch APIs)."""
    from bsky_assets.servers.llm.answers import MODEL_NAME
    from bsky_assets.servers.llm.batches import BatchOptions
    from bsky_assets.servers.llm.server import LLMServer, LLMServerOptions

    options = LLMServerOptions(
        latency_ms=latency_ms,
        requests_per_minute=requests_per_minute,
        fault_5xx_share=fault_5xx,
        fault_malformed_json_share=fault_malformed_json,
        fault_missing_id_share=fault_missing_id,
        fault_extra_id_share=fault_extra_id,
        fault_truncation_share=fault_truncation,
        api_keys=_server_keys(api_key_file),
        batches=BatchOptions(
            completion_delay_seconds=batch_delay,
            line_failure_share=batch_line_failures,
            expire=batch_expire,
        ),
    )
    server = LLMServer(options, host, port, verbose=verbose)
    click.echo(f"OpenAI-compatible server on {server.url} (model: {MODEL_NAME})")
    click.echo(f"use it with: OPENAI_BASE_URL={server.url}")
    with contextlib.suppress(KeyboardInterrupt):
        server.serve_forever()


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
