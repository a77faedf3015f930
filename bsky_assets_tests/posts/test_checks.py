"""Asset checks, per partition, against a real Postgres."""

from datetime import date

import dagster as dg

from bsky_assets_tests.conftest import SAMPLE_DAY, materialize_day, post, write_jsonl

NEXT_DAY = date(2024, 6, 2)


def evaluations(result: dg.ExecuteInProcessResult) -> dict[str, tuple[bool, dict]]:
    found = {}
    for event in result.all_events:
        if event.event_type_value == "ASSET_CHECK_EVALUATION":
            data = event.asset_check_evaluation_data
            name = f"{data.asset_key.to_user_string()}:{data.check_name}"
            found[name] = (data.passed, {k: v.value for k, v in data.metadata.items()})
    return found


def write_day(landing_root, day: date, *suffixes: str) -> None:
    records = [post(s, f"a post long enough, number {s}") for s in suffixes] + [post("x", "")]
    write_jsonl(landing_root / day.isoformat() / "b.jsonl", records)


def test_a_healthy_day_passes_every_check(defs, landing_root) -> None:
    write_day(landing_root, SAMPLE_DAY, "1", "2", "3")
    found = evaluations(materialize_day(defs, SAMPLE_DAY))
    assert set(found) == {
        "perspective_labels:one_row_per_post",
        "sociopolitical_labels:one_row_per_post",
        "perspective_labels:failure_rate",
        "sociopolitical_labels:failure_rate",
        "perspective_labels:probabilities_in_unit_interval",
        "perspective_labels:every_column_scored",
        "valence_labels:one_row_per_post",
        "valence_labels:failure_rate",
        "valence_labels:compound_in_range",
        "preprocessed_posts:uris_unique_across_days",
        "preprocessed_posts:day_has_posts",
    }
    assert all(passed for passed, _ in found.values()), found
    assert all(metadata["day"] == str(SAMPLE_DAY) for _, metadata in found.values())
    assert found["perspective_labels:failure_rate"][1]["labelled"] == 3


def test_checks_catch_broken_data_of_their_own_day_only(defs, client, landing_root) -> None:
    """Checks run in the step that writes their asset: to check a day again, materialize it
    again (label assets send nothing for posts with a final row)."""
    write_day(landing_root, SAMPLE_DAY, "1", "2", "3")
    write_day(landing_root, NEXT_DAY, "3", "4")  # uri "3" lands again the next day
    assert materialize_day(defs, SAMPLE_DAY).success
    assert materialize_day(defs, NEXT_DAY).success
    labels = client.qualified("perspective_labels")
    client.execute(f"UPDATE {labels} SET prob_toxic = 1.5 WHERE uri = %s", (post("1")["uri"],))
    client.execute(  # a label row whose post is not among the day's posts
        f"INSERT INTO {labels} (partition_date, uri, label_set, was_successfully_labeled, "
        "retryable, label_timestamp, labeler, labeler_version, attribute_set) SELECT "
        "partition_date, 'at://orphan', label_set, true, false, now(), labeler, "
        f"labeler_version, attribute_set FROM {labels} WHERE uri = %s",
        (post("1")["uri"],),
    )
    client.execute(
        f"UPDATE {client.qualified('sociopolitical_labels')} SET was_successfully_labeled = "
        "false, reason = 'bad_request: refused', retryable = false "
        "WHERE partition_date = %s AND was_successfully_labeled",
        (NEXT_DAY,),
    )

    first = evaluations(materialize_day(defs, SAMPLE_DAY))
    passed, metadata = first["perspective_labels:one_row_per_post"]
    assert passed is False and len(metadata.pop("label_set")) == 16
    assert metadata == {"day": str(SAMPLE_DAY), "posts_without_a_row": 0, "rows_without_a_post": 1}
    assert first["perspective_labels:probabilities_in_unit_interval"] == (
        False,
        {"day": str(SAMPLE_DAY), "rows_out_of_range": 1},
    )
    assert first["preprocessed_posts:uris_unique_across_days"][0] is False
    assert first["sociopolitical_labels:failure_rate"][0] is True  # the broken day is the next

    second = evaluations(materialize_day(defs, NEXT_DAY))
    assert second["perspective_labels:one_row_per_post"][0] is True
    assert second["perspective_labels:probabilities_in_unit_interval"][0] is True
    passed, metadata = second["sociopolitical_labels:failure_rate"]
    assert passed is False and metadata["failure_rate"] == 1.0 and metadata["failed"] == 2


