"""Where exports go: a folder, a real S3-compatible server on loopback, any fsspec filesystem;
credentials from the environment only, never in a URL, metadata, rows or logs."""

import os

import dagster as dg
import pyarrow.fs as pafs
import pyarrow.parquet as pq
import pytest

from bsky_assets.exports.destination import Destination, DestinationError
from bsky_assets_tests.conftest import SAMPLE_DAY
from bsky_assets_tests.exports.helpers import DATASETS, export_event, label_day, preferred_counts
from bsky_assets_tests.exports.s3 import BUCKET, s3  # noqa: F401  (the fixture)


def test_a_folder_is_resolved_and_a_file_url_is_a_folder(tmp_path):
    assert Destination.from_url(str(tmp_path / "x")).url == str(tmp_path / "x")
    assert Destination.from_url(f"file://{tmp_path}/y").url == str(tmp_path / "y")
    assert Destination.from_url(str(tmp_path)).local


@pytest.mark.parametrize(
    "url",
    [
        "s3://AKIAEXAMPLE:hunter2@bucket/prefix",
        "s3://bucket/prefix?access_key=AKIAEXAMPLE&secret_key=hunter2",
        "s3://bucket/prefix#hunter2",
    ],
)
def test_credentials_in_a_url_are_refused_without_repeating_them(url):
    with pytest.raises(DestinationError) as raised:
        Destination.from_url(url)
    assert "hunter2" not in str(raised.value) and "AWS_SECRET_ACCESS_KEY" in str(raised.value)


def test_an_object_store_url_needs_a_bucket():
    with pytest.raises(DestinationError, match="needs a bucket"):
        Destination.from_url("s3:///prefix")


def test_any_fsspec_filesystem_gets_the_same_staging_and_move():
    destination = Destination.from_url("memory://bsky-test/exports")
    with destination.atomic_write("a/b.txt", "_staging/b.tmp") as out:
        out.write(b"whole")
    assert destination.exists("a/b.txt") and not destination.exists("_staging/b.tmp")
    with pytest.raises(RuntimeError), destination.atomic_write("a/b.txt", "_staging/c.tmp") as out:
        out.write(b"half")
        raise RuntimeError("killed mid-write")
    with destination.filesystem.open_input_stream(destination.path("a/b.txt")) as f:
        assert f.read() == b"whole"
    assert not destination.exists("_staging/c.tmp")


def test_a_day_to_a_real_s3_server(defs, landing_root, client, s3, capsys):  # noqa: F811
    os.environ["BSKY_EXPORT_DEST"] = f"s3://{BUCKET}/research/v1"
    result = label_day(defs, landing_root, SAMPLE_DAY)
    prefix = "research/v1/"
    keys = s3.keys(prefix)
    day = f"partition_date={SAMPLE_DAY}"
    staged = [k for k in keys if k.startswith(f"{prefix}_staging/")]
    assert all(k.endswith("/") for k in staged)  # pyarrow's empty folder markers, no data
    assert [k for k in keys if k not in staged] == sorted(
        [f"{prefix}{d}/{day}/part-0.parquet" for d in DATASETS]
        + [f"{prefix}README.md", f"{prefix}schema.json"]
    )  # nothing staged is left, nothing else is visible

    filesystem = pafs.S3FileSystem(
        access_key="test-access-key",
        secret_key=s3.secret,
        endpoint_override=s3.endpoint.split("//")[1],
        scheme="http",
        region="us-east-1",
    )
    table = pq.read_table(f"{BUCKET}/{prefix}perspective_labels/{day}", filesystem=filesystem)
    labelers = table.group_by("labeler").aggregate([([], "count_all")]).to_pylist()
    assert {r["labeler"]: r["count_all"] for r in labelers} == preferred_counts(
        client, "perspective_labels", SAMPLE_DAY
    )

    metadata = export_event(result).metadata
    assert metadata["destination"].value == f"s3://{BUCKET}/research/v1"
    assert isinstance(metadata["dictionary"], dg.UrlMetadataValue)
    assert metadata["dictionary"].value == f"s3://{BUCKET}/research/v1/README.md"
    # The secret is nowhere: not in metadata, the run's events, the rows, or what was printed.
    assert s3.secret not in repr(metadata)
    assert all(s3.secret not in repr(event) for event in result.all_events)
    assert s3.secret not in repr(
        client.fetch_all(f"SELECT * FROM {client.qualified('export_files')}")
    )
    captured = capsys.readouterr()
    assert s3.secret not in captured.out + captured.err
    assert s3.secret not in repr(Destination.configured())
