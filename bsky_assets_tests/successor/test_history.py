"""Importing Perspective history: mapping, rejects with reasons, idempotence, both formats."""

import polars as pl
import pytest

from bsky_assets.successor.history import (
    HistoryFileError,
    import_history,
    parse_column_map,
    training_frame,
)
from bsky_assets_tests.conftest import PERSPECTIVE_SCORED, shared
from bsky_assets_tests.successor.conftest import synthetic_history, write_csv


def history_rows(client) -> list[tuple]:
    return client.fetch_all(
        f"SELECT attribute, count(*) FROM {client.qualified('perspective_history')} "
        "GROUP BY 1 ORDER BY 1"
    )


def test_rows_without_text_or_with_bad_scores_are_rejected_and_counted(client, tmp_path):
    rows = [
        {"text": "a fine comment about trains", "prob_toxic": "0.2", "prob_nuance": "0.4"},
        {"text": "", "prob_toxic": "0.3", "prob_nuance": "0.1"},
        {"text": "   ", "prob_toxic": "0.3", "prob_nuance": "0.1"},
        {"text": "too toxic to be true", "prob_toxic": "1.7", "prob_nuance": "0.1"},
        {"text": "negative nuance", "prob_toxic": "0.1", "prob_nuance": "-0.2"},
        {"text": "not a number", "prob_toxic": "high", "prob_nuance": "0.1"},
        {"text": "nothing scored", "prob_toxic": "", "prob_nuance": ""},
        {"text": "only nuance", "prob_toxic": "", "prob_nuance": "0.9"},
    ]
    report = import_history(client, write_csv(tmp_path / "h.csv", rows))
    assert report.rows_read == 8 and report.rows_imported == 2
    assert dict(report.rejects) == {
        "missing_text": 2,
        "score_out_of_range": 2,
        "not_a_number": 1,
        "no_scores": 1,
    }
    assert {e["row"] for e in report.reject_examples} == {3, 4, 5, 6, 7, 8}  # CSV line numbers
    assert history_rows(client) == [("NUANCE_EXPERIMENTAL", 2), ("TOXICITY", 1)]


def test_importing_the_same_scores_twice_adds_nothing(client, tmp_path):
    path = write_csv(tmp_path / "h.csv", synthetic_history(50))
    first = import_history(client, path)
    second = import_history(client, path)
    assert first.scores_added == 100 and not first.already_imported
    assert second.scores_added == 0 and second.scores_already_known == 100
    assert second.already_imported
    parquet = tmp_path / "h.parquet"
    pl.read_csv(path).write_parquet(parquet)  # the same scores in another format
    assert import_history(client, parquet).scores_added == 0
    assert history_rows(client) == [("AFFINITY_EXPERIMENTAL", 50), ("TOXICITY", 50)]


def test_ambiguous_and_foreign_columns_need_an_explicit_mapping(client, tmp_path):
    rows = [{"body": "a comment", "prob_constructive": "0.6", "prob_power_appeal": "0.2"}]
    path = write_csv(tmp_path / "h.csv", rows)
    with pytest.raises(HistoryFileError, match="no 'text' column"):
        import_history(client, path)
    with pytest.raises(HistoryFileError, match="no score column"):
        import_history(client, path, text_column="body")
    mapping = parse_column_map(
        [
            "prob_constructive=CONSTRUCTIVE_EXPERIMENTAL",
            "prob_power_appeal=POWER_APPEAL_EXPERIMENTAL",
        ]
    )
    report = import_history(client, path, text_column="body", column_map=mapping)
    assert report.column_map == {
        "prob_constructive": "CONSTRUCTIVE_EXPERIMENTAL",
        "prob_power_appeal": "POWER_APPEAL_EXPERIMENTAL",
    }
    assert history_rows(client) == [
        ("CONSTRUCTIVE_EXPERIMENTAL", 1),
        ("POWER_APPEAL_EXPERIMENTAL", 1),
    ]
    with pytest.raises(HistoryFileError, match="COLUMN=ATTRIBUTE_NAME"):
        parse_column_map(["prob_x=lowercase"])


def test_the_real_export_keeps_its_traps_out(client):
    """The shared Reddit export: prob_constructive is a genuine CONSTRUCTIVE score there and
    prob_power_appeal is outside the 22-column set; neither lands under a wrong name."""
    report = import_history(client, shared(PERSPECTIVE_SCORED))
    assert report.rows_read == 1036 and not report.rejects
    assert "prob_constructive" not in report.column_map
    assert any("prob_constructive skipped" in w for w in report.warnings)
    assert "prob_power_appeal" in report.ignored_columns
    attributes = dict(history_rows(client))
    assert "REASONING_EXPERIMENTAL" not in attributes and len(attributes) == 11
    frame = training_frame(client)
    assert frame.height == 1033  # three texts appear twice in the export
    assert frame.get_column("scored_at").is_not_null().all()  # created_utc, as dates


def test_one_bad_row_never_sinks_an_import(client, tmp_path):
    """Issue 20, point 12 and issue 21, point 11: a NUL in a text or an absurd timestamp
    aborted the whole import; conflicting duplicate scores and merged duplicate texts were
    resolved without a count."""
    rows = [
        {"text": f"a good comment number {i}", "created_utc": str(1_700_000_000 + i),
         "prob_toxic": "0.2"}
        for i in range(20)
    ]  # fmt: skip
    rows += [
        {"text": "nul \x00 inside", "created_utc": "1700000000", "prob_toxic": "0.1"},
        {"text": "from the far future", "created_utc": "9e12", "prob_toxic": "0.1"},
        {"text": "from the far past", "created_utc": "-9e12", "prob_toxic": "0.1"},
        {"text": "a good comment number 3", "created_utc": "1700000003", "prob_toxic": "0.2"},
        {"text": "a good comment number 4", "created_utc": "1700000004", "prob_toxic": "0.9"},
    ]
    report = import_history(client, write_csv(tmp_path / "h.csv", rows))
    assert report.rows_read == 25
    assert dict(report.rejects) == {"text_contains_nul": 1, "timestamp_out_of_range": 2}
    assert report.rows_imported == 22
    assert report.duplicate_texts_merged == 2  # numbers 3 and 4 came twice
    assert report.conflicting_scores == 1  # number 4: 0.2 then 0.9, the first kept
    assert report.scores_added == 20
    assert report.as_dict()["duplicate_texts_merged"] == 2
    kept = client.fetch_all(
        f"SELECT score FROM {client.qualified('perspective_history')} WHERE text = %s",
        ("a good comment number 4",),
    )
    assert kept == [(0.2,)]
