"""sociopolitical_labels end to end: the real openai client, the local server, a real Postgres."""

import dataclasses
import logging
from datetime import date

import dagster as dg
import pytest

from bsky_assets.definitions import build_definitions
from bsky_assets.lib.labelling.metadata import markdown_cell
from bsky_assets.llm.labeller import LLMLabeller
from bsky_assets.llm.resource import LLMResource
from bsky_assets.posts.resource import LandingFolder
from bsky_assets.servers.llm import answers
from bsky_assets.servers.llm.answers import sociopolitical
from bsky_assets.servers.llm.server import LLMServer, LLMServerOptions
from bsky_assets.sociopolitical.labeller import lean_metadata
from bsky_assets.sociopolitical.task import PROMPT_VERSION, SOCIOPOLITICAL
from bsky_assets.tools.sample_data import write_sample_day
from bsky_assets_tests.conftest import SAMPLE_DAY, materialize_day, post, use_llm, write_jsonl

SECRET = "fake-openai-key-for-tests-0005"
DAY = date(2024, 11, 5)


def prompt_b():
    """The sociopolitical task with other instructions: another prompt version."""
    system_b = SOCIOPOLITICAL.system_prompt + "\nWhen unsure, prefer is_sociopolitical false."
    return dataclasses.replace(SOCIOPOLITICAL, system_prompt=system_b)


def materialize(postgres, landing, llm: LLMResource, day: date, task=SOCIOPOLITICAL, **kwargs):
    labeller = LLMLabeller.of(task, lean_metadata)
    defs = build_definitions(
        postgres=postgres, landing=LandingFolder(path=str(landing)), llm=llm, labellers=(labeller,)
    )
    return materialize_day(defs, day, upstream_of="sociopolitical_labels", **kwargs)


def rows(client, day: date = DAY) -> dict[str, tuple]:
    found = client.fetch_all(
        "SELECT uri, was_successfully_labeled, reason, is_sociopolitical, "
        "political_ideology_label, llm_model_name, prompt_version, labeler "
        f"FROM {client.qualified('sociopolitical_labels')} WHERE partition_date = %s",
        (day,),
    )
    return {r[0]: r[1:] for r in found}


def resource(url: str, api_key: str | None = SECRET, **overrides) -> LLMResource:
    use_llm(url, api_key)
    return LLMResource(**{"requests_per_minute": 600_000} | overrides)


def test_a_day_end_to_end_and_a_rerun_sends_nothing(postgres, client, landing_root):
    write_sample_day(landing_root, DAY, posts=500, batch_size=250)
    with LLMServer(LLMServerOptions(api_keys=(SECRET,), fault_missing_id_share=0.1)) as server:
        result = materialize(postgres, landing_root, resource(server.url), DAY)
        assert result.success
        valid = dict(
            client.fetch_all(
                f"SELECT uri, text FROM {client.qualified('valid_posts')} WHERE is_valid"
            )
        )
        invalid = dict(
            client.fetch_all(
                f"SELECT uri, invalid_reason FROM {client.qualified('valid_posts')} "
                "WHERE NOT is_valid"
            )
        )
        labels = rows(client)
        assert set(labels) == set(valid) | set(invalid)
        for uri, text in valid.items():
            ok, reason, civic, lean, model, version, labeler = labels[uri]
            assert ok and reason is None
            assert (civic, lean) == sociopolitical.label(text)
            assert model == answers.MODEL_NAME  # says it is not an LLM
            assert version == PROMPT_VERSION and labeler == "openai-compatible"
        for uri, reason in invalid.items():
            assert labels[uri][:2] == (False, reason) and labels[uri][5] == PROMPT_VERSION

        metadata = {
            k: v.value
            for k, v in result.asset_materializations_for_node("sociopolitical_labels")[
                0
            ].metadata.items()
        }
        assert metadata["posts_sent"] == len(valid)
        assert metadata["prompt_version"] == PROMPT_VERSION
        # The UI names the model that labelled the rows, never the one merely requested, and
        # prices only a model with a known price.
        assert metadata["llm_model"] == answers.MODEL_NAME
        assert metadata["llm_model_requested"] == "gpt-4o-mini"
        assert metadata["prompt_tokens"] > 0
        assert metadata["estimated_cost_usd"] == f"unknown (no price for {answers.MODEL_NAME})"
        # Where the rows are, their columns, and a few of them with their text.
        assert metadata["dagster/table_name"] == f"{client.schema}.sociopolitical_labels"
        columns = [c.name for c in metadata["dagster/column_schema"].columns]
        assert {"uri", "label_set", "is_sociopolitical", "llm_model_name"} <= set(columns)
        first_uri, first_text = min(valid.items())
        preview = metadata["preview"]
        assert 4 <= preview.count("\n") <= 6  # header, rule, up to five rows
        assert len(preview) < 1000  # the UI shows it inline, without a click
        assert markdown_cell(first_text, 48) in preview
        assert markdown_cell(first_uri.rsplit("/", 1)[-1], 24) in preview

        requests = server.stats["http_requests"]
        assert materialize(postgres, landing_root, resource(server.url), DAY).success
        assert server.stats["http_requests"] == requests  # a re-run sends zero requests
        assert rows(client) == labels


