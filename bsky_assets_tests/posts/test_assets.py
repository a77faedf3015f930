"""preprocessed_posts → classification_metadata → valid_posts, on a real Postgres."""

import gzip
import json
import shutil
from datetime import date
from pathlib import Path

import dagster as dg
import polars as pl

from bsky_assets.lib.db.client import PostgresClient
from bsky_assets.posts.landing import parse_post
from bsky_assets.posts.validity import with_validity as validity
from bsky_assets.tools.sample_data import write_sample_day
from bsky_assets_tests.conftest import (
    SAMPLE_DAY,
    SHARED_SAMPLE,
    materialize_day,
    post,
    shared,
    table_rows,
    write_jsonl,
)

TABLES = ["preprocessed_posts", "landing_rejects", "classification_metadata", "valid_posts"]


def metadata_of(result: dg.ExecuteInProcessResult, asset: str) -> dict:
    for event in result.get_asset_materialization_events():
        materialization = event.step_materialization_data.materialization
        if materialization.asset_key == dg.AssetKey(asset):
            return {k: v.value for k, v in materialization.metadata.items()}
    raise AssertionError(f"{asset} was not materialized")


def expected_from_files(folder: Path) -> tuple[dict[str, dict], int]:
    """An independent reading of the landing contract: newest post per uri, and rejected lines."""
    newest: dict[str, dict] = {}
    rejected = 0
    for path in sorted(folder.glob("*.jsonl")):
        for line in path.read_bytes().splitlines():
            try:
                record = json.loads(line)
                parse_post(record)
            except Exception:
                rejected += 1
                continue
            current = newest.get(record["uri"])
            if (
                current is None
                or record["preprocessing_timestamp"] >= current["preprocessing_timestamp"]
            ):
                newest[record["uri"]] = record
    return newest, rejected


def test_shared_sample_day(defs: dg.Definitions, client: PostgresClient, landing_root: Path):
    day = SAMPLE_DAY.isoformat()
    shutil.copytree(shared(SHARED_SAMPLE) / day, landing_root / day)  # a copy: links are refused
    newest, rejected = expected_from_files(landing_root / SAMPLE_DAY.isoformat())
    result = materialize_day(defs, SAMPLE_DAY)
    assert result.success

    posts = table_rows(client, "preprocessed_posts", SAMPLE_DAY)
    assert len(posts) == len(newest) == 587  # 588 unique uris, one has "created_at": null
    meta = metadata_of(result, "preprocessed_posts")
    assert meta["lines_read"] == 600
    assert meta["lines_rejected"] == rejected == 2
    assert meta["rejects_by_reason"] == {"missing_field": 2}
    stored = {row[1]: row for row in posts}
    assert {uri: r["text"] for uri, r in newest.items()} == {u: r[5] for u, r in stored.items()}

    valid = client.fetch_all(
        f"SELECT uri, is_valid, invalid_reason FROM {client.qualified('valid_posts')}"
    )
    expected_short = {u for u, r in newest.items() if len(r["text"].strip()) < 8}
    assert {u for u, ok, reason in valid if reason == "text_too_short"} == expected_short
    assert sum(ok for _, ok, _ in valid) == len(newest) - len(expected_short)
    assert metadata_of(result, "valid_posts")["invalid_by_reason"] == {
        "text_too_short": len(expected_short)
    }
    assert len(table_rows(client, "classification_metadata", SAMPLE_DAY)) == 587


def test_generated_day_twice_gives_identical_tables(
    defs: dg.Definitions, client: PostgresClient, landing_root: Path
):
    day = date(2024, 11, 5)
    written = write_sample_day(landing_root, day, posts=1_500, batch_size=400, gzip_batches=True)
    assert len(written.files) == 4
    assert materialize_day(defs, day).success
    first = {t: table_rows(client, t, day, order="2, 3") for t in TABLES}
    assert materialize_day(defs, day).success
    second = {t: table_rows(client, t, day, order="2, 3") for t in TABLES}
    assert first == second
    assert len(first["landing_rejects"]) == 5  # the generator's malformed lines
    uris = [row[1] for row in first["preprocessed_posts"]]
    assert len(uris) == len(set(uris)) < 1_500  # repeated uris were deduplicated


