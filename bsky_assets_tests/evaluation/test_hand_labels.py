"""`bsky-assets eval import-hand-labels`: by uri or by text, idempotent, corrections update."""

import csv
import subprocess
import sys
from datetime import date
from pathlib import Path

import dagster as dg

from bsky_assets.evaluation.hand_labels import import_hand_labels, load_hand_labels
from bsky_assets.posts.tables import PREPROCESSED_POSTS
from bsky_assets.sociopolitical.task import SOCIOPOLITICAL
from bsky_assets_tests.conftest import subprocess_env

URI = "at://did:plc:hand/app.bsky.feed.post/1"


def write(path: Path, rows: list[tuple]) -> Path:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["uri", "text", "is_sociopolitical", "political_ideology_label"])
        writer.writerows(rows)
    return path


def land(client, uri: str, text: str) -> None:
    client.ensure_table(PREPROCESSED_POSTS)
    client.execute(
        f"INSERT INTO {client.qualified(PREPROCESSED_POSTS.name)} (partition_date, uri, text, "
        "created_at, preprocessing_timestamp, batch_id, source_file, line_number) "
        "VALUES (%s, %s, %s, now(), now(), 'b', 'f', 1)",
        (date(2024, 6, 1), uri, text),
    )


def test_import_by_uri_or_text_is_idempotent_and_corrections_update(client, tmp_path):
    land(client, URI, "Taxes on the rich should go up.")
    path = write(
        tmp_path / "hand.csv",
        [
            (URI, "", "true", "left"),  # by uri: the landed text
            ("", "Our cat sleeps all day.", "false", ""),  # by text
            ("at://did:plc:hand/app.bsky.feed.post/unknown", "", "true", "left"),
        ],
    )
    report = import_hand_labels(SOCIOPOLITICAL, client, path)
    assert (report.added, report.updated, report.unchanged) == (2, 0, 0)
    assert report.rejects == {"uri not found among landed posts": 1}
    by_text = {label.text: label for label in load_hand_labels(SOCIOPOLITICAL, client)}
    assert by_text["Taxes on the rich should go up."].uri == URI
    assert by_text["Our cat sleeps all day."].values["is_sociopolitical"] is False

    again = import_hand_labels(SOCIOPOLITICAL, client, path)
    assert (again.added, again.updated, again.unchanged) == (0, 0, 2)

    write(path, [(URI, "", "true", "moderate"), ("", "Our cat sleeps all day.", "false", "")])
    corrected = import_hand_labels(SOCIOPOLITICAL, client, path)
    assert (corrected.added, corrected.updated, corrected.unchanged) == (0, 1, 1)
    labels = load_hand_labels(SOCIOPOLITICAL, client)
    assert len(labels) == 2
    assert {label.values["political_ideology_label"] for label in labels} == {"moderate", None}


def test_the_command_reports_rejects_and_records_the_import(
    client, tmp_path, database_url, db_schema
):
    path = write(tmp_path / "hand.csv", [("", "Vote on Tuesday.", "true", "unclear"),
                                         ("", "hi", "perhaps", "")])  # fmt: skip
    env = subprocess_env(
        database_url, BSKY_DB_SCHEMA=db_schema, DAGSTER_HOME=str(tmp_path / "home")
    )
    done = subprocess.run(
        [str(Path(sys.executable).parent / "bsky-assets"), "eval", "import-hand-labels",
         str(path)],
        env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    assert "2 rows read; 1 added, 0 updated, 0 already known, 1 rejected" in done.stdout
    assert "line 3: is_sociopolitical is not true/false" in done.stdout
    assert len(load_hand_labels(SOCIOPOLITICAL, client)) == 1
    with dg.DagsterInstance.from_config(str(tmp_path / "home")) as instance:
        event = instance.get_latest_materialization_event(dg.AssetKey("hand_labels"))
    assert event is not None  # the UI's hand_labels asset shows the import
    metadata = event.asset_materialization.metadata
    assert metadata["added"].value == 1 and metadata["rejected"].value == {
        "is_sociopolitical is not true/false": 1
    }
