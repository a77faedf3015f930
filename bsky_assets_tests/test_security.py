"""The probes of the security review, as tests: each would have leaked or been accepted before."""

import json
import logging
import os
import time
import tomllib
from pathlib import Path

import dagster as dg
import httplib2
import pytest
from googleapiclient.errors import HttpError
from sqlalchemy.engine import make_url

from bsky_assets.lib.db.embedded import psql_invocation
from bsky_assets.lib.secrets import protect_logs
from bsky_assets.llm.client import LLMSettings, LLMTaskClient, Post, _model_name
from bsky_assets.llm.resource import LLMResource
from bsky_assets.perspective.client import Comment, PerspectiveClient, PerspectiveSettings
from bsky_assets.perspective.discovery import is_google
from bsky_assets.perspective.resource import PerspectiveResource
from bsky_assets.sociopolitical.task import SOCIOPOLITICAL
from bsky_assets_tests.conftest import SAMPLE_DAY, materialize_day, post, write_jsonl

REPO = Path(__file__).resolve().parents[1]
GOOGLE_KEY = "fake-google-key-for-security-tests-0011"
OPENAI_KEY = "fake-openai-key-for-security-tests-0012"


def test_run_config_cannot_redirect_a_key_or_print_it(defs, landing_root):
    """base_url, model and the keys are not resource config: a run that tries is refused."""
    for resource, field in [("llm", "base_url"), ("llm", "model"), ("llm", "api_key"),
                            ("perspective", "base_url"), ("perspective", "api_key")]:  # fmt: skip
        run_config = {"resources": {resource: {"config": {field: "http://attacker.test"}}}}
        with pytest.raises(dg.DagsterInvalidConfigError, match=field):
            materialize_day(defs, SAMPLE_DAY, run_config=run_config)


def test_googles_key_never_goes_to_another_server(serve):
    os.environ["PERSPECTIVE_API_KEY"] = GOOGLE_KEY
    server = serve.perspective()
    os.environ["PERSPECTIVE_URL"] = server.url
    settings = PerspectiveResource(requests_per_second=10_000).client_settings()
    assert settings.api_key is None  # a self-hosted server gets only its own key
    os.environ["PERSPECTIVE_URL"] = "http://commentanalyzer.googleapis.com"
    with pytest.raises(Exception, match="https only"):
        PerspectiveResource().client_settings()


def test_the_key_travels_in_a_header_not_the_url(serve, caplog):
    caplog.set_level(logging.DEBUG)
    server = serve.perspective(require_key=True, api_keys=("self-hosted-key-0013",))
    client = PerspectiveClient(
        PerspectiveSettings(base_url=server.url, api_key="self-hosted-key-0013", max_retries=0)
    )
    results = [r for batch in client.analyze([Comment("a", "a comment")]) for r in batch]
    assert results[0].scores  # the server accepted the key
    assert "self-hosted-key-0013" not in caplog.text and "key=" not in caplog.text


def test_exact_google_host_only() -> None:
    assert is_google("https://commentanalyzer.googleapis.com")
    for url in ("https://evilgoogleapis.com", "https://commentanalyzer.googleapis.com.evil.test",
                "https://x.googleapis.com", "http://127.0.0.1:1/googleapis.com"):  # fmt: skip
        assert not is_google(url)


def test_credentials_in_a_url_never_reach_rows_or_metadata(postgres, client, landing_root, serve):
    server = serve.llm()
    write_jsonl(landing_root / SAMPLE_DAY.isoformat() / "b.jsonl", [post("1")])
    os.environ["OPENAI_BASE_URL"] = server.url.replace("http://", "http://someone:pa55word@")
    llm = LLMResource(requests_per_minute=60_000, tokens_per_minute=10_000_000)
    from bsky_assets.definitions import build_definitions
    from bsky_assets.posts.resource import LandingFolder

    defs = build_definitions(
        postgres=postgres, landing=LandingFolder(path=str(landing_root)), llm=llm
    )
    result = materialize_day(defs, SAMPLE_DAY, upstream_of="sociopolitical_labels")
    assert result.success
    rows = repr(client.fetch_all(f"SELECT * FROM {client.qualified('sociopolitical_labels')}"))
    metadata = repr(result.asset_materializations_for_node("sociopolitical_labels"))
    assert "pa55word" not in rows + metadata and "someone" not in rows + metadata


def test_text_a_server_sends_back_is_shaped_and_scrubbed() -> None:
    client = PerspectiveClient(
        PerspectiveSettings(base_url="http://127.0.0.1:9", api_key=GOOGLE_KEY, max_retries=0)
    )

    def reason(payload: dict) -> str:
        error = HttpError(httplib2.Response({"status": 400}), json.dumps(payload).encode())
        return client._reason(error)

    assert reason({"error": {"details": [{"errorType": "COMMENT_EMPTY"}]}}) == "COMMENT_EMPTY"
    odd = {"error": {"message": f"bad key={GOOGLE_KEY}", "details": [{"errorType": "<b>x"}]}}
    assert reason(odd) == "http_400: bad key=***"
    assert _model_name("gpt-4o-mini-2024-07-18") == "gpt-4o-mini-2024-07-18"
    assert _model_name("<script>alert(1)</script>") is None and _model_name("x" * 500) is None


