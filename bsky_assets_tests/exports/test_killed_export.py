"""A real `bsky-assets export` killed with SIGKILL mid-write leaves the previous day intact, on a
folder and on a real S3-compatible server; the next run finishes the day. Also the command's
own output: a progress bar, a line per day, where the files are and how to read them."""

import hashlib
import os
import signal
import subprocess
import sys
from datetime import date
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from bsky_assets.lib.db.client import PostgresClient
from bsky_assets.tools.bench.export import seed_day
from bsky_assets_tests.conftest import subprocess_env
from bsky_assets_tests.dagster_dev import wait_for
from bsky_assets_tests.exports.helpers import DATASETS, preferred_counts
from bsky_assets_tests.exports.s3 import BUCKET, s3  # noqa: F401  (the fixture)

BIN = Path(sys.executable).parent
DAY = date(2024, 3, 4)
POSTS = 150_000  # seconds of writing: time to kill it in the middle


def export_command(env: dict[str, str], *extra: str) -> subprocess.Popen:
    return subprocess.Popen(
        [str(BIN / "bsky-assets"), "export", "--from", DAY.isoformat(), *extra],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # kill -9 reaches the whole process group
    )


def finish(process: subprocess.Popen) -> str:
    out, err = process.communicate(timeout=240)
    assert process.returncode == 0, err[-3000:]
    return out + err


def relabel(client: PostgresClient) -> None:
    """Re-label a tenth of the day's posts: the next export must write the day again."""
    client.execute(
        f"UPDATE {client.qualified('perspective_labels')} SET prob_toxic = 0.5 "
        "WHERE partition_date = %s AND hashtext(uri) & 7 = 0",
        (DAY,),
    )


def kill_when(process: subprocess.Popen, writing) -> None:
    wait_for(lambda: writing() or process.poll() is not None, 120, "the export to write", 0.02)
    assert process.poll() is None, "the export finished before it could be killed"
    os.killpg(process.pid, signal.SIGKILL)
    process.wait(timeout=30)
    assert process.returncode == -signal.SIGKILL


@pytest.fixture
def big_day(client: PostgresClient) -> PostgresClient:
    seed_day(client, DAY, POSTS)
    return client


@pytest.fixture
def env(database_url, db_schema, tmp_path) -> dict[str, str]:
    return subprocess_env(
        database_url,
        BSKY_DB_SCHEMA=db_schema,
        BSKY_DATA_DIR=str(tmp_path / "data"),
        DAGSTER_HOME=str(tmp_path / "dagster_home"),
    )


def digests(root: Path) -> dict[str, str]:
    return {
        d: hashlib.sha256(
            (root / d / f"partition_date={DAY}" / "part-0.parquet").read_bytes()
        ).hexdigest()
        for d in DATASETS
    }


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_a_killed_export_leaves_the_previous_day_intact_in_a_folder(big_day, env, tmp_path):
    root = tmp_path / "exports"
    env = env | {"BSKY_EXPORT_DEST": str(root)}
    output = finish(export_command(env))
    assert f"{DAY}: perspective_labels {POSTS:,} rows" in output
    assert f"export {DAY} posts" in output  # the progress bar
    assert f"read_parquet('{root}/perspective_labels/*/*.parquet', hive_partitioning=1)" in output
    before = digests(root)

    relabel(big_day)
    staging = root / "_staging" / f"partition_date={DAY}"
    process = export_command(env)
    kill_when(process, lambda: any(p.stat().st_size > 1 << 20 for p in staging.glob("*")))

    assert digests(root) == before  # the previous day, byte for byte
    for dataset in DATASETS:
        folder = root / dataset / f"partition_date={DAY}"
        assert [p.name for p in folder.iterdir()] == ["part-0.parquet"]
        assert pq.read_metadata(folder / "part-0.parquet").num_rows == POSTS

    output = finish(export_command(env))
    assert "2 file(s) written" in output  # the LLM labels did not change
    assert digests(root)["perspective_labels"] != before["perspective_labels"]
    assert not any(staging.glob("*"))  # the killed run's leftovers are gone
    table = pq.read_table(root / "perspective_labels", columns=["labeler"])
    assert table.num_rows == sum(preferred_counts(big_day, "perspective_labels", DAY).values())


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_a_killed_export_leaves_the_previous_day_intact_on_s3(big_day, env, s3):  # noqa: F811
    env = env | s3.environment() | {"BSKY_EXPORT_DEST": f"s3://{BUCKET}/killed"}
    finish(export_command(env))
    day_keys = [f"killed/{d}/partition_date={DAY}/part-0.parquet" for d in DATASETS]
    client = s3.client()

    def etags() -> dict[str, str]:
        return {k: client.head_object(Bucket=BUCKET, Key=k)["ETag"] for k in day_keys}

    before = etags()
    relabel(big_day)
    process = export_command(env)
    kill_when(process, lambda: client.list_multipart_uploads(Bucket=BUCKET).get("Uploads"))

    assert etags() == before  # the previous objects, untouched
    visible = [k for k in s3.keys("killed/") if not k.startswith("killed/_staging/")]
    assert visible == sorted([*day_keys, "killed/README.md", "killed/schema.json"])

    output = finish(export_command(env))
    assert "2 file(s) written" in output  # the LLM labels did not change
    assert etags() != before
    assert all(k.endswith("/") for k in s3.keys("killed/_staging/"))  # no staged data left
