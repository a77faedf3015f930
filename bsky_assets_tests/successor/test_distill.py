"""Distilling: deterministic, evaluated on a held-out split, good on real Perspective scores."""

import json

import numpy as np
import pytest

from bsky_assets.successor.distill import NotEnoughHistory, distill, resolve_model
from bsky_assets.successor.history import import_history, parse_column_map
from bsky_assets.successor.model import DistillParams, SuccessorModel
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
    other = distill(client, DistillParams(alpha=1.0), models_dir=tmp_path / "c")
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
    summary = result.summary()
    assert set(summary) >= {"model_id", "attributes", "mean_auc", "mean_spearman"}
    assert set(summary["attributes"]["TOXICITY"]) == {
        "n_train", "n_test", "spearman", "pearson", "mae", "auc",
    }  # fmt: skip
    stored = client.fetch_all(
        f"SELECT model_id, path, evaluation FROM {client.qualified('perspective_successor_models')}"
    )
    assert stored == [(result.model.model_id, str(result.path), result.evaluation)]
    assert resolve_model("latest", tmp_path) == result.path
    assert resolve_model(result.model.model_id, tmp_path) == result.path
    manifest = json.loads((result.path / "model.json").read_text())
    assert manifest["model_id"] == result.model.model_id  # JSON and arrays: no pickle


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
    assert evaluation["min_auc"] >= 0.80
    assert evaluation["mean_spearman"] >= 0.64
    assert evaluation["mean_auc"] >= 0.89
    for metrics in evaluation["attributes"].values():
        assert metrics["mae"] < 0.15  # calibrated onto Perspective's scale
