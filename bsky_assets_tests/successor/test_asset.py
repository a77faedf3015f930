"""Several labelers per post: a switch from Google to the successor keeps both label sets,
sends only what the new labeler lacks, migrates old tables in place, and measures the seam."""

from datetime import UTC, date, datetime

import dagster as dg
import numpy as np
import pytest
from scipy.stats import spearmanr
from sklearn.metrics import cohen_kappa_score, roc_auc_score

from bsky_assets.definitions import build_definitions
from bsky_assets.lib.labelling.label_sets import NOT_SENT_LABELER
from bsky_assets.lib.labelling.writer import LabelWriter
from bsky_assets.perspective.attributes import DEFAULT_ATTRIBUTE_SET, PROB_COLUMNS
from bsky_assets.perspective.client import GOOGLE_LABELER
from bsky_assets.perspective.labeller import perspective_label_set
from bsky_assets.perspective.resource import PerspectiveResource
from bsky_assets.perspective.tables import PERSPECTIVE_LABELS
from bsky_assets.posts.resource import LandingFolder
from bsky_assets.successor.distill import distill
from bsky_assets.successor.history import import_history
from bsky_assets_tests.conftest import materialize_day, post, use_perspective, write_jsonl
from bsky_assets_tests.successor.conftest import synthetic_history, write_csv

DAY = date(2024, 12, 20)
TEXTS = {
    "1": "you awful idiot, I hate this",
    "2": "thank you friend, grateful we did this together",
    "3": "the council meeting about the bus and the river",
    "4": "a photo of the market this morning, disgusting weather",
}


def write_day(landing_root, *keys: str) -> None:
    records = [post(k, TEXTS[k]) for k in keys] + [post("short", "hi")]
    write_jsonl(landing_root / DAY.isoformat() / "b.jsonl", records)


def definitions(postgres, landing_root, url: str) -> dg.Definitions:
    use_perspective(url)
    perspective = PerspectiveResource(requests_per_second=10_000)
    return build_definitions(
        postgres=postgres, landing=LandingFolder(path=str(landing_root)), perspective=perspective
    )


def run(defs: dg.Definitions, asset: str = "perspective_labels") -> dict:
    result = materialize_day(defs, DAY, upstream_of=asset)
    assert result.success
    events = result.asset_materializations_for_node(asset)
    return {k: v.value for k, v in events[-1].metadata.items()}


def google_scored(client, *keys: str) -> None:
    """Rows as Google's API left them in December (what this project wrote while it answered)."""
    label_set = perspective_label_set(GOOGLE_LABELER, "v1alpha1", DEFAULT_ATTRIBUTE_SET.id)
    client.ensure_table(PERSPECTIVE_LABELS)
    writer = LabelWriter(
        client,
        PERSPECTIVE_LABELS,
        label_set.id,
        DAY,
        {"labeler": GOOGLE_LABELER, "labeler_version": "v1alpha1",
         "attribute_set": DEFAULT_ATTRIBUTE_SET.id},
    )  # fmt: skip
    rng = np.random.default_rng(0)
    writer.write(
        [
            {
                "uri": post(k)["uri"],
                "was_successfully_labeled": True,
                "retryable": False,
                "attempts": 1,
                "label_timestamp": datetime(2024, 12, 20, tzinfo=UTC),
                **{c: float(rng.uniform()) for c in PROB_COLUMNS},
            }
            for k in keys
        ]
    )


@pytest.fixture
def successor_url(client, tmp_path, monkeypatch, serve) -> str:
    monkeypatch.setenv("BSKY_DATA_DIR", str(tmp_path))
    import_history(client, write_csv(tmp_path / "h.csv", synthetic_history(300)))
    distill(client)
    return serve.perspective(scorer="distilled:latest").url


