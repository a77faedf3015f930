"""`bsky-assets serve perspective|openai`: the project's own API servers, for the demo, tests
and a group that self-hosts its Perspective successor. Their key comes from the environment or a
0600 file, never argv (where `ps` shows it)."""

from __future__ import annotations

from pathlib import Path

import click

from bsky_assets import settings


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


@click.group()
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
    server.serve_forever()  # until SIGINT or SIGTERM


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
    server.serve_forever()  # until SIGINT or SIGTERM
