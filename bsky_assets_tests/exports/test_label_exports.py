"""label_exports against a real Postgres and the project's servers: what the files hold, when a
day is written again, the dictionary, the seam, what the UI shows."""

import json
import os
from datetime import date

import dagster as dg
import duckdb
import pyarrow.parquet as pq
import pytest

from bsky_assets.lib.labelling import store
from bsky_assets.lib.labelling.label_sets import LabelSet
from bsky_assets.perspective.attributes import ATTRIBUTE_COLUMNS, COLUMN_ALIASES
from bsky_assets.perspective.client import GOOGLE_LABELER
from bsky_assets.perspective.labeller import perspective_label_set
from bsky_assets_tests.conftest import SAMPLE_DAY, use_perspective
from bsky_assets_tests.exports.helpers import (
    DATASETS,
    day_file,
    export_event,
    export_only,
    label_day,
    preferred_counts,
    read_day,
)

NEXT_DAY = date(2024, 6, 2)


def test_done_when_duckdb_counts_equal_the_database(defs, landing_root, isolated_exports, client):
    label_day(defs, landing_root, SAMPLE_DAY)
    label_day(defs, landing_root, NEXT_DAY, posts=25)
    for table in ("perspective_labels", "sociopolitical_labels"):
        found = duckdb.sql(
            f"select labeler, count(*) from read_parquet('{isolated_exports}/{table}/*/*.parquet',"
            " hive_partitioning=1) group by 1"
        ).fetchall()
        expected = {}
        for day in (SAMPLE_DAY, NEXT_DAY):
            for labeler, n in preferred_counts(client, table, day).items():
                expected[labeler] = expected.get(labeler, 0) + n
        assert dict(found) == expected and sum(expected.values()) == 42 + 27
    by_day = duckdb.sql(
        f"select partition_date, count(*) from read_parquet("
        f"'{isolated_exports}/posts_labelled/*/*.parquet', hive_partitioning=1) group by 1"
    ).fetchall()
    assert dict(by_day) == {SAMPLE_DAY: 42, NEXT_DAY: 27}


def test_layout_provenance_and_no_text_by_default(defs, landing_root, isolated_exports, client):
    label_day(defs, landing_root, SAMPLE_DAY)
    for dataset in DATASETS:
        folder = day_file(isolated_exports, dataset, SAMPLE_DAY).parent
        assert sorted(p.name for p in folder.iterdir()) == ["part-0.parquet"]
    assert not any((isolated_exports / "_staging").rglob("*.parquet"))
    assert {p.name for p in isolated_exports.iterdir()} >= {*DATASETS, "README.md", "schema.json"}

    posts = read_day(isolated_exports, "posts_labelled", SAMPLE_DAY).to_pylist()
    uris = [p["uri"] for p in posts]
    db_uris = [r[0] for r in client.fetch_all(
        f"SELECT uri FROM {client.qualified('preprocessed_posts')} WHERE partition_date = %s "
        "ORDER BY uri", (SAMPLE_DAY,))]  # fmt: skip
    assert sorted(uris) == db_uris and len(set(uris)) == len(uris)
    assert "text" not in posts[0] and "partition_date" not in posts[0]
    assert {p["cid"] for p in posts} == {None, "bafy"}

    sets = {
        row[0]: row[1:]
        for row in client.fetch_all(
            f"SELECT label_set, labeler_version, emulated, details::text "
            f"FROM {client.qualified('label_sets')}"
        )
    }
    for table in ("perspective_labels", "sociopolitical_labels"):
        rows = read_day(isolated_exports, table, SAMPLE_DAY).to_pylist()
        assert len(rows) == 42
        for row in rows:
            version, emulated, details = sets[row["label_set"]]
            assert row["emulated"] is emulated
            assert json.loads(row["label_set_details"]) == json.loads(details)
            if table == "sociopolitical_labels":
                assert row["labeler_version"] == version  # the configured model
                assert row["prompt_version"]
                if row["was_successfully_labeled"]:
                    assert row["llm_model_name"]  # the model that answered
        short = next(r for r in rows if r["uri"].endswith("-short"))
        assert short["was_successfully_labeled"] is False
        assert short["reason"] == "text_too_short"
    perspective = read_day(isolated_exports, "perspective_labels", SAMPLE_DAY).to_pylist()
    scored = [r for r in perspective if r["was_successfully_labeled"]]
    assert all(r["emulated"] for r in scored)  # the synthetic server is never Google
    assert all(r["prob_constructive"] == r["prob_reasoning"] for r in scored)
    wide = {p["uri"]: p for p in posts}
    for row in scored:  # posts_labelled carries the same preferred row, prefixed
        assert wide[row["uri"]]["perspective_labels__prob_toxic"] == row["prob_toxic"]
        assert wide[row["uri"]]["perspective_labels__labeler"] == row["labeler"]


