"""Selection by cross-validation: the baseline is a candidate, the choice is the CV argmax,
folds never split a text, and the same history gives the same model and scores."""

import numpy as np
import polars as pl
import pytest
from scipy import sparse
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import Ridge

from bsky_assets.successor.distill import distill_frame
from bsky_assets.successor.features import TFIDF, HashedTfidf, TfidfParams
from bsky_assets.successor.model import DistillParams, SuccessorModel
from bsky_assets.successor.selection import (
    BASELINE,
    CANDIDATES,
    RAW,
    Candidate,
    DualFit,
    cross_validate,
    fold_ids,
)
from bsky_assets_tests.successor.conftest import synthetic_history

PARAMS = DistillParams(hash_features=2**16)


def history_frame(n: int = 300) -> pl.DataFrame:
    rows = synthetic_history(n)
    import hashlib

    return pl.DataFrame(
        {
            "text_sha256": [hashlib.sha256(r["text"].encode()).hexdigest() for r in rows],
            "text": [r["text"] for r in rows],
            "scored_at": pl.Series(
                [int(r["created_utc"]) * 1_000_000 for r in rows], dtype=pl.Int64
            ).cast(pl.Datetime("us", "UTC")),
            "TOXICITY": [float(r["prob_toxic"]) for r in rows],
            "AFFINITY_EXPERIMENTAL": [float(r["prob_affinity"]) for r in rows],
        }
    )


def test_the_baseline_is_always_a_candidate_exactly_as_the_issue_states():
    assert Candidate(TFIDF, 1.0, RAW) == BASELINE
    assert CANDIDATES[0] == BASELINE
    assert len(set(CANDIDATES)) == len(CANDIDATES)


def test_the_dual_solution_is_sklearns_ridge_with_an_intercept():
    texts = [r["text"] for r in synthetic_history(120)]
    y = np.array([float(r["prob_toxic"]) for r in synthetic_history(120)])
    vectorizers = [
        TfidfVectorizer(ngram_range=(1, 2)),
        TfidfVectorizer(analyzer="char_wb", ngram_range=(2, 5)),
    ]
    x = sparse.hstack([v.fit_transform(texts[:100]) for v in vectorizers]).tocsr()
    x_new = sparse.hstack([v.transform(texts[100:]) for v in vectorizers]).tocsr()
    expected = Ridge(alpha=1.0).fit(x, y[:100]).predict(x_new)
    fit = DualFit.fit((x @ x.T).toarray(), y[:100, None], [1.0])
    predicted = fit.predict((x_new @ x.T).toarray(), 1.0)[:, 0]
    assert predicted == pytest.approx(expected, abs=1e-4)  # sklearn: an iterative solver


def test_hashed_tfidf_is_tfidfvectorizer_up_to_collisions():
    texts = [r["text"] for r in synthetic_history(200)]
    hashed = HashedTfidf(TfidfParams()).fit([texts]).transform(texts)
    exact = sparse.hstack(
        [
            TfidfVectorizer(ngram_range=(1, 2)).fit_transform(texts),
            TfidfVectorizer(analyzer="char_wb", ngram_range=(2, 5)).fit_transform(texts),
        ]
    ).tocsr()
    # the same kernel (inner products between texts): what ridge sees
    difference = np.abs((hashed @ hashed.T).toarray() - (exact @ exact.T).toarray())
    assert difference.mean() < 1e-3 and difference.max() < 0.05


def test_folds_are_seeded_and_never_split_a_text():
    shas = [f"{i % 50:064x}" for i in range(200)]  # every text four times
    folds = fold_ids(shas, 5, seed=0)
    by_text = {}
    for sha, fold in zip(shas, folds, strict=True):
        assert by_text.setdefault(sha, fold) == fold
    assert (fold_ids(shas, 5, seed=0) == folds).all()
    assert (fold_ids(shas, 5, seed=1) != folds).any()


def test_the_chosen_configuration_is_the_cv_argmax(tmp_path):
    result = distill_frame(history_frame(), PARAMS, tmp_path)
    cv = result.evaluation["cross_validation"]
    assert BASELINE.name in cv["candidates"]
    for attribute, chosen in cv["chosen"]["fast"].items():
        figures = cv["figures"][attribute]
        fast = [name for name in cv["candidates"] if name.startswith(f"{TFIDF} ")]
        best = max(
            fast,
            key=lambda name: (
                round(figures[name]["auc"], 4),
                round(figures[name]["spearman"], 4),
                -fast.index(name),
            ),
        )
        assert chosen == best
        assert figures[chosen]["auc"] >= figures[BASELINE.name]["auc"]
        assert result.models["fast"].choices[attribute].name == chosen