def test_switching_labelers_keeps_both_and_sends_only_what_is_missing(
    postgres, client, landing_root, successor_url
):
    write_day(landing_root, "1", "2", "3")
    defs = definitions(postgres, landing_root, successor_url)
    materialize_day(defs, DAY, upstream_of="valid_posts")
    google_scored(client, "1", "2", "3")

    first = run(defs)
    assert first["posts_sent"] == 3  # the successor had no row for any of them
    assert first["labeler"].startswith("bsky-perspective-server/distilled-")
    assert first["emulated"] is True
    assert run(defs)["posts_sent"] == 0

    write_day(landing_root, "1", "2", "3", "4")  # a post lands after Google's shutdown
    assert run(defs)["posts_sent"] == 1

    counts = dict(
        client.fetch_all(
            f"SELECT labeler, count(*) FROM {client.qualified('perspective_labels')} "
            "WHERE partition_date = %s GROUP BY 1",
            (DAY,),
        )
    )
    assert counts[GOOGLE_LABELER] == 3 and counts[first["labeler"]] == 4
    assert counts[NOT_SENT_LABELER] == 1  # the short post, in the successor's set
    preferred = dict(
        client.fetch_all(
            f"SELECT uri, labeler FROM {client.qualified('perspective_labels_preferred')} "
            "WHERE partition_date = %s AND was_successfully_labeled",
            (DAY,),
        )
    )
    assert {preferred[post(k)["uri"]] for k in "123"} == {GOOGLE_LABELER}  # Google first
    assert preferred[post("4")["uri"]] == first["labeler"]


def test_agreement_between_labelers_matches_an_independent_computation(
    postgres, client, landing_root, successor_url
):
    write_day(landing_root, "1", "2", "3", "4")
    defs = definitions(postgres, landing_root, successor_url)
    materialize_day(defs, DAY, upstream_of="valid_posts")
    google_scored(client, "1", "2", "3", "4")
    run(defs)
    metadata = run(defs, "perspective_agreement")
    assert metadata["pairs"] == 1
    rows = client.fetch_all(
        "SELECT reference_labeler, other_labeler, column_name, n, spearman, mae, auc "
        f"FROM {client.qualified('perspective_agreement')} WHERE partition_date = %s",
        (DAY,),
    )
    by_column = {r[2]: r for r in rows}
    assert set(by_column) == {"prob_toxic", "prob_affinity"}  # what both labelers scored
    reference, other, _, n, spearman, mae, auc = by_column["prob_toxic"]
    assert (reference, n) == (GOOGLE_LABELER, 4)
    assert other.startswith("bsky-perspective-server/distilled-")
    pairs = client.fetch_all(
        f"SELECT g.prob_toxic, d.prob_toxic FROM {client.qualified('perspective_labels')} g "
        f"JOIN {client.qualified('perspective_labels')} d USING (partition_date, uri) "
        "WHERE g.labeler = %s AND d.labeler = %s",
        (GOOGLE_LABELER, other),
    )
    x, y = np.array(pairs).T
    assert spearman == pytest.approx(spearmanr(x, y).statistic, abs=1e-4)
    assert mae == pytest.approx(np.abs(x - y).mean(), abs=1e-4)
    if 0 < (x >= 0.5).sum() < len(x):
        assert auc == pytest.approx(roc_auc_score(x >= 0.5, y), abs=1e-4)
    shares = client.fetch_all(
        "SELECT column_name, reference_share, other_share, kappa "
        f"FROM {client.qualified('perspective_agreement')} WHERE partition_date = %s",
        (DAY,),
    )
    _, reference_share, other_share, kappa = next(r for r in shares if r[0] == "prob_toxic")
    assert reference_share == pytest.approx(np.mean(x >= 0.5), abs=1e-4)
    assert other_share == pytest.approx(np.mean(y >= 0.5), abs=1e-4)
    if len(set(x >= 0.5)) > 1 or len(set(y >= 0.5)) > 1:
        assert kappa == pytest.approx(cohen_kappa_score(x >= 0.5, y >= 0.5), abs=1e-4)
    assert "share ≥ 0.5" in metadata["agreement"] and "κ" in metadata["agreement"]