def test_text_only_when_the_group_turns_it_on(defs, landing_root, isolated_exports, client):
    label_day(defs, landing_root, SAMPLE_DAY)
    labels = day_file(isolated_exports, "perspective_labels", SAMPLE_DAY)
    before = labels.stat().st_mtime_ns
    os.environ["BSKY_EXPORT_TEXT"] = "true"
    metadata = export_event(export_only(defs, SAMPLE_DAY)).metadata
    assert metadata["text_included"].value is True
    posts = read_day(isolated_exports, "posts_labelled", SAMPLE_DAY).to_pylist()
    texts = dict(client.fetch_all(
        f"SELECT uri, text FROM {client.qualified('preprocessed_posts')} "
        "WHERE partition_date = %s", (SAMPLE_DAY,)))  # fmt: skip
    assert {p["uri"]: p["text"] for p in posts} == texts
    assert labels.stat().st_mtime_ns == before  # only posts_labelled changed
    assert "Post text is included" in (isolated_exports / "README.md").read_text()


def test_an_unchanged_day_is_left_and_a_changed_day_written_again(
    defs, landing_root, isolated_exports, client, serve
):
    first = export_event(label_day(defs, landing_root, SAMPLE_DAY))
    files = {d: day_file(isolated_exports, d, SAMPLE_DAY) for d in DATASETS}
    stamps = {d: f.stat().st_mtime_ns for d, f in files.items()}

    again = export_only(defs, SAMPLE_DAY)
    assert export_event(again).metadata["files_written"].value == 0
    assert {d: f.stat().st_mtime_ns for d, f in files.items()} == stamps
    version = again.get_asset_materialization_events()[0].step_materialization_data
    assert (
        version.materialization.tags["dagster/data_version"] == first.tags["dagster/data_version"]
    )

    # A re-labelled post (same label_timestamp: the row itself changed) is exported again.
    uri = client.fetch_all(
        f"SELECT uri FROM {client.qualified('perspective_labels')} WHERE partition_date = %s "
        "AND was_successfully_labeled ORDER BY uri LIMIT 1",
        (SAMPLE_DAY,),
    )[0][0]
    client.execute(
        f"UPDATE {client.qualified('perspective_labels')} SET prob_toxic = 0.987 WHERE uri = %s",
        (uri,),
    )
    changed = export_event(export_only(defs, SAMPLE_DAY))
    assert changed.tags["dagster/data_version"] != first.tags["dagster/data_version"]
    status = dict(
        line.split(" | ")[0::3]
        for line in [row.strip("| ") for row in changed.metadata["files"].value.splitlines()[2:]]
    )
    assert status == {
        "perspective_labels": "written",
        "sociopolitical_labels": "unchanged",
        "valence_labels": "unchanged",
        "posts_labelled": "written",
    }
    rows = read_day(isolated_exports, "perspective_labels", SAMPLE_DAY).to_pylist()
    assert next(r for r in rows if r["uri"] == uri)["prob_toxic"] == 0.987

    # A new label set (another scorer) becomes the preferred row, and the files follow.
    other = serve.perspective(scorer="profanity-check")
    use_perspective(other.url)
    job = defs.resolve_implicit_global_asset_job_def().get_subset(
        asset_selection={dg.AssetKey("perspective_labels")}
    )
    assert job.execute_in_process(partition_key=SAMPLE_DAY.isoformat()).success
    export_only(defs, SAMPLE_DAY)
    labelers = {r["labeler"] for r in read_day(isolated_exports, "perspective_labels", SAMPLE_DAY)
                .to_pylist() if r["was_successfully_labeled"]}  # fmt: skip
    assert labelers == set(preferred_counts(client, "perspective_labels", SAMPLE_DAY)) - {
        "bsky_assets.valid_posts"
    }
    assert any("profanity" in labeler for labeler in labelers)


def test_the_dictionary_matches_the_files(defs, landing_root, isolated_exports):
    label_day(defs, landing_root, SAMPLE_DAY)
    document = json.loads((isolated_exports / "schema.json").read_text())
    readme = (isolated_exports / "README.md").read_text()
    for dataset in DATASETS:
        schema = pq.read_schema(day_file(isolated_exports, dataset, SAMPLE_DAY))
        columns = document["datasets"][dataset]["columns"]
        assert [(c["name"], c["type"]) for c in columns] == [(f.name, str(f.type)) for f in schema]
        for column, field in zip(columns, schema, strict=True):
            assert field.metadata[b"description"].decode() == column["meaning"]
            assert f"| `{column['name']}` | {column['type']} |" in readme
            assert column["meaning"], column["name"]
    perspective = {c["name"]: c for c in document["datasets"]["perspective_labels"]["columns"]}
    for attribute, column in ATTRIBUTE_COLUMNS.items():
        assert perspective[column]["produced_by"] == f"Perspective {attribute}"
        assert "0.5" in perspective[column]["scale"]
    for column, attribute in COLUMN_ALIASES.items():
        assert attribute in perspective[column]["produced_by"]
        assert "alias" in perspective[column]["produced_by"]
    assert document["conventions"]["threshold"] == 0.5
    assert "The 0.5 convention" in readme and "2026-12-31" in readme