def test_cross_validation_figures_are_out_of_fold():
    """A text's out-of-fold prediction does not move when its own score changes."""
    frame = history_frame(150)
    texts = frame.get_column("text").to_list()
    tfidf = HashedTfidf(TfidfParams(hash_features=2**16)).fit([texts])
    matrix = tfidf.transform(texts)
    kernel = (matrix @ matrix.T).toarray()
    scores = frame.select("TOXICITY").to_numpy().astype(float)
    folds = fold_ids(frame.get_column("text_sha256").to_list(), 5, 0)
    first = cross_validate({TFIDF: kernel}, scores, ["TOXICITY"], folds, [BASELINE])
    changed = scores.copy()
    changed[0, 0] = 1.0 - changed[0, 0]
    second = cross_validate({TFIDF: kernel}, changed, ["TOXICITY"], folds, [BASELINE])
    assert first.oof[BASELINE][0, 0] == second.oof[BASELINE][0, 0]
    assert not np.allclose(first.oof[BASELINE][1:], second.oof[BASELINE][1:])


def test_same_data_same_model_id_and_scores(tmp_path):
    first = distill_frame(history_frame(), PARAMS, tmp_path / "a")
    second = distill_frame(history_frame(), PARAMS, tmp_path / "b")
    assert first.model.model_id == second.model.model_id
    assert first.evaluation["cross_validation"] == second.evaluation["cross_validation"]
    probes = ["you awful idiot", "thank you friend", "the bus and the river"]
    assert np.array_equal(first.model.predict(probes), second.model.predict(probes))
    assert np.array_equal(
        SuccessorModel.load(second.path).predict(probes), first.model.predict(probes)
    )


def test_a_history_beyond_the_cv_sample_trains_by_conjugate_gradients(tmp_path):
    params = DistillParams(hash_features=2**16, cv_max_texts=120, refit_below=10**6)
    result = distill_frame(history_frame(400), params, tmp_path)
    assert result.evaluation["cross_validation"]["texts"] == 120  # a seeded sample
    training = result.model.training
    assert training["solver"].startswith("conjugate gradients")
    assert training["iterations"] > 0 and "refit_iterations" in training  # refit_below asks
    toxic = result.evaluation["attributes"]["TOXICITY"]
    assert toxic["auc"] > 0.95 and abs(toxic["share_gap"]) < 10
    probes = ["you awful idiot, I hate this", "thank you friend, grateful we did this together"]
    toxicity, affinity = result.model.predict(probes).T
    assert toxicity[0] > 0.5 > toxicity[1] and affinity[1] > 0.5 > affinity[0]


def test_a_history_too_large_for_memory_trains_the_same_model_from_disk(tmp_path):
    params = DistillParams(hash_features=2**16, cv_max_texts=120)
    in_memory = distill_frame(history_frame(400), params, tmp_path / "memory")
    spilled_params = DistillParams(hash_features=2**16, cv_max_texts=120, in_memory_nonzeros=2_000)
    spilled = distill_frame(history_frame(400), spilled_params, tmp_path / "disk")
    assert spilled.model.training["spilled"] and not in_memory.model.training["spilled"]
    probes = ["you awful idiot", "thank you friend", "the bus and the river"]
    assert np.array_equal(in_memory.model.predict(probes), spilled.model.predict(probes))


def test_hashing_on_worker_processes_keeps_every_count_and_its_order(monkeypatch):
    """The TF-IDF fit of a large history hashes its chunks on every core, in tasks smaller than
    a chunk: the idf, the columns seen and the counts kept for the CG (every row, in order) are
    those of one process."""
    from bsky_assets.successor import features

    monkeypatch.setattr(features, "HASHING_TASK_ROWS", 25)
    texts = history_frame(400).get_column("text").to_list()
    chunks = [texts[start : start + 60] for start in range(0, len(texts), 60)]  # 7 chunks
    alone: list[sparse.csr_matrix] = []
    shared: list[sparse.csr_matrix] = []
    one = HashedTfidf(TfidfParams(hash_features=2**16)).fit(chunks, keep=alone.append)
    two = HashedTfidf(TfidfParams(hash_features=2**16)).fit(chunks, keep=shared.append, workers=2)
    assert np.array_equal(one.idf, two.idf) and np.array_equal(one.seen, two.seen)
    assert [m.shape[0] for m in alone] == [len(chunk) for chunk in chunks]
    assert [m.shape[0] for m in shared] == [25, 25, 10] * 6 + [25, 15]
    mine, theirs = sparse.vstack(alone, format="csr"), sparse.vstack(shared, format="csr")
    assert np.array_equal(mine.indptr, theirs.indptr)
    assert np.array_equal(mine.indices, theirs.indices)
    assert np.array_equal(mine.data, theirs.data)