def test_agreement_at_the_threshold_by_hand():
    from bsky_assets.perspective.agreement import agreement_at_threshold

    # 10 posts: Google says 4 toxic, the successor 5; they agree on 7 verdicts
    figures = agreement_at_threshold(10, 4, 5, 7)
    expected = (0.7 - (0.4 * 0.5 + 0.6 * 0.5)) / (1 - 0.5)
    assert figures == {"reference_share": 0.4, "other_share": 0.5, "kappa": round(expected, 4)}
    assert agreement_at_threshold(3, 3, 3, 3)["kappa"] is None  # no chance agreement to beat


def test_in_process_transport_writes_the_rows_the_server_would(
    postgres, client, landing_root, successor_url, monkeypatch
):
    """The same label set, rows and provenance whether the successor is reached over HTTP or
    scored inside the step: switching transport never re-sends a day."""
    write_day(landing_root, "1", "2", "3", "4")
    over_http = run(definitions(postgres, landing_root, successor_url))
    query = (
        "SELECT uri, label_set, labeler, labeler_version, attribute_set, "
        "was_successfully_labeled, reason, unscored_attributes, prob_toxic, prob_affinity "
        f"FROM {client.qualified('perspective_labels')} WHERE partition_date = %s ORDER BY uri"
    )
    served = client.fetch_all(query, (DAY,))
    monkeypatch.setenv("BSKY_PERSPECTIVE_TRANSPORT", "in-process:distilled:latest")
    again = run(definitions(postgres, landing_root, "http://127.0.0.1:9"))  # nothing listens
    assert again["label_set"] == over_http["label_set"] and again["posts_sent"] == 0
    client.execute(f"DELETE FROM {client.qualified('perspective_labels')}")
    in_process = run(definitions(postgres, landing_root, "http://127.0.0.1:9"))
    assert in_process["posts_sent"] == 4 and in_process["api_requests"] == 0
    assert in_process["labeler"] == over_http["labeler"]
    assert client.fetch_all(query, (DAY,)) == served


OLD_TABLE = """
CREATE TABLE {t} (
  partition_date date NOT NULL, uri text NOT NULL, was_successfully_labeled boolean NOT NULL,
  reason text, retryable boolean NOT NULL, attempts integer,
  label_timestamp timestamptz NOT NULL, {probs}, unscored_attributes text,
  labeler text NOT NULL, labeler_version text NOT NULL, attribute_set text NOT NULL,
  PRIMARY KEY (partition_date, uri))
"""


def test_a_table_from_before_label_sets_migrates_in_place(
    postgres, client, landing_root, perspective
):
    """Rows written by the previous version (one row per post) are kept, join the label set of
    the configuration that wrote them, and a re-run with that configuration sends nothing."""
    write_day(landing_root, "1", "2", "3")
    defs = build_definitions(
        postgres=postgres, landing=LandingFolder(path=str(landing_root)), perspective=perspective
    )
    materialize_day(defs, DAY, upstream_of="valid_posts")
    table = client.qualified("perspective_labels")
    client.execute(
        OLD_TABLE.format(t=table, probs=", ".join(f"{c} double precision" for c in PROB_COLUMNS))
    )
    labeler = "bsky-perspective-server/synthetic-hash (synthetic)"
    rows = [(post(k)["uri"], True, None, labeler, "1", 0.25) for k in "123"]
    rows.append((post("short")["uri"], False, "text_too_short", NOT_SENT_LABELER, "0.1.0", None))
    for uri, ok, reason, who, version, toxic in rows:
        client.execute(
            f"INSERT INTO {table} (partition_date, uri, was_successfully_labeled, reason, "
            "retryable, attempts, label_timestamp, prob_toxic, labeler, labeler_version, "
            "attribute_set) VALUES (%s, %s, %s, %s, false, 1, now(), %s, %s, %s, %s)",
            (DAY, uri, ok, reason, toxic, who, version, DEFAULT_ATTRIBUTE_SET.id),
        )

    metadata = run(defs)
    assert metadata["posts_sent"] == 0  # the same configuration adopted its own rows
    after = client.fetch_all(
        f"SELECT uri, label_set, labeler, prob_toxic FROM {table} ORDER BY uri"
    )
    assert len(after) == 4 and {r[1] for r in after} == {metadata["label_set"]}
    assert [r[3] for r in after if r[2] == labeler] == [0.25, 0.25, 0.25]  # scores untouched
    key = client.fetch_all(
        "SELECT a.attname FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid "
        "AND a.attnum = ANY(i.indkey) WHERE i.indrelid = %s::regclass AND i.indisprimary",
        (f"{client.schema}.perspective_labels",),
    )
    assert {r[0] for r in key} == {"partition_date", "uri", "label_set"}
    registered = client.fetch_all(
        f"SELECT labeler, emulated FROM {client.qualified('label_sets')} WHERE label_set = %s",
        (metadata["label_set"],),
    )
    assert registered == [(labeler, True)]