def test_a_deleted_label_row_is_refilled_by_the_next_materialization(
    defs, client, landing_root
) -> None:
    write_day(landing_root, SAMPLE_DAY, "1", "2")
    assert materialize_day(defs, SAMPLE_DAY).success
    client.execute(
        f"DELETE FROM {client.qualified('perspective_labels')} WHERE uri = %s",
        (post("2")["uri"],),
    )
    found = evaluations(materialize_day(defs, SAMPLE_DAY))
    assert found["perspective_labels:one_row_per_post"][1]["posts_without_a_row"] == 0


def test_checks_cannot_be_launched_without_their_asset(defs) -> None:
    """No check is a step of its own, so the UI offers no run without a partition for them."""
    graph = defs.resolve_asset_graph()
    assert len(graph.asset_check_keys) == 11
    for key in graph.asset_check_keys:
        assert key in graph.get(key.asset_key).assets_def.check_keys
    assert not defs.asset_checks


def test_a_scorer_leaving_columns_empty_is_named_by_a_warning(
    postgres, landing_root, serve
) -> None:
    from bsky_assets.definitions import build_definitions
    from bsky_assets.perspective.resource import PerspectiveResource
    from bsky_assets.posts.resource import LandingFolder
    from bsky_assets_tests.conftest import use_perspective

    use_perspective(serve.perspective(scorer="profanity-check").url)
    defs = build_definitions(
        postgres=postgres,
        landing=LandingFolder(path=str(landing_root)),
        perspective=PerspectiveResource(requests_per_second=10_000),
    )
    write_day(landing_root, SAMPLE_DAY, "1", "2")
    result = materialize_day(defs, SAMPLE_DAY, upstream_of="perspective_labels")
    assert result.success  # a warning, not a failure: the rows are right, only incomplete
    passed, metadata = evaluations(result)["perspective_labels:every_column_scored"]
    assert passed is False
    assert metadata["labeler"].startswith("bsky-perspective-server/alt-profanity-check")
    # One signal, one column: profanity is scored, toxicity is not copied from it (21.7).
    assert (metadata["columns_scored"], metadata["columns"]) == (1, 22)
    assert "prob_toxic" in metadata["empty_columns"].split(", ")
    labels = result.asset_materializations_for_node("perspective_labels")[0].metadata
    assert labels["columns_scored"].value.startswith("1 of 22 by bsky-perspective-server/alt")
    assert "| prob_profanity | 2 | 0 | 1 |" in labels["coverage"].value
    assert "| prob_toxic | 0 | 2 | 1 |" in labels["coverage"].value
    assert "prob_profanity_histogram" in labels and "prob_toxic_histogram" not in labels
    rows = postgres.get_client().fetch_all(
        "SELECT prob_toxic, prob_profanity, unscored_attributes, labeler_version FROM "
        f"{postgres.get_client().qualified('perspective_labels')} WHERE was_successfully_labeled"
    )
    assert len(rows) == 2
    for toxic, profanity, unscored, version in rows:
        # a new label set, not the one whose rows copied profanity into toxicity
        assert version.endswith("+profanity-only")
        assert toxic is None and profanity is not None
        assert "TOXICITY" in unscored.split(",") and "PROFANITY" not in unscored.split(",")


def test_an_empty_day_is_green_but_marked(defs, landing_root) -> None:
    (landing_root / SAMPLE_DAY.isoformat()).mkdir(parents=True)
    result = materialize_day(defs, SAMPLE_DAY)
    assert result.success
    passed, metadata = evaluations(result)["preprocessed_posts:day_has_posts"]
    assert passed is False and metadata == {"day": str(SAMPLE_DAY), "posts": 0}
    ingest = result.asset_materializations_for_node("ingest_landing")
    posts = next(m for m in ingest if m.asset_key.path == ["preprocessed_posts"])
    assert posts.metadata["empty_day"].value is True