def test_second_batch_arriving_later(
    defs: dg.Definitions, client: PostgresClient, landing_root: Path
):
    day_dir = landing_root / SAMPLE_DAY.isoformat()
    write_jsonl(day_dir / "batch-a.jsonl", [post("1", "first version of post one"), post("2")])
    assert materialize_day(defs, SAMPLE_DAY).success
    first_seen = dict(
        client.fetch_all(
            f"SELECT uri, first_seen FROM {client.qualified('classification_metadata')}"
        )
    )

    later = "2024-06-01T18:00:00Z"
    write_jsonl(
        day_dir / "batch-b.jsonl",
        [post("1", "second version of post one", preprocessing_timestamp=later), post("3")],
    )
    assert materialize_day(defs, SAMPLE_DAY).success

    posts = {r[1]: r for r in table_rows(client, "preprocessed_posts", SAMPLE_DAY)}
    assert sorted(posts) == [post(s)["uri"] for s in "123"]
    assert posts[post("1")["uri"]][2] == "batch-b"  # the newest preprocessing_timestamp won
    assert posts[post("1")["uri"]][5] == "second version of post one"
    metadata = dict(
        client.fetch_all(
            f"SELECT uri, first_seen FROM {client.qualified('classification_metadata')}"
        )
    )
    assert len(metadata) == 3
    for uri, seen in first_seen.items():  # inserted only where absent: first_seen kept
        assert metadata[uri] == seen


