"""intergroup_labels: a second LLM task through the same engine, client, batch mode, label sets and
evaluation as sociopolitical_labels; off unless BSKY_LABELLERS names it."""

import csv
from datetime import date
from pathlib import Path

import dagster as dg
import pytest

from bsky_assets.definitions import build_definitions
from bsky_assets.evaluation.assets import evaluation_assets
from bsky_assets.evaluation.hand_labels import import_hand_labels
from bsky_assets.intergroup.task import INTERGROUP, INTERGROUP_LABELLER
from bsky_assets.llm.resource import LLMResource
from bsky_assets.posts.resource import LandingFolder
from bsky_assets.servers.llm import answers
from bsky_assets.servers.llm.answers import intergroup
from bsky_assets.servers.llm.batches import BatchOptions
from bsky_assets_tests.conftest import materialize_day, post, use_llm, write_jsonl

DAY = date(2024, 11, 5)
TEXTS = {
    "a": "Democrats and Republicans blame each other again for the shutdown.",
    "b": "Immigrants are treated worse than tourists at this border.",
    "c": "Made sourdough for the first time this weekend and it actually rose!",
    "d": "Billionaires want workers to pay for their tax cuts.",
    "e": "The sunset over the lake tonight was unreal.",
}


def materialize(postgres, landing_root, **tuning):
    defs = build_definitions(
        postgres=postgres,
        landing=LandingFolder(path=str(landing_root)),
        llm=LLMResource(requests_per_minute=600_000, **tuning),
        labellers=(INTERGROUP_LABELLER,),
    )
    result = materialize_day(defs, DAY, upstream_of="intergroup_labels")
    assert result.success
    (event,) = result.asset_materializations_for_node("intergroup_labels")
    return {k: v.value for k, v in event.metadata.items()}


def rows(client) -> dict[str, tuple]:
    found = client.fetch_all(
        "SELECT uri, was_successfully_labeled, is_intergroup, llm_model_name, prompt_version, "
        f"llm_batch_id FROM {client.qualified('intergroup_labels')}"
    )
    return {uri.rsplit("/", 1)[1]: rest for uri, *rest in found}


def land(landing_root: Path) -> None:
    write_jsonl(landing_root / DAY.isoformat() / "a.jsonl", [post(k, t) for k, t in TEXTS.items()])


def test_a_day_is_labelled_and_a_rerun_sends_nothing(postgres, client, landing_root, serve):
    land(landing_root)
    server = serve.llm()
    use_llm(server.url)
    metadata = materialize(postgres, landing_root, posts_per_prompt=2)

    labels = rows(client)
    assert set(labels) == set(TEXTS)
    for key, (ok, is_intergroup, model, version, batch) in labels.items():
        assert ok and is_intergroup == intergroup.label(TEXTS[key])
        assert model == answers.MODEL_NAME and version == INTERGROUP.prompt_version
        assert batch is None
    assert [labels[k][1] for k in "abcde"] == [True, True, False, True, False]
    assert metadata["posts_by_intergroup"] == {"intergroup": 3, "not intergroup": 2}
    assert metadata["prompt_version"] == INTERGROUP.prompt_version
    assert server.stats["completions"] == 3  # five posts, two a prompt
    [(details,)] = client.fetch_all(
        f"SELECT details FROM {client.qualified('label_sets')} WHERE label_set = %s",
        (metadata["label_set"],),
    )
    assert details["prompt_version"] == INTERGROUP.prompt_version

    again = materialize(postgres, landing_root, posts_per_prompt=2)
    assert again["posts_sent"] == 0 and server.stats["completions"] == 3


def test_batch_mode_labels_the_day_through_the_batch_api(
    postgres, client, landing_root, serve, monkeypatch
):
    monkeypatch.setenv("BSKY_LLM_MODE", "batch")
    monkeypatch.setenv("BSKY_LLM_BATCH_POLL_SECONDS", "0.1")
    land(landing_root)
    server = serve.llm(batches=BatchOptions(completion_delay_seconds=0.1))
    use_llm(server.url)
    metadata = materialize(postgres, landing_root)

    labels = rows(client)
    assert all(ok and batch for ok, _, _, _, batch in labels.values())  # every post: a batch
    assert server.stats["batches_created"] == 1 and server.stats.get("completions", 0) == 0
    assert metadata["llm_mode"] == "batch" and metadata["batches"]["posts_labelled"] == 5


def test_it_is_evaluated_against_its_own_hand_labels(postgres, client, serve, tmp_path):
    path = tmp_path / "intergroup.csv"
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["text", "is_intergroup"])
        writer.writerows([(TEXTS["a"], "yes"), (TEXTS["c"], "no"), (TEXTS["e"], "yes")])
    report = import_hand_labels(INTERGROUP, client, path)
    assert report.added == 3 and not report.rejects
    use_llm(serve.llm().url)
    _, asset = evaluation_assets(INTERGROUP)
    with dg.instance_for_test() as instance:
        result = dg.materialize(
            [asset],
            resources={"postgres": postgres, "llm": LLMResource(requests_per_minute=600_000)},
            instance=instance,
        )
    (event,) = result.asset_materializations_for_node("intergroup_evaluation")
    metadata = {k: v.value for k, v in event.metadata.items()}
    # the heuristic says yes, no, no: one of the two hand-labelled yeses is missed
    assert metadata["intergroup_precision"] == 1.0 and metadata["intergroup_recall"] == 0.5
    assert metadata["intergroup_accuracy"] == pytest.approx(2 / 3, abs=1e-4)
    assert "is_intergroup" in metadata["confusion"] and metadata["hand_labels"] == 3


def test_it_is_off_unless_the_group_turns_it_on(monkeypatch):
    monkeypatch.delenv("BSKY_LABELLERS", raising=False)
    default = build_definitions()
    keys = {k.to_user_string() for k in default.resolve_asset_graph().get_all_asset_keys()}
    assert "intergroup_labels" not in keys and "valence_labels" in keys
    assert "Off: intergroup" in default.resolve_job_def("label_posts").description

    monkeypatch.setenv("BSKY_LABELLERS", "perspective,sociopolitical,valence,intergroup")
    turned_on = build_definitions()
    keys = {k.to_user_string() for k in turned_on.resolve_asset_graph().get_all_asset_keys()}
    assert {"intergroup_labels", "intergroup_evaluation", "intergroup_hand_labels"} <= keys
    job = turned_on.resolve_job_def("label_posts")
    assert "intergroup" in job.description.split("Labellers on:")[1].split(".")[0]
    assert dg.AssetKey("intergroup_labels") in job.asset_layer.selected_asset_keys

    monkeypatch.setenv("BSKY_LABELLERS", "perspective,nonsense")
    with pytest.raises(ValueError, match="nonsense"):
        build_definitions()
