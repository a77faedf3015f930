"""valence_labels end to end: VADER in the step, a real Postgres, the engine's rows and checks."""

from datetime import date

import pytest
from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

from bsky_assets.definitions import build_definitions
from bsky_assets.posts.resource import LandingFolder
from bsky_assets.valence.labeller import ValenceLabeller, unsupported_language, valence_label
from bsky_assets_tests.conftest import materialize_day, post, write_jsonl

DAY = date(2024, 11, 5)
POSTS = {
    "happy": ("What a wonderful, happy day with great friends!", ["en"]),
    "angry": ("This is a terrible, awful, hateful decision.", ["en-US"]),
    "plain": ("The meeting moved to room four on Tuesday.", None),
    "spanish": ("Qué día tan bonito y feliz en Madrid.", ["es"]),
    "short": ("ok", ["en"]),
}


def materialize(postgres, landing_root):
    defs = build_definitions(
        postgres=postgres,
        landing=LandingFolder(path=str(landing_root)),
        labellers=(ValenceLabeller(),),
    )
    result = materialize_day(defs, DAY, upstream_of="valence_labels")
    assert result.success
    (event,) = result.asset_materializations_for_node("valence_labels")
    checks = {
        c.check_name: c.passed
        for c in result.get_asset_check_evaluations()
        if c.asset_key.path == ["valence_labels"]
    }
    return {k: v.value for k, v in event.metadata.items()}, checks


def test_a_day_is_scored_by_vader_and_a_rerun_sends_nothing(postgres, client, landing_root):
    write_jsonl(
        landing_root / DAY.isoformat() / "a.jsonl",
        [post(key, text, langs=langs) for key, (text, langs) in POSTS.items()],
    )
    metadata, checks = materialize(postgres, landing_root)

    rows = {
        uri.rsplit("/", 1)[1]: rest
        for uri, *rest in client.fetch_all(
            "SELECT uri, was_successfully_labeled, reason, valence_compound, valence_positive, "
            f"valence_label, labeler FROM {client.qualified('valence_labels')}"
        )
    }
    vader = SentimentIntensityAnalyzer()
    for key in ("happy", "angry", "plain"):
        ok, reason, compound, positive, label, labeler = rows[key]
        scores = vader.polarity_scores(POSTS[key][0])
        assert ok and reason is None and labeler == "vader"
        assert (compound, positive) == (scores["compound"], scores["pos"])
        assert label == valence_label(scores["compound"])
    assert rows["happy"][4] == "positive" and rows["angry"][4] == "negative"
    assert rows["plain"][4] == "neutral"  # no langs: scored, and VADER finds it neutral
    assert rows["spanish"][:3] == [False, "language_not_supported: es", None]
    assert rows["short"][:2] == [False, "text_too_short"]  # invalid: never scored
    assert metadata["posts_by_valence"] == {"positive": 1, "neutral": 1, "negative": 1}
    assert metadata["posts_sent"] == 4 and metadata["labeler"] == "vader"
    assert checks == {
        "one_row_per_post": True,
        "failure_rate": True,  # the Spanish post is out of VADER's scope, not a failure
        "compound_in_range": True,
    }
    [(details,)] = client.fetch_all(
        f"SELECT details FROM {client.qualified('label_sets')} WHERE label_set = %s",
        (metadata["label_set"],),
    )
    assert details == {"cutoffs": [-0.05, 0.05], "languages": "en"}

    again, _ = materialize(postgres, landing_root)
    assert again["posts_sent"] == 0 and again["label_set"] == metadata["label_set"]


@pytest.mark.parametrize(
    ("compound", "label"),
    [(0.05, "positive"), (0.0499, "neutral"), (-0.0499, "neutral"), (-0.05, "negative")],
)
def test_the_usual_cutoffs(compound: float, label: str) -> None:
    assert valence_label(compound) == label


def test_only_posts_that_name_no_english_are_unsupported() -> None:
    assert unsupported_language('["es", "pt"]') == "es,pt"
    assert unsupported_language('["es", "en"]') is None
    assert unsupported_language('["en-GB"]') is None
    assert unsupported_language(None) is None and unsupported_language("[]") is None
    assert unsupported_language("not json") is None
