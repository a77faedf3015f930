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


def run_checks(defs: dg.Definitions, day: date, *names: str) -> dict[str, tuple[bool, dict]]:
    keys = {dg.AssetCheckKey(dg.AssetKey(name.split(":")[0]), name.split(":")[1]) for name in names}
    job = defs.resolve_implicit_global_asset_job_def().get_subset(
        asset_selection=set(), asset_check_selection=keys
    )
    return evaluations(job.execute_in_process(partition_key=day.isoformat()))


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
        "preprocessed_posts:uris_unique_across_days",
    }
    assert all(passed for passed, _ in found.values()), found
    assert found["perspective_labels:failure_rate"][1]["labelled"] == 3


def test_checks_catch_broken_data_of_their_own_day_only(defs, client, landing_root) -> None:
    write_day(landing_root, SAMPLE_DAY, "1", "2", "3")
    write_day(landing_root, NEXT_DAY, "3", "4")  # uri "3" lands again the next day
    assert materialize_day(defs, SAMPLE_DAY).success
    assert materialize_day(defs, NEXT_DAY).success
    labels = client.qualified("perspective_labels")
    client.execute(f"UPDATE {labels} SET prob_toxic = 1.5 WHERE uri = %s", (post("1")["uri"],))
    client.execute(f"DELETE FROM {labels} WHERE uri = %s", (post("2")["uri"],))
    client.execute(
        f"UPDATE {client.qualified('sociopolitical_labels')} SET was_successfully_labeled = "
        "false, reason = 'retries_exhausted' "
        "WHERE partition_date = %s AND was_successfully_labeled",
        (NEXT_DAY,),
    )
    names = [
        "perspective_labels:one_row_per_post",
        "perspective_labels:probabilities_in_unit_interval",
        "preprocessed_posts:uris_unique_across_days",
        "sociopolitical_labels:failure_rate",
    ]
    first = run_checks(defs, SAMPLE_DAY, *names)
    passed, metadata = first["perspective_labels:one_row_per_post"]
    assert passed is False and len(metadata.pop("label_set")) == 16
    assert metadata == {"posts_without_a_row": 1, "rows_without_a_post": 0}
    assert first["perspective_labels:probabilities_in_unit_interval"] == (
        False,
        {"rows_out_of_range": 1},
    )
    assert first["preprocessed_posts:uris_unique_across_days"][0] is False
    assert first["sociopolitical_labels:failure_rate"][0] is True  # the broken day is the next

    second = run_checks(defs, NEXT_DAY, *names)
    assert second["perspective_labels:one_row_per_post"][0] is True
    assert second["perspective_labels:probabilities_in_unit_interval"][0] is True
    passed, metadata = second["sociopolitical_labels:failure_rate"]
    assert passed is False and metadata["failure_rate"] == 1.0 and metadata["failed"] == 2