def test_cost_is_priced_from_the_table_or_its_override(postgres, landing_root, monkeypatch):
    write_sample_day(landing_root, DAY, posts=60, batch_size=60, malformed=False)
    monkeypatch.setenv(
        "BSKY_LLM_PRICES", f'{{"{answers.MODEL_NAME}": {{"input": 1.0, "output": 2.0}}}}'
    )
    with LLMServer() as server:
        result = materialize(postgres, landing_root, resource(server.url, api_key=None), DAY)
    metadata = {
        k: v.value
        for k, v in result.asset_materializations_for_node("sociopolitical_labels")[
            0
        ].metadata.items()
    }
    prompt, completion = metadata["prompt_tokens"], metadata["completion_tokens"]
    sync = (prompt * 1.0 + completion * 2.0) / 1_000_000
    assert metadata["estimated_cost_usd"] == pytest.approx(sync, abs=1e-6)
    assert metadata["cost_at_batch_prices_usd"] == pytest.approx(sync / 2, abs=1e-6)
    per_1000 = sync / metadata["posts_sent"] * 1000
    assert metadata["cost_per_1000_posts_sync_usd"] == pytest.approx(per_1000, abs=1e-6)


def test_no_key_and_openais_url_fails_at_once_naming_both_fixes(postgres, landing_root):
    write_jsonl(landing_root / SAMPLE_DAY.isoformat() / "b.jsonl", [post("a")])
    use_llm("https://api.openai.com/v1")
    openai = LLMResource()
    result = materialize(postgres, landing_root, openai, SAMPLE_DAY, raise_on_error=False)
    assert not result.success
    failure = next(e for e in result.all_events if e.event_type_value == "STEP_FAILURE")
    message = str(failure.event_specific_data.error)
    assert "OPENAI_API_KEY" in message and "OPENAI_BASE_URL" in message


def test_the_key_never_reaches_rows_or_logs(postgres, client, landing_root, capfd, caplog):
    caplog.set_level(logging.DEBUG)
    write_jsonl(
        landing_root / SAMPLE_DAY.isoformat() / "b.jsonl",
        [post(str(i), f"vote in the election, post {i}") for i in range(25)],
    )
    options = LLMServerOptions(api_keys=(SECRET,), fault_5xx_share=0.3, seed=2)
    with dg.instance_for_test() as instance, LLMServer(options) as server:
        llm = resource(server.url, posts_per_prompt=1)  # 25 requests: errors certainly happen
        result = materialize(postgres, landing_root, llm, SAMPLE_DAY, instance=instance)
        assert result.success and server.stats.get("injected_5xx", 0) > 0
        events = "\n".join(str(e) for e in instance.all_logs(result.run_id))
    dump = repr(client.fetch_all(f"SELECT * FROM {client.qualified('sociopolitical_labels')}"))
    captured = capfd.readouterr()
    for place in (dump, events, captured.out, captured.err, caplog.text):
        assert SECRET not in place


@pytest.mark.parametrize("posts_per_prompt", [1, 20])
def test_posts_per_prompt_changes_requests_not_labels(
    postgres, client, landing_root, posts_per_prompt
):
    write_sample_day(landing_root, DAY, posts=120, batch_size=120, malformed=False)
    with LLMServer() as server:
        llm = resource(server.url, posts_per_prompt=posts_per_prompt, api_key=None)
        assert materialize(postgres, landing_root, llm, DAY).success
        sent = sum(1 for r in rows(client).values() if r[0])
        assert server.stats["completions"] == -(-sent // posts_per_prompt)


def test_a_new_prompt_adds_a_label_set_and_sends_only_what_it_lacks(
    postgres, client, landing_root, monkeypatch
):
    write_jsonl(landing_root / DAY.isoformat() / "a.jsonl", [post(f"a{i}") for i in range(30)])
    with LLMServer() as server:
        assert materialize(postgres, landing_root, resource(server.url, api_key=None), DAY).success
        prompt_a = server.stats["completions"]

        # Prompt B: different instructions, so a different version and a new label set.
        task_b = prompt_b()
        version_b = task_b.prompt_version
        b = resource(server.url, api_key=None)
        assert materialize(postgres, landing_root, b, DAY, task=task_b).success
        sent_b = server.stats["completions"] - prompt_a
        assert sent_b == prompt_a  # B lacked every post

        write_jsonl(landing_root / DAY.isoformat() / "b.jsonl", [post(f"b{i}") for i in range(5)])
        assert materialize(postgres, landing_root, b, DAY, task=task_b).success
        assert server.stats["completions"] - prompt_a - sent_b == 1  # the 5 new posts only

    per_set = client.fetch_all(
        f"SELECT prompt_version, count(*) FROM {client.qualified('sociopolitical_labels')} "
        "WHERE partition_date = %s GROUP BY 1 ORDER BY 2",
        (DAY,),
    )
    assert per_set == [(PROMPT_VERSION, 30), (version_b, 35)]  # A's rows stay as they were
    preferred = client.fetch_all(
        f"SELECT count(*), count(DISTINCT uri) FROM "
        f"{client.qualified('sociopolitical_labels_preferred')} WHERE partition_date = %s",
        (DAY,),
    )
    assert preferred == [(35, 35)]  # one row per post to read
