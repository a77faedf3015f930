"""Distilling: deterministic, evaluated on a held-out split, good on real Perspective scores."""

import json

import numpy as np
import pytest

from bsky_assets.successor.distill import NotEnoughHistory, distill
from bsky_assets.successor.history import import_history, parse_column_map
from bsky_assets.successor.model import DistillParams, SuccessorModel
from bsky_assets.successor.registry import resolve_model
from bsky_assets_tests.conftest import PERSPECTIVE_SCORED, shared
from bsky_assets_tests.successor.conftest import synthetic_history, write_csv

PROBES = ["you awful idiot, I hate this", "thank you friend, grateful we did this together"]


def test_same_history_same_model_and_scores(client, tmp_path):
    import_history(client, write_csv(tmp_path / "h.csv", synthetic_history(300)))
    first = distill(client, models_dir=tmp_path / "a")
    second = distill(client, models_dir=tmp_path / "b")
    assert first.model.model_id == second.model.model_id
    assert first.evaluation["attributes"] == second.evaluation["attributes"]
    loaded = SuccessorModel.load(second.path)
    assert np.array_equal(first.model.predict(PROBES), loaded.predict(PROBES))
    other = distill(client, DistillParams(folds=4), models_dir=tmp_path / "c")
    assert other.model.model_id != first.model.model_id  # parameters are part of the id


def test_what_it_learns_and_how_it_reports(client, tmp_path):
    import_history(client, write_csv(tmp_path / "h.csv", synthetic_history(400)))
    result = distill(client, models_dir=tmp_path)
    assert result.model.attributes == ["TOXICITY", "AFFINITY_EXPERIMENTAL"]
    assert result.split.startswith("by time")
    toxic, kind = result.model.predict(PROBES)
    assert toxic[0] > 0.5 > kind[0] and kind[1] > 0.5 > toxic[1]
    assert ((result.model.predict(PROBES) >= 0) & (result.model.predict(PROBES) <= 1)).all()
    metrics = result.evaluation["attributes"]["TOXICITY"]
    assert metrics["n_train"] == 320 and metrics["n_test"] == 80
    assert metrics["auc"] > 0.95 and metrics["spearman"] > 0.6
    assert sum(b["n"] for b in metrics["calibration"]) == 80
    assert metrics["google_share"] == pytest.approx(np.mean(_test_truth(result) >= 0.5), abs=1e-4)
    assert 0 <= metrics["successor_share"] <= 1 and metrics["kappa"] > 0.5
    assert metrics["share_gap"] == pytest.approx(
        100 * abs(metrics["google_share"] - metrics["successor_share"]), abs=0.02
    )
    # Google's own gap: its share in the training part (the oldest 80 %) against the test part
    train_truth = np.array([float(r["prob_toxic"]) for r in synthetic_history(400)[:320]])
    assert metrics["google_train_share"] == pytest.approx(np.mean(train_truth >= 0.5), abs=1e-4)
    assert metrics["google_own_gap"] == pytest.approx(
        100 * abs(metrics["google_train_share"] - metrics["google_share"]), abs=0.02
    )
    fast = result.evaluation["tiers"]["fast"]
    assert fast["max_google_own_gap"] >= fast["mean_google_own_gap"] >= 0
    summary = result.summary()
    assert set(summary) >= {
        "model_id", "tiers", "cross_validation", "learning_curve", "costs", "baseline_test",
    }  # fmt: skip
    assert set(summary["tiers"]["fast"]["attributes"]["TOXICITY"]) >= {
        "n_train", "n_test", "spearman", "auc", "google_share", "successor_share", "kappa",
        "chosen", "google_train_share", "google_own_gap",
    }  # fmt: skip
    assert [p["share"] for p in summary["learning_curve"]] == [0.25, 0.5, 0.75, 1.0]
    assert [p["texts"] for p in summary["learning_curve"]] == [80, 160, 240, 320]
    stored = client.fetch_all(
        f"SELECT model_id, path, tier, evaluation "
        f"FROM {client.qualified('perspective_successor_models')}"
    )
    assert stored == [(result.model.model_id, str(result.path), "fast", result.evaluation)]
    assert resolve_model("latest", tmp_path) == result.path
    assert resolve_model(result.model.model_id, tmp_path) == result.path
    manifest = json.loads((result.path / "model.json").read_text())
    assert manifest["model_id"] == result.model.model_id  # JSON and arrays: no pickle


def _test_truth(result):
    """TOXICITY of the newest 20 % of the synthetic history (the test split, by time)."""
    rows = synthetic_history(400)
    return np.array([float(r["prob_toxic"]) for r in rows[320:]])


