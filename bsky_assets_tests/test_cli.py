"""The command lines a researcher uses, run as subprocesses."""

import os
import stat
import subprocess
import sys
from datetime import date
from pathlib import Path

import psycopg
import pytest
from sqlalchemy.engine import URL

from bsky_assets.lib.db.client import PostgresClient
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


README = Path(__file__).resolve().parents[1] / "README.md"


def readme_selection() -> str:
    """The selection of the README's "materialize one day from the shell" command."""
    import re

    found = re.search(
        r"dagster asset materialize -m bsky_assets\.definitions --select '([^']+)' --partition",
        README.read_text(),
    )
    assert found, "the README shows how to materialize one day from the shell"
    return found.group(1)


@pytest.fixture
def one_day_from_the_shell(database_url, db_schema, tmp_path, landing_root, local_perspective):
    """Write a landing day of `lines` and a DAGSTER_HOME; the environment `dagster asset
    materialize` runs with (this test's database, the local Perspective server)."""

    def prepare(lines: list) -> dict[str, str]:
        write_jsonl(landing_root / DAY.isoformat() / "b.jsonl", lines)
        (tmp_path / "dagster_home").mkdir()
        env = env_for(database_url, db_schema, tmp_path, landing_root)
        return env | {
            "PERSPECTIVE_URL": local_perspective.url,
            "PERSPECTIVE_REQUESTS_PER_SECOND": "1000",
        }

    return prepare


def materialize(env: dict[str, str], select: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(BIN / "dagster"), "asset", "materialize", "-m", "bsky_assets.definitions",
         "--select", select, "--partition", DAY.isoformat()],
        env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip


@pytest.mark.slow
def test_dagster_asset_materialize_cli(client: PostgresClient, one_day_from_the_shell, local_llm):
    """The README's own command, as it is written there."""
    env = one_day_from_the_shell([post("1"), post("2", text="hi")])
    env["OPENAI_BASE_URL"] = local_llm.url
    completed = materialize(env, readme_selection())
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
@pytest.mark.parametrize("select", ["*perspective_labels", "preprocessed_posts"])
def test_selections_need_not_name_landing_rejects(
    select: str, client: PostgresClient, one_day_from_the_shell
):
    """The selections a Dagster user reaches for first materialize without naming
    landing_rejects, and the day's rejects are written all the same: every line that lands is
    a post or a row saying why, whatever the selection."""
    env = one_day_from_the_shell([post("1"), b"not json", post("2"), b"[]"])
    completed = materialize(env, select)
    assert completed.returncode == 0, completed.stderr[-3000:]
    posts = client.fetch_all(f"SELECT uri FROM {client.qualified('preprocessed_posts')}")
    assert sorted(p[0] for p in posts) == [post("1")["uri"], post("2")["uri"]]
    rejects = client.fetch_all(
        f"SELECT line_number, reason FROM {client.qualified('landing_rejects')} ORDER BY 1"
    )
    assert rejects == [(2, "invalid_json"), (4, "not_an_object")]
    if select == "*perspective_labels":
        labelled = client.fetch_all(
            f"SELECT count(*) FROM {client.qualified('perspective_labels')}"
        )
        assert labelled == [(2,)]


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
def test_db_stop_stops_the_embedded_server_of_the_data_dir(tmp_path: Path) -> None:
    """The embedded Postgres outlives the command that started it (Dagster starts a process
    per run); `db stop` is how a user, or CI after its demo, stops it."""
    from bsky_assets.lib.db.embedded import stop_embedded_server

    env = subprocess_env(None, BSKY_DATA_DIR=str(tmp_path / "data"))
    pgdata = tmp_path / "data" / "postgres"

    def bsky(*args: str) -> str:
        command = [str(BIN / "bsky-assets"), *args]
        done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr[-2000:]
        return done.stdout

    try:
        url = bsky("db", "url", "--show-password").strip()  # starts it
        psycopg.connect(url, connect_timeout=10).close()  # up after the command that started it
        assert "stopped the embedded Postgres" in bsky("db", "stop")
        assert not (pgdata / "postmaster.pid").exists()
        with pytest.raises(psycopg.OperationalError):
            psycopg.connect(url, connect_timeout=10)
        assert "is not running" in bsky("db", "stop")
    finally:
        stop_embedded_server(pgdata)


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

    from bsky_assets.cli.root import _port, main

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


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["perspective", "openai"])
def test_serve_takes_its_key_from_the_environment_or_a_file_never_argv(
    kind: str, tmp_path: Path
) -> None:
    """`--api-key KEY` showed the key to every user of the machine in `ps`: it is refused with
    a message saying what to use; BSKY_SERVER_API_KEY and `--api-key-file` (0600) work, and the
    key is in neither command line."""
    import json
    import time
    import urllib.error
    import urllib.request

    import psutil

    from bsky_assets.servers.http import free_port

    key = f"the-{kind}-server-key-0031"
    serve = [str(BIN / "bsky-assets"), "serve", kind]
    refused = subprocess.run(
        [*serve, "--port", str(free_port()), "--api-key", key],
        capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert refused.returncode != 0
    assert "BSKY_SERVER_API_KEY" in refused.stderr and "--api-key-file" in refused.stderr

    loose = tmp_path / "loose.key"
    loose.write_text(key + "\n")
    loose.chmod(0o644)
    open_file = subprocess.run(
        [*serve, "--port", str(free_port()), "--api-key-file", str(loose)],
        capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert open_file.returncode != 0 and "chmod 600" in open_file.stderr

    private = tmp_path / "server.key"
    private.write_text(key + "\n")
    private.chmod(0o600)
    stats = "/stats"
    keyed = {"x-goog-api-key": key} if kind == "perspective" else {"Authorization": f"Bearer {key}"}
    for args, env in [
        (["--api-key-file", str(private)], {}),
        ([], {"BSKY_SERVER_API_KEY": key}),
    ]:
        port = free_port()
        process = subprocess.Popen(
            [*serve, "--port", str(port), *args],
            env={**os.environ, **env}, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        try:
            deadline = time.monotonic() + 60
            while True:
                try:
                    request = urllib.request.Request(
                        f"http://127.0.0.1:{port}{stats}", headers=keyed
                    )
                    with urllib.request.urlopen(request, timeout=2) as response:
                        assert "uptime_seconds" in json.load(response)
                    break
                except (urllib.error.URLError, ConnectionError):
                    assert process.poll() is None, process.stderr.read()
                    assert time.monotonic() < deadline, "the server did not start"
                    time.sleep(0.3)
            with pytest.raises(urllib.error.HTTPError) as no_key:
                urllib.request.urlopen(f"http://127.0.0.1:{port}{stats}", timeout=5)
            assert no_key.value.code in (401, 403)
            command_lines = " ".join(
                " ".join(p.info["cmdline"] or []) for p in psutil.process_iter(["cmdline"])
            )
            assert key not in command_lines
        finally:
            process.terminate()
            process.wait(timeout=10)


@pytest.mark.slow
def test_the_dagster_wrapper_records_in_the_project_instance(
    database_url, db_schema, tmp_path, landing_root
):
    """`bsky-assets dagster asset materialize …` (the README's shell command) with no
    DAGSTER_HOME set: the materialization lands in the project's instance
    (BSKY_DATA_DIR/dagster_home), the one `bsky-assets dev` shows."""
    import dagster as dg
    from dagster._core.instance.ref import InstanceRef

    write_jsonl(landing_root / DAY.isoformat() / "b.jsonl", [post("1"), post("2")])
    env = env_for(database_url, db_schema, tmp_path, landing_root)
    del env["DAGSTER_HOME"]
    completed = subprocess.run(
        [str(BIN / "bsky-assets"), "dagster", "asset", "materialize", "-m",
         "bsky_assets.definitions", "--select", "preprocessed_posts", "--partition",
         DAY.isoformat()],
        env=env, capture_output=True, text=True, timeout=300, cwd=tmp_path,
    )  # fmt: skip
    assert completed.returncode == 0, completed.stderr[-3000:]
    home = tmp_path / "data" / "dagster_home"
    assert (home / "dagster.yaml").is_file()
    with dg.DagsterInstance.from_ref(InstanceRef.from_dir(str(home))) as instance:
        event = instance.get_latest_materialization_event(dg.AssetKey("preprocessed_posts"))
        assert event is not None
        assert event.asset_materialization.partition == DAY.isoformat()


def test_the_readme_runs_dagster_only_against_the_project_instance() -> None:
    """Every `dagster …` command the README gives to run (a code block line, a table's command
    cell) goes through `bsky-assets dagster` (or is `dagster dev`, documented with its
    DAGSTER_HOME): a bare one records in an instance the UI never shows."""
    import re

    text = README.read_text()
    commands, in_block = [], False
    for line in text.replace("\\\n", " ").splitlines():
        if line.strip().startswith("```"):
            in_block = not in_block
        elif in_block:
            commands.append(line.strip())
    commands += re.findall(r"^\| `([^`]+)` \|", text, re.M)
    bare = []
    for command in commands:
        words = [w for w in command.split() if not re.match(r"^[A-Z_]+=", w)]
        if words and words[0] in ("dagster", "dagster-webserver") and words[1:2] != ["dev"]:
            bare.append(command)
    assert bare == [], bare


@pytest.mark.slow
def test_the_demo_piped_prints_plain_progress_and_no_library_warnings(
    database_url, db_schema, tmp_path
):
    """`bsky-assets demo` with stdout and stderr piped (a log file, CI, `| tee`): a few plain
    progress lines per step, never a bar's label repeated bare or carriage returns, and none
    of Dagster's Beta/Preview warnings or platformdirs' RuntimeDirWarning."""
    env = env_for(database_url, db_schema, tmp_path, tmp_path / "landing")
    del env["DAGSTER_HOME"]
    env.pop("XDG_RUNTIME_DIR", None)  # where platformdirs warns
    completed = subprocess.run(
        [str(BIN / "bsky-assets"), "demo", "--posts", "40", "--day", DAY.isoformat()],
        env=env, capture_output=True, text=True, timeout=420, cwd=tmp_path,
    )  # fmt: skip
    out, err = completed.stdout, completed.stderr
    assert completed.returncode == 0, err[-3000:]
    for noise in ("BetaWarning", "PreviewWarning", "RuntimeDirWarning", "\r"):
        assert noise not in out + err, noise
    lines = out.splitlines()
    assert not [line for line in lines if line.strip() == "perspective_labels"]  # a bare label
    progress = [line for line in lines if line.startswith("perspective_labels ")]
    assert 2 <= len(progress) <= 6, progress
    assert progress[-1].endswith(", done"), progress
    assert "== 2024-06-01 ==" in out