def test_the_sunset_seam_is_computed_from_the_rows(defs, landing_root, isolated_exports, client):
    label_day(defs, landing_root, SAMPLE_DAY)
    # The first day's scores become Google's (as they were before the sunset) ...
    google = perspective_label_set(GOOGLE_LABELER, "v1alpha1", "perspective-22@test")
    assert isinstance(google, LabelSet) and not google.emulated
    store.register_label_set(client, google.row())
    client.execute(
        f"UPDATE {client.qualified('perspective_labels')} SET label_set = %s, labeler = %s, "
        "labeler_version = 'v1alpha1' WHERE partition_date = %s AND was_successfully_labeled",
        (google.id, GOOGLE_LABELER, SAMPLE_DAY),
    )
    export_only(defs, SAMPLE_DAY)
    label_day(defs, landing_root, NEXT_DAY)  # ... the next day's come from an emulation
    seam = json.loads((isolated_exports / "schema.json").read_text())["seam"]
    summary = seam["by_dataset"]["perspective_labels"]
    assert summary["last_day_of_real_service"] == SAMPLE_DAY.isoformat()
    assert summary["first_day_emulated"] == NEXT_DAY.isoformat()
    assert summary["days_with_both"] == []
    real = [f for f in summary["labellers"] if not f["emulated"]]
    assert real == [
        {"labeler": GOOGLE_LABELER, "emulated": False, "first_day": SAMPLE_DAY.isoformat(),
         "last_day": SAMPLE_DAY.isoformat(), "days": 1, "labelled_rows": 41}
    ]  # fmt: skip
    assert seam["by_day"][NEXT_DAY.isoformat()]["perspective_labels"][0]["emulated"] is True
    readme = (isolated_exports / "README.md").read_text()
    assert f"last day with the real service's rows: {SAMPLE_DAY}" in readme
    assert f"first day with emulated rows: {NEXT_DAY}" in readme


def test_what_the_ui_shows(defs, landing_root, isolated_exports):
    event = export_event(label_day(defs, landing_root, SAMPLE_DAY))
    metadata = event.metadata
    assert metadata["destination"].value == str(isolated_exports)
    assert isinstance(metadata["dictionary"], dg.PathMetadataValue)
    assert metadata["dictionary"].value == str(isolated_exports / "README.md")
    for dataset in DATASETS:
        path = day_file(isolated_exports, dataset, SAMPLE_DAY)
        assert metadata[f"{dataset}_path"].value == str(path)
        assert metadata[f"{dataset}_rows"].value == pq.read_metadata(path).num_rows == 42
        assert metadata[f"{dataset}_bytes"].value == path.stat().st_size
    assert event.tags["dagster/data_version"]
    assert metadata["files_written"].value == len(DATASETS)


def test_a_label_row_whose_post_left_the_day_stays_in_its_table(
    defs, landing_root, isolated_exports, client
):
    label_day(defs, landing_root, SAMPLE_DAY)
    gone = f"at://did:plc:test/app.bsky.feed.post/{SAMPLE_DAY}-3"
    for table in ("preprocessed_posts", "valid_posts"):
        client.execute(f"DELETE FROM {client.qualified(table)} WHERE uri = %s", (gone,))
    export_only(defs, SAMPLE_DAY)
    labels = read_day(isolated_exports, "perspective_labels", SAMPLE_DAY).to_pylist()
    assert gone in {r["uri"] for r in labels}
    assert len(labels) == sum(preferred_counts(client, "perspective_labels", SAMPLE_DAY).values())
    posts = read_day(isolated_exports, "posts_labelled", SAMPLE_DAY)
    assert gone not in posts.column("uri").to_pylist() and posts.num_rows == 41


def test_a_day_before_any_labelling_is_a_clear_failure(defs):
    job = defs.resolve_implicit_global_asset_job_def().get_subset(
        asset_selection={dg.AssetKey("label_exports")}
    )
    with pytest.raises(dg.Failure, match="materialize the label assets first"):
        job.execute_in_process(partition_key=SAMPLE_DAY.isoformat())
