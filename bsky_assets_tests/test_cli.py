"""The command lines a researcher uses, run as subprocesses."""

import stat
import subprocess
import sys
from datetime import date
from pathlib import Path

import pytest
from sqlalchemy.engine import URL

from bsky_assets.db.client import PostgresClient
from bsky_assets_tests.conftest import post, subprocess_env, write_jsonl

BIN = Path(sys.executable).parent
DAY = date(2024, 6, 1)


def env_for(database_url: URL, schema: str, tmp_path: Path, landing: Path) -> dict[str, str]:
    return subprocess_env(
        database_url,
        BSKY_DB_SCHEMA=schema,
        BSKY_LANDING_DIR=str(landing),
        BSKY_DATA_DIR=str(tmp_path / "data"),
        DAGSTER_HOME=str(tmp_path / "dagster_home"),
    )


@pytest.mark.slow
def test_dagster_asset_materialize_cli(
    database_url: URL,
    db_schema: str,
    client: PostgresClient,
    tmp_path: Path,
    landing_root: Path,
    local_perspective,
    local_llm,
):
    write_jsonl(landing_root / DAY.isoformat() / "b.jsonl", [post("1"), post("2", text="hi")])
    (tmp_path / "dagster_home").mkdir()
    env = env_for(database_url, db_schema, tmp_path, landing_root)
    env["PERSPECTIVE_URL"] = local_perspective.url
    env["PERSPECTIVE_REQUESTS_PER_SECOND"] = "1000"
    env["OPENAI_BASE_URL"] = local_llm.url
    completed = subprocess.run(
        [
            str(BIN / "dagster"),
            "asset",
            "materialize",
            "-m",
            "bsky_assets.definitions",
            "--select",
            "*perspective_agreement,*sociopolitical_labels,landing_rejects",
            "--partition",
            DAY.isoformat(),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    assert "RUN_SUCCESS" in completed.stderr
    rows = client.fetch_all(
        f"SELECT uri, is_valid, invalid_reason FROM {client.qualified('valid_posts')} ORDER BY uri"
    )
    assert rows == [(post("1")["uri"], True, None), (post("2")["uri"], False, "text_too_short")]
    labels = client.fetch_all(
        f"SELECT uri, was_successfully_labeled, labeler FROM "
        f"{client.qualified('perspective_labels')} ORDER BY uri"
    )
    assert labels == [
        (post("1")["uri"], True, "bsky-perspective-server/synthetic-hash (synthetic)"),
        (post("2")["uri"], False, "bsky_assets.valid_posts"),
    ]


@pytest.mark.slow
def test_db_url_prints_the_database_in_use(
    database_url: URL, db_schema: str, tmp_path: Path, landing_root: Path
):
    completed = subprocess.run(
        [str(BIN / "bsky-assets"), "db", "url"],
        env=env_for(database_url, db_schema, tmp_path, landing_root),
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    url = completed.stdout.strip()
    assert url.startswith("postgresql://")  # libpq form, usable by psql
    assert database_url.password and database_url.password not in url  # hidden unless asked
    assert url == database_url.set(drivername="postgresql").render_as_string(hide_password=True)


@pytest.mark.slow
def test_sample_command_writes_a_landing_day(
    database_url: URL, db_schema: str, tmp_path: Path, landing_root: Path
):
    subprocess.run(
        [
            str(BIN / "bsky-assets"),
            "sample",
            "--day",
            "2024-06-05",
            "--posts",
            "120",
            "--batch-size",
            "50",
            "--gzip",
        ],
        env=env_for(database_url, db_schema, tmp_path, landing_root),
        check=True,
        capture_output=True,
        timeout=60,
    )
    day = landing_root / "2024-06-05"
    files = sorted(p.name for p in day.iterdir())
    assert files == ["batch-0001.jsonl.gz", "batch-0002.jsonl.gz", "batch-0003.jsonl.gz"]
    # umask 077: what the project creates is the user's alone (posts are other people's data)
    assert stat.S_IMODE(day.stat().st_mode) == 0o700
    assert {stat.S_IMODE(p.stat().st_mode) for p in day.iterdir()} == {0o600}


@pytest.mark.slow
def test_import_history_then_distill_then_serve(
    database_url: URL, db_schema: str, tmp_path: Path, landing_root: Path
):
    """The successor's commands, as a researcher runs them; `distill --json` ends on one line of
    JSON, and `serve perspective` picks the model up as `latest`."""
    import json
    import time
    import urllib.request

    from bsky_assets.servers.http import free_port
    from bsky_assets_tests.successor.conftest import synthetic_history, write_csv

    env = env_for(database_url, db_schema, tmp_path, landing_root)
    history = write_csv(tmp_path / "history.csv", synthetic_history(300))
    command = [str(BIN / "bsky-assets"), "perspective"]
    imported = subprocess.run(
        [*command, "import-history", str(history), "--json"],
        env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert imported.returncode == 0, imported.stderr[-2000:]
    assert json.loads(imported.stdout.strip().splitlines()[-1])["scores_added"] == 600
    distilled = subprocess.run(
        [*command, "distill", "--json"], env=env, capture_output=True, text=True, timeout=300
    )
    assert distilled.returncode == 0, distilled.stderr[-2000:]
    summary = json.loads(distilled.stdout.strip().splitlines()[-1])
    assert set(summary["attributes"]) == {"TOXICITY", "AFFINITY_EXPERIMENTAL"}
    assert summary["mean_auc"] > 0.9 and "mean AUC" in distilled.stdout

    port = free_port()
    server = subprocess.Popen(
        [str(BIN / "bsky-assets"), "serve", "perspective", "--port", str(port)],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz") as response:
                    health = json.load(response)
                break
            except OSError:
                assert time.monotonic() < deadline, server.stderr.read()
                time.sleep(0.3)
        assert (
            health["labeler"] == f"bsky-perspective-server/distilled-{summary['model_id']} (model)"
        )
    finally:
        server.terminate()
        server.wait(timeout=10)


def test_dev_with_a_busy_port_says_so_in_one_line_or_takes_a_free_one() -> None:
    import socket

    import click
    from click.testing import CliRunner

    from bsky_assets.cli import _port, main

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        chosen = CliRunner().invoke(main, ["dev", "--perspective-port", str(port)])
        assert chosen.exit_code == 2
        assert f"port {port} is already in use; choose another with --perspective-port" in (
            chosen.output
        )
        assert "Traceback" not in chosen.output

        @click.command()
        @click.option("--llm-port", type=int, default=port)
        @click.pass_context
        def probe(ctx: click.Context, llm_port: int) -> None:
            click.echo(f"using {_port(ctx, 'llm_port', llm_port)}")

        default = CliRunner().invoke(probe, [])
        assert default.exit_code == 0
        taken = int(default.output.strip().split()[-1])
        assert taken != port and f"port {port} is in use: the local server takes {taken}" in (
            default.output
        )
