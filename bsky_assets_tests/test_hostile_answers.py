"""Servers that answer badly (issue 20, points 2, 3, 5 and 8): what was paid for is stored, a bad
answer is one post's recorded reason, and nothing a server echoes reaches a row, the registry,
the metadata or the logs.

The project's own servers play the hostile ones: a scorer plugin returning impossible scores,
a Perspective service that garbles parts, an LLM service whose answers are rewritten on the way
out, a batch error file with a line of the wrong shape. Everything else is real: the google and
openai clients over HTTP, the engine, Postgres.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from datetime import date

import pytest

from bsky_assets.definitions import build_definitions
from bsky_assets.intergroup.task import INTERGROUP_LABELLER
from bsky_assets.llm.resource import LLMResource
from bsky_assets.perspective.attributes import ATTRIBUTE_COLUMNS
from bsky_assets.perspective.labeller import PerspectiveLabeller
from bsky_assets.perspective.resource import PerspectiveResource
from bsky_assets.perspective.scorers import Scorer
from bsky_assets.perspective.service import PerspectiveService
from bsky_assets.posts.resource import LandingFolder
from bsky_assets.servers.llm.batches import BatchOptions
from bsky_assets.sociopolitical.labeller import SOCIOPOLITICAL_LABELLER
from bsky_assets_tests.conftest import materialize_day, post, use_llm, use_perspective, write_jsonl

DAY = date(2024, 11, 5)
SERVER_KEY = "hostile-server-key-0020-abcdef"
OPENAI_KEY = "hostile-openai-key-0020-abcdef"


class ImpossibleScorer(Scorer):
    """Scores a text containing `nan-me` as NaN and one containing `too-big` as 1.5."""

    name = "impossible"
    synthetic = True
    supported_attributes = frozenset(ATTRIBUTE_COLUMNS)

    @property
    def version(self) -> str:
        return "1"

    def score(self, texts: Sequence[str]) -> list[dict[str, float]]:
        def value(text: str) -> float:
            if "nan-me" in text:
                return math.nan
            return 1.5 if "too-big" in text else 0.25

        return [dict.fromkeys(self.supported_attributes, value(t)) for t in texts]


class KeyNamedScorer(ImpossibleScorer):
    """A scorer that declares the server's own key as its name."""

    name = SERVER_KEY


def land(landing_root, texts: dict[str, str]) -> None:
    write_jsonl(landing_root / DAY.isoformat() / "a.jsonl", [post(k, t) for k, t in texts.items()])


def perspective_day(postgres, landing_root):
    defs = build_definitions(
        postgres=postgres,
        landing=LandingFolder(path=str(landing_root)),
        perspective=PerspectiveResource(requests_per_second=10_000, max_retries=2),
        labellers=(PerspectiveLabeller(),),
    )
    result = materialize_day(defs, DAY, upstream_of="perspective_labels", raise_on_error=False)
    return result


def rows(client, table: str, *columns: str) -> dict[str, tuple]:
    found = client.fetch_all(
        f"SELECT uri, {', '.join(columns)} FROM {client.qualified(table)} "
        "WHERE partition_date = %s",
        (DAY,),
    )
    return {uri.rsplit("/", 1)[1]: tuple(rest) for uri, *rest in found}


def test_impossible_scores_are_failed_rows_never_successes(postgres, client, landing_root, serve):
    land(landing_root, {"ok": "a calm post about gardens", "nan": "nan-me please",
                        "big": "too-big a score"})  # fmt: skip
    server = serve.perspective(scorer=f"{__name__}:ImpossibleScorer")
    use_perspective(server.url)
    result = perspective_day(postgres, landing_root)
    assert result.success  # the histogram and the checks cope with what was stored

    labels = rows(client, "perspective_labels", "was_successfully_labeled", "reason", "prob_toxic")
    assert labels["ok"] == (True, None, 0.25)
    assert labels["nan"][:2] == (False, "invalid_score: TOXICITY") and labels["nan"][2] is None
    assert labels["big"][:2] == (False, "invalid_score: TOXICITY")
    # Final failures: a re-run does not pay for them again.
    again = perspective_day(postgres, landing_root)
    (event,) = again.asset_materializations_for_node("perspective_labels")
    assert event.metadata["posts_sent"].value == 0


def test_a_garbled_part_is_retried_and_the_rest_of_the_batch_is_kept(
    postgres, client, landing_root, serve, monkeypatch
):
    texts = {f"p{i}": f"an ordinary post number {i}" for i in range(30)}
    texts["bad"] = "garble this one"
    land(landing_root, texts)
    real = PerspectiveService._response
    garbled: list[str] = []

    def response(self, prepared, scores):
        answer = real(self, prepared, scores)
        if "garble" in prepared["text"] and not garbled:  # once: the retry gets a real one
            garbled.append(prepared["text"])
            for value in answer["attributeScores"].values():
                del value["summaryScore"]
        return answer

    monkeypatch.setattr(PerspectiveService, "_response", response)
    server = serve.perspective(scorer="synthetic")
    use_perspective(server.url)
    assert perspective_day(postgres, landing_root).success

    labels = rows(client, "perspective_labels", "was_successfully_labeled")
    assert garbled and all(ok for (ok,) in labels.values()) and len(labels) == 31
    assert server.stats["parts"] == 32  # every post once, the garbled one twice