def test_the_successor_asset_trains_and_reports(postgres, client, tmp_path, monkeypatch):
    monkeypatch.setenv("BSKY_DATA_DIR", str(tmp_path))
    import_history(client, write_csv(tmp_path / "h.csv", synthetic_history(300)))
    defs = build_definitions(postgres=postgres)
    job = defs.resolve_implicit_global_asset_job_def().get_subset(
        asset_selection={dg.AssetKey("perspective_successor")}
    )
    result = job.execute_in_process()
    assert result.success
    metadata = result.asset_materializations_for_node("perspective_successor")[0].metadata
    model_id = metadata["model_id"].value
    assert (tmp_path / "models" / model_id / "model.json").is_file()
    assert metadata["attributes_modelled"].value == 2
    assert metadata["labeler"].value == f"bsky-perspective-server/distilled-{model_id} (model)"
    assert "| TOXICITY |" in metadata["evaluation"].value
    assert metadata["calibration"].value.startswith("![")


def test_a_step_that_hashes_on_worker_processes_stores_the_same_model(
    postgres, client, tmp_path, monkeypatch
):
    """A large history's n-grams are hashed on loky workers (from `PARALLEL_HASHING_FROM`
    texts, lowered here): inside a Dagster step they start, finish and change nothing."""
    from bsky_assets.successor import features, training

    monkeypatch.setenv("BSKY_DATA_DIR", str(tmp_path))
    import_history(client, write_csv(tmp_path / "h.csv", synthetic_history(300)))
    job = (
        build_definitions(postgres=postgres)
        .resolve_implicit_global_asset_job_def()
        .get_subset(asset_selection={dg.AssetKey("perspective_successor")})
    )

    def model_id() -> str:
        result = job.execute_in_process()
        assert result.success
        materialization = result.asset_materializations_for_node("perspective_successor")[0]
        return materialization.metadata["model_id"].value

    in_one_process = model_id()
    workers: list[int] = []
    real_map = features.ordered_process_map

    def recorded(function, jobs, processes):
        workers.append(processes)
        return real_map(function, jobs, processes)

    monkeypatch.setattr(training, "PARALLEL_HASHING_FROM", 1)
    monkeypatch.setattr(training, "available_cores", lambda: 2)
    monkeypatch.setattr(features, "HASHING_TASK_ROWS", 40)  # 240 training texts: 6 tasks
    monkeypatch.setattr(features, "ordered_process_map", recorded)
    assert model_id() == in_one_process
    assert 2 in workers


def test_without_enough_history_the_successor_stores_nothing_and_says_why(postgres):
    defs = build_definitions(postgres=postgres)
    job = defs.resolve_implicit_global_asset_job_def().get_subset(
        asset_selection={dg.AssetKey("perspective_successor")}
    )
    with dg.instance_for_test() as instance:
        result = job.execute_in_process(instance=instance)
        logged = "\n".join(e.user_message for e in instance.all_logs(result.run_id))
    assert result.success  # a `*` selection that includes it does not fail for it
    assert result.asset_materializations_for_node("perspective_successor") == []
    assert "no successor trained" in logged and "import-history" in logged
