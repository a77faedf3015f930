"""sociopolitical_evaluation: the configured labeler scored on the hand labels, label sets side
by side, through the real openai client and the local server."""

import dataclasses

import dagster as dg
import pytest

from bsky_assets.evaluation.assets import evaluation_assets
from bsky_assets.evaluation.hand_labels import import_hand_labels
from bsky_assets.llm.resource import LLMResource
from bsky_assets.sociopolitical.task import SOCIOPOLITICAL
from bsky_assets_tests.conftest import use_llm
from bsky_assets_tests.evaluation.test_metrics import write_csv


def evaluate(postgres, instance, task=SOCIOPOLITICAL):
    _, asset = evaluation_assets(task)
    return dg.materialize(
        [asset],
        resources={"postgres": postgres, "llm": LLMResource(requests_per_minute=600_000)},
        instance=instance,
        selection=[asset],
    )


def test_without_hand_labels_nothing_is_stored_and_the_log_says_how(postgres, serve):
    use_llm(serve.llm().url)
    with dg.instance_for_test() as instance:
        result = evaluate(postgres, instance)
        assert result.success
        assert result.asset_materializations_for_node("sociopolitical_evaluation") == []
        logs = " ".join(e.user_message for e in instance.all_logs(result.run_id))
    assert "bsky-assets eval import-hand-labels" in logs


def test_each_prompt_is_evaluated_and_shown_beside_the_others(postgres, client, serve, tmp_path):
    import_hand_labels(SOCIOPOLITICAL, client, write_csv(tmp_path / "hand.csv"))
    use_llm(serve.llm().url)
    with dg.instance_for_test() as instance:
        first = evaluate(postgres, instance)
        system_b = SOCIOPOLITICAL.system_prompt + "\nWhen unsure, prefer is_sociopolitical false."
        task_b = dataclasses.replace(SOCIOPOLITICAL, system_prompt=system_b)
        version_b = task_b.prompt_version
        second = evaluate(postgres, instance, task_b)
        events = instance.fetch_materializations(
            dg.AssetKey("sociopolitical_evaluation"), limit=10
        ).records

    a, b = (
        {k: v.value for k, v in r.asset_materializations_for_node("sociopolitical_evaluation")[
            0].metadata.items()}
        for r in (first, second)
    )  # fmt: skip
    assert len(events) == 2  # one materialization per labeler
    assert a["label_set"] != b["label_set"] and b["prompt_version"] == version_b
    # The heuristic's known answers (see test_evaluation): civic F1 0.75, lean accuracy 4/6.
    for metadata in (a, b):
        assert metadata["civic_f1"] == pytest.approx(0.75)
        assert metadata["lean_accuracy"] == pytest.approx(4 / 6, abs=1e-4)
        assert metadata["llm_model"] == "bsky-keyword-heuristic-not-an-llm"
        assert metadata["hand_labels"] == 6 and metadata["failed"] == 0
        assert "| left | 1 | 0 | 0 | 0 | 1 |" in metadata["confusion"]
        assert metadata["per_class_scores"].startswith("![")
    assert a["label_set"] in b["all_label_sets"] and b["label_set"] in b["all_label_sets"]
    assert f"{b['label_set']} (this run)" in b["all_label_sets"]
    stored = client.fetch_all(
        f"SELECT label_set, prompt_version FROM {client.qualified('sociopolitical_evaluations')} "
        "ORDER BY evaluated_at"
    )
    assert stored == [(a["label_set"], a["prompt_version"]), (b["label_set"], version_b)]
