"""`bsky-assets eval sociopolitical` on a small hand-labelled set the test writes."""

import csv
import subprocess
import sys
from pathlib import Path

import pytest

from bsky_assets.evaluation.hand_labels import read_hand_labels
from bsky_assets.evaluation.metrics import evaluate
from bsky_assets.llm.client import LLMSettings, LLMTaskClient
from bsky_assets.sociopolitical.task import SOCIOPOLITICAL
from bsky_assets_tests.conftest import subprocess_env

# The heuristic's answers are known from its documented word lists:
#  - "Secure the border ..." → (True, right); "Medicare for all ..." → (True, left)
#  - "Both parties ... compromise ..." → (True, moderate); the cat → (False, None)
#  - "The debate ..." → (True, unclear)
HAND_LABELS = [
    ("Secure the border now, the policy failed.", "true", "right"),  # both right
    ("Medicare for all would save lives.", "true", "left"),  # both right
    ("Both parties should compromise on the bill.", "true", "moderate"),  # both right
    ("Our cat has decided the box is hers.", "false", ""),  # both right
    ("The debate last night was long.", "false", ""),  # model: civic/unclear → civic FP
    ("Housing costs are crushing young renters.", "true", "left"),  # model: not civic → FN
]


def write_csv(path: Path) -> Path:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["text", "is_sociopolitical", "political_ideology_label"])
        writer.writerows(HAND_LABELS)
    return path


def test_metrics_against_known_answers(serve, tmp_path) -> None:
    server = serve.llm()
    client = LLMTaskClient(
        LLMSettings(base_url=server.url, requests_per_minute=60_000), SOCIOPOLITICAL
    )
    labels, report = read_hand_labels(SOCIOPOLITICAL, write_csv(tmp_path / "hand.csv"))
    assert not report.rejects
    result = evaluate(client, labels)
    civic, ideology = result.metrics["civic"], result.metrics["ideology"]
    # civic: TP 3, FP 1 (debate), FN 1 (housing), TN 1 (cat)
    assert civic["accuracy"] == pytest.approx(4 / 6, abs=1e-4)
    assert civic["precision"] == civic["recall"] == pytest.approx(0.75)
    assert civic["f1"] == pytest.approx(0.75)
    assert civic["confusion"]["sociopolitical"] == {"sociopolitical": 3, "not": 1}
    confusion = ideology["confusion"]
    assert confusion["left"] == {"left": 1, "right": 0, "moderate": 0, "unclear": 0, "none": 1}
    assert confusion["none"]["unclear"] == 1 and confusion["none"]["none"] == 1
    assert ideology["accuracy"] == pytest.approx(4 / 6, abs=1e-4)
    assert ideology["per_class"]["left"] == {
        "precision": 1.0, "recall": 0.5, "f1": pytest.approx(0.6667, abs=1e-4), "support": 2
    }  # fmt: skip
    assert result.failed == 0 and result.model == "bsky-keyword-heuristic-not-an-llm"
    assert "confusion" in result.report()


def test_bad_hand_labels_are_rejected_with_reasons_never_their_text(tmp_path) -> None:
    path = tmp_path / "bad.csv"
    path.write_text(
        "text,is_sociopolitical,political_ideology_label\n"
        "secret words one,maybe,\n"  # line 2
        "secret words two,true,far-left\n"  # 3
        "secret words three,true,\n"  # 4
        "secret words four,false,left\n"  # 5
        ",true,left\n"  # 6
        "a fine post,true,left\n"  # 7
        "a fine post,false,\n"  # 8: the same post again
    )
    labels, report = read_hand_labels(SOCIOPOLITICAL, path)
    assert [label.text for label in labels] == ["a fine post"]
    assert report.rejects == {
        "is_sociopolitical is not true/false": 1,
        "unknown political_ideology_label": 1,
        "sociopolitical without a political_ideology_label": 1,
        "a political_ideology_label on a post that is not sociopolitical": 1,
        "neither text nor a known uri": 1,
        "the same post again in this file": 1,
    }
    assert report.examples[0] == "line 2: is_sociopolitical is not true/false"
    assert "secret" not in " ".join(report.examples)


@pytest.mark.slow
def test_eval_command_prints_and_stores(serve, tmp_path, database_url, db_schema, client):
    server = serve.llm()
    env = subprocess_env(database_url, OPENAI_BASE_URL=server.url, BSKY_DB_SCHEMA=db_schema)
    completed = subprocess.run(
        [
            str(Path(sys.executable).parent / "bsky-assets"),
            "eval",
            "sociopolitical",
            str(write_csv(tmp_path / "hand.csv")),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert completed.returncode == 0, completed.stderr[-2000:]
    assert "is_sociopolitical   accuracy 0.667" in completed.stdout
    assert "F1 0.750" in completed.stdout
    stored = client.fetch_all(
        f"SELECT model, prompt_version, posts, civic FROM "
        f"{client.qualified('sociopolitical_evaluations')}"
    )
    assert len(stored) == 1
    model, version, posts, civic = stored[0]
    assert (model, posts) == ("bsky-keyword-heuristic-not-an-llm", 6)
    assert civic["f1"] == 0.75 and len(version) == 12
    [(label_set,)] = client.fetch_all(
        f"SELECT label_set FROM {client.qualified('sociopolitical_evaluations')}"
    )
    assert label_set and len(label_set) == 16  # the same label set id the asset records
    assert isinstance(civic, dict)  # jsonb: psycopg hands back the decoded object
