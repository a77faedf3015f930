"""Landing files are untrusted: no symlink is followed, nothing outside the landing root is
read, and a file that is not JSONL leaves only a short, marked, scrubbed excerpt."""

import os
from pathlib import Path

from bsky_assets.posts.landing import LandingDayReader
from bsky_assets_tests.conftest import SAMPLE_DAY, materialize_day, post, write_jsonl

FAKE_KEY = "fake-openai-key-for-landing-tests-0009"


def test_symlinks_are_never_followed(defs, client, landing_root: Path, tmp_path: Path, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", FAKE_KEY)  # what /proc/self/environ would leak
    day = landing_root / SAMPLE_DAY.isoformat()
    write_jsonl(day / "good.jsonl", [post("1")])
    (day / "env.jsonl").symlink_to("/proc/self/environ")
    (day / "passwd.jsonl").symlink_to("/etc/passwd")
    outside = tmp_path / "outside"
    write_jsonl(outside / "stolen.jsonl", [post("outside")])
    (day / "escape.jsonl").symlink_to(outside / "stolen.jsonl")
    (day / "folder.jsonl").mkdir()

    reader = LandingDayReader(day, root=landing_root)
    assert [p.name for p in reader.files] == ["good.jsonl"]
    assert dict(reader.skipped) == {"symlink": 3, "not_a_regular_file": 1}

    result = materialize_day(defs, SAMPLE_DAY, upstream_of="valid_posts")
    assert result.success
    everything = repr(client.fetch_all(f"SELECT * FROM {client.qualified('landing_rejects')}"))
    everything += repr(client.fetch_all(f"SELECT * FROM {client.qualified('preprocessed_posts')}"))
    assert FAKE_KEY not in everything and "root:" not in everything and "outside" not in everything
    metadata = result.asset_materializations_for_node("ingest_landing")[0].metadata
    assert metadata["entries_skipped"].value == {"not_a_regular_file": 1, "symlink": 3}


def test_a_day_folder_that_is_a_symlink_is_not_read(defs, client, landing_root, tmp_path):
    elsewhere = tmp_path / "elsewhere"
    write_jsonl(elsewhere / "b.jsonl", [post("1")])
    (landing_root / SAMPLE_DAY.isoformat()).symlink_to(elsewhere)
    reader = LandingDayReader(landing_root / SAMPLE_DAY.isoformat(), root=landing_root)
    assert reader.files == [] and dict(reader.skipped) == {"day_folder_is_a_symlink": 1}


def test_a_file_that_is_not_jsonl_leaves_a_short_scrubbed_excerpt(
    defs, client, landing_root, monkeypatch
):
    monkeypatch.setenv("OPENAI_API_KEY", FAKE_KEY)
    day = landing_root / SAMPLE_DAY.isoformat()
    day.mkdir()
    secret_file = f"OPENAI_API_KEY={FAKE_KEY} " + "x" * 5_000 + "\n"
    (day / "notes.jsonl").write_text(secret_file + "plain words, not json\n")
    os.chmod(day / "notes.jsonl", 0o600)
    assert materialize_day(defs, SAMPLE_DAY, upstream_of="valid_posts").success
    rows = client.fetch_all(
        f"SELECT reason, raw_line FROM {client.qualified('landing_rejects')} ORDER BY line_number"
    )
    assert [r[0] for r in rows] == ["invalid_json", "invalid_json"]
    first = rows[0][1]
    assert FAKE_KEY not in first and len(first) < 200
    assert "[excerpt: the line is not JSON, 5," in first


def test_swapping_the_day_folder_for_a_symlink_mid_read_reads_nothing_outside(
    landing_root: Path, tmp_path: Path
):
    """The day folder is opened once and its files through that descriptor: renaming the folder
    away and putting a symlink to another folder in its place, between two files of the day,
    cannot redirect the second read."""
    day = landing_root / SAMPLE_DAY.isoformat()
    write_jsonl(day / "a.jsonl", [post("a1"), post("a2")])
    write_jsonl(day / "b.jsonl", [post("b1")])
    outside = tmp_path / "outside"
    write_jsonl(outside / "a.jsonl", [post("stolen-a")])
    write_jsonl(outside / "b.jsonl", [post("stolen-b")])

    reader = LandingDayReader(day, chunk_rows=1, root=landing_root)
    frames = iter(reader)
    uris = list(next(frames).get_column("uri"))  # a.jsonl is being read
    day.rename(landing_root / "moved-away")
    day.symlink_to(outside, target_is_directory=True)
    for frame in frames:
        uris += list(frame.get_column("uri"))
    assert [u.rsplit("/", 1)[1] for u in uris] == ["a1", "a2", "b1"]