def test_no_logger_prints_a_key_whatever_its_name(caplog) -> None:
    protect_logs(OPENAI_KEY)
    caplog.set_level(logging.DEBUG)
    for name in ("httpx2", "httpcore2", "a.library.nobody.listed"):
        logging.getLogger(name).debug(
            "HTTP Request: GET https://x.test/v1?key=%s Authorization: Bearer %s", "abc", OPENAI_KEY
        )
    assert OPENAI_KEY not in caplog.text and "key=abc" not in caplog.text


def test_partial_run_config_keeps_the_key(postgres, landing_root, serve):
    """Run config for one field of a resource used to drop the EnvVar key with the rest."""
    server = serve.perspective(require_key=True, api_keys=("self-hosted-key-0014",))
    os.environ["PERSPECTIVE_URL"] = server.url
    os.environ["PERSPECTIVE_SERVER_API_KEY"] = "self-hosted-key-0014"
    write_jsonl(landing_root / SAMPLE_DAY.isoformat() / "b.jsonl", [post("1")])
    from bsky_assets.definitions import build_definitions
    from bsky_assets.posts.resource import LandingFolder

    defs = build_definitions(postgres=postgres, landing=LandingFolder(path=str(landing_root)))
    run_config = {"resources": {"perspective": {"config": {"batch_size": 10}}}}
    result = materialize_day(
        defs, SAMPLE_DAY, upstream_of="perspective_labels", run_config=run_config
    )
    assert result.success
    metadata = result.asset_materializations_for_node("perspective_labels")[-1].metadata
    assert metadata["this_run"].value == {"labelled": 1}


def test_retry_after_is_capped_by_max_backoff(serve) -> None:
    server = serve.llm(requests_per_minute=1)  # retry-after up to a minute
    slept: list[float] = []

    def sleep(seconds: float) -> None:  # recorded, and short: the cap is what is tested
        slept.append(seconds)
        time.sleep(min(seconds, 0.05))

    client = LLMTaskClient(
        LLMSettings(
            base_url=server.url,
            requests_per_minute=6_000_000,  # the client's own pacing never waits here
            tokens_per_minute=1_000_000_000,
            max_retries=3,
            max_backoff_seconds=0.05,
            posts_per_prompt=1,
        ),
        SOCIOPOLITICAL,
        sleep=sleep,
    )
    list(client.label([Post(f"p{i}", f"post number {i}") for i in range(3)]))
    assert server.stats["status_429"] > 0 and max(slept) <= 0.05


def test_local_servers_check_their_key_and_guard_stats_reset(serve) -> None:
    import urllib.error
    import urllib.request

    perspective = serve.perspective(require_key=True, api_keys=("k1",))
    llm = serve.llm(api_keys=("k2",))
    reset = perspective.url + "/stats/reset"
    attempts = [
        (reset, {}),
        (llm.url.removesuffix("/v1") + "/stats/reset", {}),
        (reset, {"x-goog-api-key": "wrong"}),
    ]
    for url, headers in attempts:
        request = urllib.request.Request(url, data=b"", headers=headers, method="POST")
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(request, timeout=5)
        assert refused.value.code in (401, 403)
    ok = urllib.request.Request(
        perspective.url + "/stats/reset", data=b"", headers={"x-goog-api-key": "k1"}, method="POST"
    )
    assert urllib.request.urlopen(ok, timeout=5).status == 200


def test_psql_never_gets_the_password_on_its_command_line() -> None:
    url = make_url("postgresql+psycopg://bsky_pipeline:s3cret-pw@/postgres?host=/tmp/pg")
    argv, env = psql_invocation("/usr/bin/psql", url, "bsky", ("-c", "select 1"))
    assert "s3cret-pw" not in " ".join(argv) and env["PGPASSWORD"] == "s3cret-pw"


def test_the_pipeline_is_no_superuser_and_cannot_run_programs(client) -> None:
    (superuser,) = client.fetch_all("SELECT rolsuper FROM pg_roles WHERE rolname = current_user")[0]
    assert superuser is False
    client.execute(f"CREATE SCHEMA IF NOT EXISTS {client.qualified('x').split('.')[0]}")
    with pytest.raises(Exception, match="permission denied"):
        client.execute(f"CREATE TABLE {client.qualified('probe')} AS SELECT 1 AS a; "
                       f"COPY {client.qualified('probe')} FROM PROGRAM 'id'")  # fmt: skip


def test_the_build_backend_and_setuptools_are_pinned() -> None:
    build = tomllib.loads((REPO / "pyproject.toml").read_text())["build-system"]["requires"]
    assert all("==" in requirement for requirement in build)
    constraints = (REPO / "constraints.txt").read_text().splitlines()
    assert any(line.startswith("setuptools==") for line in constraints)


def test_the_demo_summary_never_prints_the_database_password(client, capsys) -> None:
    from datetime import date

    from bsky_assets.perspective.tables import PERSPECTIVE_LABELS
    from bsky_assets.posts.tables import LANDING_REJECTS, PREPROCESSED_POSTS
    from bsky_assets.sociopolitical.task import SOCIOPOLITICAL
    from bsky_assets.tools.demo import print_summary

    for spec in (PREPROCESSED_POSTS, LANDING_REJECTS, PERSPECTIVE_LABELS, SOCIOPOLITICAL.table):
        client.ensure_table(spec)
    print_summary(client, date(2024, 11, 5))
    out = capsys.readouterr().out
    assert client.url.password and client.url.password not in out and "***" in out