def test_every_bad_line_kind_is_rejected_with_its_reason(
    defs: dg.Definitions, client: PostgresClient, landing_root: Path
):
    day_dir = landing_root / SAMPLE_DAY.isoformat()
    lines: list[dict | bytes] = [
        post("good"),
        b'{"uri": "at://x/app.bsky.feed.post/1", "text": ',
        b"[1, 2, 3]",
        b"   ",
        {k: v for k, v in post("no-text").items() if k != "text"},
        post("int-text", text=42),
        post("bad-uri") | {"uri": "https://bsky.app/post/1"},
        post("bad-time", created_at="yesterday-ish"),
        post("nul", text="nul \x00 inside"),
        b'{"uri": "at://x/app.bsky.feed.post/2", "text": "lone \\ud800 surrogate",'
        b' "created_at": "2024-06-01T00:00:00Z",'
        b' "preprocessing_timestamp": "2024-06-01T00:00:00Z"}',
        b'{"uri": "at://x/app.bsky.feed.post/3", "text": "latin-1 \xe9"}',
        post("bool-count", like_count=True),
        post("bad-langs", langs="en"),
        post("unknown-field", mood="sunny"),
    ]
    write_jsonl(day_dir / "batch-1.jsonl", lines)
    records = (json.dumps(post(f"gz{i}", text=f"post {i} " * 20)).encode() for i in range(3000))
    payload = gzip.compress(b"\n".join(records) + b"\n")
    (day_dir / "batch-2.jsonl.gz").write_bytes(payload[: len(payload) // 2])  # truncated gzip
    (day_dir / "batch-3.jsonl.part").write_text("still being written")  # not a finished batch

    result = materialize_day(defs, SAMPLE_DAY)
    assert result.success
    rejects = client.fetch_all(
        f"SELECT source_file, line_number, reason, detail FROM "
        f"{client.qualified('landing_rejects')} ORDER BY source_file, line_number"
    )
    assert [(f, n, r, d) for f, n, r, d in rejects if f == "batch-1.jsonl"] == [
        ("batch-1.jsonl", 2, "invalid_json", "Expecting value"),
        ("batch-1.jsonl", 3, "not_an_object", "list"),
        ("batch-1.jsonl", 4, "blank_line", None),
        ("batch-1.jsonl", 5, "missing_field", "text"),
        ("batch-1.jsonl", 6, "wrong_type", "text"),
        ("batch-1.jsonl", 7, "invalid_uri", "uri"),
        ("batch-1.jsonl", 8, "invalid_timestamp", "created_at"),
        ("batch-1.jsonl", 9, "nul_byte", "text"),
        ("batch-1.jsonl", 10, "invalid_unicode", "text"),
        ("batch-1.jsonl", 11, "invalid_utf8", "byte 56"),
        ("batch-1.jsonl", 12, "wrong_type", "like_count"),
        ("batch-1.jsonl", 13, "wrong_type", "langs"),
    ]
    gz_rejects = [(f, r) for f, _, r, _ in rejects if f == "batch-2.jsonl.gz"]
    assert gz_rejects == [("batch-2.jsonl.gz", "unreadable_file")]

    stored = {r[1] for r in table_rows(client, "preprocessed_posts", SAMPLE_DAY)}
    gz_posts = {u for u in stored if "/gz" in u}
    assert post("good")["uri"] in stored and post("unknown-field")["uri"] in stored
    assert 0 < len(gz_posts) < 3000  # lines before the truncation point were kept
    meta = metadata_of(result, "preprocessed_posts")
    assert meta["lines_rejected"] == len(rejects) == 13
    assert meta["rejects_by_reason"]["wrong_type"] == 3
    assert meta["batch_files"] == 2
    raw = client.fetch_all(
        f"SELECT raw_line FROM {client.qualified('landing_rejects')} WHERE reason = 'nul_byte'"
    )
    assert raw[0][0].startswith('{"uri"') and "\x00" not in raw[0][0]


def test_validity_rule() -> None:
    texts = ["", "       ", "  seven  ", "exactly8", "é" * 8, "x" * 20_480, "é" * 10_241]
    checked = validity(pl.DataFrame({"text": texts}), min_text_chars=8)
    assert checked.get_column("invalid_reason").to_list() == [
        "text_too_short",
        "text_too_short",
        "text_too_short",
        None,
        None,
        None,
        "text_too_long",  # 10,241 two-byte characters: 20,482 UTF-8 bytes
    ]
    assert checked.get_column("is_valid").to_list() == [
        False,
        False,
        False,
        True,
        True,
        True,
        False,
    ]


def test_min_text_chars_is_configurable(
    defs: dg.Definitions, client: PostgresClient, landing_root: Path
):
    write_jsonl(landing_root / SAMPLE_DAY.isoformat() / "b.jsonl", [post("1", "twelve chars")])
    config = dg.RunConfig(ops={"valid_posts": {"config": {"min_text_chars": 20}}})
    assert materialize_day(defs, SAMPLE_DAY, run_config=config).success
    assert client.fetch_all(f"SELECT invalid_reason FROM {client.qualified('valid_posts')}") == [
        ("text_too_short",)
    ]


def test_an_empty_day_folder_materializes_empty_tables(
    defs: dg.Definitions, client: PostgresClient, landing_root: Path
):
    (landing_root / SAMPLE_DAY.isoformat()).mkdir()
    result = materialize_day(defs, SAMPLE_DAY)
    assert result.success
    assert metadata_of(result, "preprocessed_posts")["partition_row_count"] == 0


def test_a_missing_folder_fails_loudly_and_keeps_the_day(
    defs: dg.Definitions, client: PostgresClient, landing_root: Path
):
    folder = landing_root / SAMPLE_DAY.isoformat()
    write_jsonl(folder / "b.jsonl", [post(str(i)) for i in range(10)])
    assert materialize_day(defs, SAMPLE_DAY).success
    before = table_rows(client, "preprocessed_posts", SAMPLE_DAY)
    shutil.rmtree(folder)
    result = materialize_day(defs, SAMPLE_DAY, raise_on_error=False)
    assert not result.success
    failure = next(e for e in result.all_events if e.event_type_value == "STEP_FAILURE")
    assert "no landing folder" in str(failure.event_specific_data.error)
    assert "holds 10 posts" in str(failure.event_specific_data.error)
    assert table_rows(client, "preprocessed_posts", SAMPLE_DAY) == before


def test_a_day_that_shrinks_sharply_is_rolled_back_unless_allowed(
    defs: dg.Definitions, client: PostgresClient, landing_root: Path
):
    folder = landing_root / SAMPLE_DAY.isoformat()
    write_jsonl(folder / "a.jsonl", [post(str(i)) for i in range(8)])
    write_jsonl(folder / "b.jsonl", [post(f"b{i}") for i in range(2)])
    assert materialize_day(defs, SAMPLE_DAY).success
    (folder / "a.jsonl").unlink()  # 10 posts would become 2
    result = materialize_day(defs, SAMPLE_DAY, raise_on_error=False)
    assert not result.success
    assert len(table_rows(client, "preprocessed_posts", SAMPLE_DAY)) == 10  # rolled back
    allowed = dg.RunConfig(ops={"ingest_landing": {"config": {"allow_shrink": True}}})
    assert materialize_day(defs, SAMPLE_DAY, run_config=allowed).success
    assert len(table_rows(client, "preprocessed_posts", SAMPLE_DAY)) == 2


def test_no_line_can_sink_a_day(defs: dg.Definitions, client: PostgresClient, landing_root: Path):
    """The reliability review's corpus: each of these once failed the whole day's ingest."""
    good = post("good")
    bad = [
        json.dumps(post("early", created_at="0001-01-01T00:00:00+01:00")).encode(),
        json.dumps(post("late", created_at="9999-12-31T23:59:59-01:00")).encode(),
        b"[" * 100_000 + b"]" * 100_000,
        json.dumps(post("x" * 3_000)).encode(),
    ]
    write_jsonl(landing_root / SAMPLE_DAY.isoformat() / "b.jsonl", [good, *bad])
    assert materialize_day(defs, SAMPLE_DAY).success
    assert [r[1] for r in table_rows(client, "preprocessed_posts", SAMPLE_DAY)] == [good["uri"]]
    reasons = [
        r[0]
        for r in client.fetch_all(
            f"SELECT reason FROM {client.qualified('landing_rejects')} ORDER BY line_number"
        )
    ]
    assert reasons == [
        "invalid_timestamp",
        "invalid_timestamp",
        "too_deeply_nested",
        "uri_too_long",
    ]


LINE_LIMIT = 262_144  # the landing contract's per-line byte limit (README, "The landing contract")


def test_a_line_over_the_limit_is_one_reject_and_the_rest_of_its_file_lands(
    defs: dg.Definitions, client: PostgresClient, landing_root: Path
):
    """A line over the limit is never stored as a post: one `line_too_long` reject with its byte
    count and a short excerpt, in plain and gzipped files, and every other line survives."""
    day_dir = landing_root / SAMPLE_DAY.isoformat()
    huge = json.dumps(post("huge", text="x" * (5 * LINE_LIMIT))).encode()
    at_limit = json.dumps(post("at-limit", text="")).encode()
    at_limit = at_limit.replace(
        b'"text": ""', b'"text": "' + b"y" * (LINE_LIMIT - len(at_limit)) + b'"'
    )
    assert len(at_limit) == LINE_LIMIT
    lines = [post("before"), huge, at_limit, post("after")]
    write_jsonl(day_dir / "plain.jsonl", lines)
    payload = b"".join((line if isinstance(line, bytes) else json.dumps(line).encode()) + b"\n"
                       for line in [post("gz-before"), huge, post("gz-after")])  # fmt: skip
    (day_dir / "zipped.jsonl.gz").write_bytes(gzip.compress(payload))

    result = materialize_day(defs, SAMPLE_DAY, upstream_of="valid_posts")
    assert result.success
    stored = {r[1].rsplit("/", 1)[1] for r in table_rows(client, "preprocessed_posts", SAMPLE_DAY)}
    assert stored == {"before", "at-limit", "after", "gz-before", "gz-after"}
    rejects = client.fetch_all(
        f"SELECT source_file, line_number, reason, detail, raw_line FROM "
        f"{client.qualified('landing_rejects')} ORDER BY source_file, line_number"
    )
    assert [r[:4] for r in rejects] == [
        ("plain.jsonl", 2, "line_too_long", f"{len(huge):,} bytes"),
        ("zipped.jsonl.gz", 2, "line_too_long", f"{len(huge):,} bytes"),
    ]
    assert all(r[4].startswith('{"uri"') and len(r[4]) < 300 for r in rejects)
    assert metadata_of(result, "preprocessed_posts")["rejects_by_reason"] == {"line_too_long": 2}


def test_a_huge_line_is_never_held_in_memory(landing_root: Path):
    """Reading a gzipped 64 MB line (compressed to a few kB) allocates about the limit, not the
    line: the limit is enforced while reading, in bounded chunks, up to the next newline."""
    import tracemalloc

    from bsky_assets.posts.landing import LandingDayReader

    day_dir = landing_root / SAMPLE_DAY.isoformat()
    day_dir.mkdir()
    with gzip.open(day_dir / "bomb.jsonl.gz", "wb") as handle:
        handle.write(json.dumps(post("ok")).encode() + b"\n")
        handle.write(b'{"text": "')
        for _ in range(64):
            handle.write(b"z" * 1_000_000)
        handle.write(b'"}\n' + json.dumps(post("also-ok")).encode() + b"\n")
    reader = LandingDayReader(day_dir, root=landing_root)
    tracemalloc.start()
    try:
        posts = sum(frame.height for frame in reader)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert posts == 2
    assert peak < 8 * LINE_LIMIT, f"peak {peak:,} bytes"


def test_rejects_are_streamed_and_their_excerpts_bounded(
    defs: dg.Definitions, client: PostgresClient, landing_root: Path
):
    """50,000 contract-breaking lines of 2 kB (a small .gz): every line gets its reject row, the
    rejects are not held in memory, and a broken file stores a bounded sample of its text."""
    import tracemalloc

    day_dir = landing_root / SAMPLE_DAY.isoformat()
    day_dir.mkdir()
    broken = json.dumps({"uri": "at://x/app.bsky.feed.post/1", "text": "b" * 2_000}).encode()
    with gzip.open(day_dir / "broken.jsonl.gz", "wb") as handle:
        handle.write(json.dumps(post("fine")).encode() + b"\n")
        for _ in range(50_000):
            handle.write(broken + b"\n")
    tracemalloc.start()
    try:
        result = materialize_day(defs, SAMPLE_DAY, upstream_of="valid_posts")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert result.success
    assert peak < 40_000_000, f"peak {peak:,} bytes"
    rows, excerpt_chars = client.fetch_all(
        f"SELECT count(*), coalesce(sum(length(raw_line)), 0) FROM "
        f"{client.qualified('landing_rejects')} WHERE reason = 'missing_field'"
    )[0]
    assert rows == 50_000  # every line has a row that says why
    assert excerpt_chars <= 1_000 * 2_000  # a sample of excerpts, not 100 MB of them
    assert [r[1] for r in table_rows(client, "preprocessed_posts", SAMPLE_DAY)] == [
        post("fine")["uri"]
    ]


def test_the_shrink_guard_counts_distinct_posts_not_lines(
    defs: dg.Definitions, client: PostgresClient, landing_root: Path
):
    """1,190 posts replaced by 400 posts written three times each (1,200 lines) is a day losing
    two thirds of its posts: rolled back, not green."""
    folder = landing_root / SAMPLE_DAY.isoformat()
    write_jsonl(folder / "a.jsonl", [post(str(i)) for i in range(1_190)])
    assert materialize_day(defs, SAMPLE_DAY, upstream_of="valid_posts").success
    (folder / "a.jsonl").unlink()
    write_jsonl(folder / "b.jsonl", [post(str(i)) for i in range(400)] * 3)
    result = materialize_day(defs, SAMPLE_DAY, upstream_of="valid_posts", raise_on_error=False)
    assert not result.success
    failure = next(e for e in result.all_events if e.event_type_value == "STEP_FAILURE")
    assert "400 distinct posts" in str(failure.event_specific_data.error)
    assert len(table_rows(client, "preprocessed_posts", SAMPLE_DAY)) == 1_190  # rolled back
