"""The code location loads and validates (test_architecture keeps the library and the domains
apart from the servers and the tools)."""

import dagster as dg

from bsky_assets.definitions import build_definitions, defs


def test_the_code_location_loads_and_validates() -> None:
    dg.Definitions.validate_loadable(defs)
    dg.Definitions.validate_loadable(build_definitions())
    graph = defs.resolve_asset_graph()
    keys = {key.to_user_string() for key in graph.get_all_asset_keys()}
    assert {
        "landing_batches", "preprocessed_posts", "landing_rejects", "classification_metadata",
        "valid_posts", "perspective_labels", "sociopolitical_labels",
    } <= keys  # fmt: skip
    job_keys = defs.resolve_job_def("label_posts").asset_layer.executable_asset_keys
    assert dg.AssetKey("landing_rejects") in job_keys  # a real output of the ingest step


def test_the_per_day_job_holds_only_per_day_assets() -> None:
    """The sensor's and the demo's job for one day never trains the successor or runs an
    evaluation (unpartitioned: a terminated day's run must not show them errored)."""
    graph = defs.resolve_asset_graph()
    job_keys = defs.resolve_job_def("label_posts").asset_layer.executable_asset_keys
    assert dg.AssetKey("perspective_successor") not in job_keys
    unpartitioned = {k for k in job_keys if graph.get(k).partitions_def is None}
    assert unpartitioned == set(), unpartitioned


def test_descriptions_follow_the_scorer_of_each_build(monkeypatch) -> None:
    """The job's and the asset's labeller text are read when the definitions are built, never
    cached across builds (21.13): a code server restarted with another scorer describes it.
    A first page showing the previous scorer is the UI's own IndexedDB workspace cache."""
    texts = []
    for scorer in ("scorer alt-profanity-check 1.9.1", "scorer distilled-abc 1"):
        monkeypatch.setenv("BSKY_PERSPECTIVE_LABELER", f"the project's local server, {scorer}")
        built = build_definitions()
        job = built.resolve_job_def("label_posts").description
        asset = built.resolve_assets_def("perspective_labels").descriptions_by_key[
            dg.AssetKey("perspective_labels")
        ]
        assert scorer in job and scorer in asset
        texts.append((job, asset))
    assert texts[0] != texts[1]