def test_a_server_declaring_a_key_as_its_name_is_not_believed(
    postgres, client, landing_root, serve, capfd
):
    land(landing_root, {"ok": "a calm post about gardens"})
    server = serve.perspective(
        scorer=f"{__name__}:KeyNamedScorer", require_key=True, api_keys=(SERVER_KEY,)
    )
    use_perspective(server.url, key=SERVER_KEY)
    result = perspective_day(postgres, landing_root)
    assert result.success
    stored = json.dumps(
        [
            client.fetch_all(f"SELECT * FROM {client.qualified(table)}")
            for table in ("perspective_labels", "label_sets")
        ],
        default=str,
    )
    (event,) = result.asset_materializations_for_node("perspective_labels")
    shown = json.dumps({k: str(v.value) for k, v in event.metadata.items()})
    captured = capfd.readouterr()
    for place in (stored, shown, captured.out, captured.err):
        assert SERVER_KEY not in place
    assert event.metadata["labeler"].value.startswith("perspective-compatible")


def llm_day(postgres, landing_root, labeller=SOCIOPOLITICAL_LABELLER, **tuning):
    defs = build_definitions(
        postgres=postgres,
        landing=LandingFolder(path=str(landing_root)),
        llm=LLMResource(requests_per_minute=600_000, **tuning),
        labellers=(labeller,),
    )
    return materialize_day(defs, DAY, upstream_of=labeller.name, raise_on_error=False)


def rewrite_answers(server, rewrite) -> list[int]:
    """Pass the server's chat answers through `rewrite(answer, n)` (n counts answers)."""
    real = server.service.complete
    count = [0]

    def complete(body):
        count[0] += 1
        return rewrite(real(body), count[0])

    server.service.complete = complete
    return count


def test_an_answer_without_choices_is_retried_not_fatal(postgres, client, landing_root, serve):
    land(landing_root, {f"p{i}": f"a post about the election, number {i}" for i in range(32)})
    server = serve.llm()
    use_llm(server.url)
    rewrite_answers(server, lambda answer, n: {**answer, "choices": []} if n <= 2 else answer)
    result = llm_day(postgres, landing_root, max_retries=3)
    assert result.success
    labels = rows(client, "sociopolitical_labels", "was_successfully_labeled")
    assert len(labels) == 32 and all(ok for (ok,) in labels.values())


def test_an_entry_id_of_the_wrong_type_fails_only_its_post(postgres, client, landing_root, serve):
    land(landing_root, {f"p{i}": f"a post about the election, number {i}" for i in range(32)})
    server = serve.llm()
    use_llm(server.url)

    def listed_id(answer, n):
        if n == 1:  # the first prompt's first entry names its id as a list
            content = json.loads(answer["choices"][0]["message"]["content"])
            content["labels"][0]["id"] = [content["labels"][0]["id"]]
            answer["choices"][0]["message"]["content"] = json.dumps(content)
        return answer

    rewrite_answers(server, listed_id)
    result = llm_day(postgres, landing_root)
    assert result.success
    labels = rows(client, "sociopolitical_labels", "was_successfully_labeled")
    assert len(labels) == 32 and all(ok for (ok,) in labels.values())  # resent alone, answered


def test_a_key_echoed_as_the_model_is_never_stored(postgres, client, landing_root, serve, capfd):
    land(landing_root, {f"p{i}": f"a post about the election, number {i}" for i in range(12)})
    server = serve.llm(api_keys=(OPENAI_KEY,))
    use_llm(server.url, OPENAI_KEY)
    rewrite_answers(server, lambda answer, n: {**answer, "model": OPENAI_KEY})
    result = llm_day(postgres, landing_root)
    assert result.success
    stored = json.dumps(
        [
            client.fetch_all(f"SELECT * FROM {client.qualified(table)}")
            for table in ("sociopolitical_labels", "label_sets")
        ],
        default=str,
    )
    (event,) = result.asset_materializations_for_node("sociopolitical_labels")
    shown = json.dumps({k: str(v.value) for k, v in event.metadata.items()})
    checks = json.dumps([str(c.description) for c in result.get_asset_check_evaluations()])
    captured = capfd.readouterr()
    for place in (stored, shown, checks, captured.out, captured.err):
        assert OPENAI_KEY not in place
    labels = rows(client, "sociopolitical_labels", "llm_model_name")
    assert {model for (model,) in labels.values()} == {"gpt-4o-mini"}  # the requested name


@pytest.mark.parametrize("bad_line", [{"error": "request timed out"}, ["not", "an", "object"]])
def test_a_malformed_batch_error_line_is_that_posts_reason_not_the_days_end(
    postgres, client, landing_root, serve, monkeypatch, bad_line
):
    monkeypatch.setenv("BSKY_LLM_MODE", "batch")
    monkeypatch.setenv("BSKY_LLM_BATCH_POLL_SECONDS", "0.1")
    land(landing_root, {f"p{i}": f"two groups clash, democrats vs republicans {i}" for i in
                        range(20)})  # fmt: skip
    server = serve.llm(batches=BatchOptions(completion_delay_seconds=0.1, line_failure_share=0.3))
    use_llm(server.url)
    batches = server.service.batches
    real = batches._jsonl

    def jsonl(filename, rows):  # the error file's first line becomes one of the wrong shape
        if filename.endswith("_error.jsonl"):
            rows = [bad_line, *rows[1:]]
        return real(filename, rows)

    monkeypatch.setattr(batches, "_jsonl", jsonl)
    result = llm_day(postgres, landing_root, labeller=INTERGROUP_LABELLER, posts_per_prompt=2)
    assert result.success  # unanswered posts went through the sync API in the same run
    labels = rows(client, "intergroup_labels", "was_successfully_labeled")
    assert len(labels) == 20 and all(ok for (ok,) in labels.values())
