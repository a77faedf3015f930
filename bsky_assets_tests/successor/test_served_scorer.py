"""The successor behind the Perspective-compatible server, through the real google client."""

import pytest

from bsky_assets.perspective.client import Comment, PerspectiveClient, PerspectiveSettings
from bsky_assets.perspective.scorers import load_scorer
from bsky_assets.successor.distill import distill
from bsky_assets.successor.history import import_history
from bsky_assets.successor.scorer import DistilledScorer
from bsky_assets_tests.successor.conftest import synthetic_history, write_csv


@pytest.fixture
def model(client, tmp_path, monkeypatch):
    monkeypatch.setenv("BSKY_DATA_DIR", str(tmp_path))  # where `latest` is looked up
    import_history(client, write_csv(tmp_path / "h.csv", synthetic_history(300)))
    return distill(client)


def test_latest_and_an_id_load_the_same_scorer(model):
    latest = load_scorer("distilled:latest")
    by_id = load_scorer(f"distilled:{model.model.model_id}")
    by_path = load_scorer(f"distilled:{model.path}")
    assert isinstance(latest, DistilledScorer)
    assert latest.version == by_id.version == by_path.version == model.model.model_id
    assert latest.labeler == f"bsky-perspective-server/distilled-{model.model.model_id} (model)"
    assert latest.supported_attributes == {"TOXICITY", "AFFINITY_EXPERIMENTAL"}


def test_served_over_http_to_the_real_google_client(model, serve):
    server = serve.perspective(scorer="distilled:latest")
    client = PerspectiveClient(
        PerspectiveSettings(base_url=server.url, requests_per_second=10_000, max_retries=0)
    )
    assert client.labeler == f"bsky-perspective-server/distilled-{model.model.model_id} (model)"
    assert client.labeler_version == model.model.model_id
    comments = [
        Comment("toxic", "you awful idiot, I hate this and everyone in it"),
        Comment("kind", "thank you friend, so grateful we did this together"),
    ]
    results = {r.key: r for batch in client.analyze(comments) for r in batch}
    toxic, kind = results["toxic"], results["kind"]
    assert set(toxic.scores) == {"TOXICITY", "AFFINITY_EXPERIMENTAL"}  # what it was trained on
    assert len(toxic.unscored) == 19  # the rest: unsupported, never invented
    assert toxic.scores["TOXICITY"] > 0.5 > kind.scores["TOXICITY"]
    assert kind.scores["AFFINITY_EXPERIMENTAL"] > 0.5 > toxic.scores["AFFINITY_EXPERIMENTAL"]
    expected = model.model.predict([c.text for c in comments])
    assert toxic.scores["TOXICITY"] == pytest.approx(expected[0][0], abs=1e-6)