def test_too_little_history_is_a_clear_error(client, tmp_path):
    import_history(client, write_csv(tmp_path / "h.csv", synthetic_history(30)))
    with pytest.raises(NotEnoughHistory, match="import Perspective history"):
        distill(client, models_dir=tmp_path)


def test_quality_on_real_perspective_scores(client, tmp_path):
    """1,036 real comments with Google's scores, split by time 80/20 (see the README for the
    figures and why the issue's 0.91 mean AUC needs more than 826 training texts)."""
    import_history(
        client,
        shared(PERSPECTIVE_SCORED),
        column_map=parse_column_map(["prob_constructive=CONSTRUCTIVE_EXPERIMENTAL"]),
    )
    result = distill(client, models_dir=tmp_path)
    evaluation = result.evaluation
    assert len(result.model.attributes) == 11  # every attribute of the 21 the export scores
    assert evaluation["min_auc"] >= 0.76
    assert evaluation["mean_spearman"] >= 0.62
    assert evaluation["mean_auc"] >= 0.88
    # never below the baseline, measured on the same held-out split
    assert evaluation["mean_auc"] >= evaluation["baseline_test"]["mean_auc"] - 0.005
    for metrics in evaluation["attributes"].values():
        # on Perspective's scale; a quantile map keeps prevalence, not the conditional mean,
        # so its MAE is a little above an isotonic fit's (0.05-0.13 here before)
        assert metrics["mae"] < 0.18


def test_models_are_written_atomically_and_a_corrupt_manifest_is_skipped(client, tmp_path, caplog):
    """Issue 20, point 10: a 0-byte model.json (a disk full mid-write) made `latest` crash, and
    re-distilling rewrote a frozen model's files."""
    import_history(client, write_csv(tmp_path / "h.csv", synthetic_history(300)))
    good = distill(client, models_dir=tmp_path)
    broken = tmp_path / "0123456789ab"
    broken.mkdir()
    (broken / "model.json").write_text("")  # what a full disk leaves
    assert resolve_model("latest", tmp_path) == good.path
    assert "skipping" in caplog.text and "0123456789ab" in caplog.text
    frozen = {p.name: p.stat().st_mtime_ns for p in good.path.iterdir()}
    again = distill(client, models_dir=tmp_path)
    assert again.model.model_id == good.model.model_id
    assert {p.name: p.stat().st_mtime_ns for p in good.path.iterdir()} == frozen
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no staging left


def test_a_failed_write_leaves_no_model_behind(tmp_path, monkeypatch):
    from bsky_assets.successor import model as model_module
    from bsky_assets.successor.distill import distill_frame
    from bsky_assets_tests.successor.test_selection import history_frame

    def full_disk(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(model_module, "write_json", full_disk)
    with pytest.raises(OSError, match="No space"):
        distill_frame(history_frame(), DistillParams(hash_features=2**16), tmp_path)
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(FileNotFoundError, match="no distilled model"):
        resolve_model("latest", tmp_path)


def _frame(n: int, dated: bool):
    import hashlib
    from datetime import UTC, datetime, timedelta

    import polars as pl

    start = datetime(2024, 1, 1, tzinfo=UTC)
    return pl.DataFrame(
        {
            "text_sha256": [hashlib.sha256(str(i).encode()).hexdigest() for i in range(n)],
            "scored_at": [start + timedelta(hours=i) if dated else None for i in range(n)],
        },
        schema={"text_sha256": pl.String, "scored_at": pl.Datetime("us", "UTC")},
    )


def test_the_held_out_split_by_time_by_hash_and_auto():
    from bsky_assets.successor.distill import split

    dated = _frame(1_000, dated=True)
    by_time, how = split(dated, DistillParams(split="time"))
    assert by_time.sum() == 200 and by_time[-200:].all() and "time" in how  # the newest fifth
    by_hash, how = split(dated, DistillParams(split="hash"))
    assert by_hash.sum() == 200 and "hash" in how
    assert 50 < by_hash[-500:].sum() < 150  # spread over time, not the newest
    assert (split(dated, DistillParams(split="hash"))[0] == by_hash).all()  # deterministic
    assert not (split(dated, DistillParams(split="hash", seed=1))[0] == by_hash).all()
    assert (split(dated, DistillParams())[0] == by_time).all()  # auto, dated: time
    undated = _frame(1_000, dated=False)
    assert "hash" in split(undated, DistillParams())[1]  # auto, undated: hash
    with pytest.raises(ValueError, match="90 %"):
        split(undated, DistillParams(split="time"))
    with pytest.raises(ValueError, match="split must be"):
        split(dated, DistillParams(split="newest"))
