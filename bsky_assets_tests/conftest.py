"""Shared fixtures: a real Postgres (the project's embedded server), a schema per test."""

import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from datetime import date
from pathlib import Path

import dagster as dg
import pytest
from sqlalchemy.engine import URL

from bsky_assets.definitions import build_definitions
from bsky_assets.lib.db.client import PostgresClient
from bsky_assets.lib.db.embedded import (
    embedded_admin_url,
    ensure_embedded_server,
    stop_embedded_server,
    to_sqlalchemy_url,
)
from bsky_assets.lib.db.resource import PostgresResource
from bsky_assets.llm.resource import LLMResource
from bsky_assets.perspective.resource import PerspectiveResource
from bsky_assets.posts.resource import LandingFolder
from bsky_assets.servers.llm.server import LLMServer, LLMServerOptions
from bsky_assets.servers.perspective.server import PerspectiveServer, ServerOptions

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
SHARED_SAMPLE = SHARED_DATA / "landing_sample"
PERSPECTIVE_SCORED = SHARED_DATA / "perspective_scored" / "reddit_politicalhumor_2024-02.csv"
SAMPLE_DAY = date(2024, 6, 1)


# Where the labelling services are and their keys come only from the environment (settings.py):
# each test starts with none of them set, and whatever it sets is undone after it.
SERVICE_VARIABLES = (
    "PERSPECTIVE_URL", "PERSPECTIVE_API_KEY", "PERSPECTIVE_SERVER_API_KEY",
    "PERSPECTIVE_REQUESTS_PER_SECOND", "OPENAI_BASE_URL", "OPENAI_API_KEY", "BSKY_LLM_MODEL",
    "BSKY_LLM_REQUESTS_PER_MINUTE", "BSKY_LLM_TOKENS_PER_MINUTE", "BSKY_SUCCESSOR_ENCODER",
    "BSKY_DEVICE", "BSKY_PERSPECTIVE_TRANSPORT",
)  # fmt: skip


EXPORT_VARIABLES = (
    "BSKY_EXPORT_DEST", "BSKY_EXPORT_TEXT", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN", "AWS_REGION", "AWS_DEFAULT_REGION", "AWS_ENDPOINT_URL",
    "AWS_ENDPOINT_URL_S3",
)  # fmt: skip


@pytest.fixture(autouse=True)
def isolated_environment() -> Iterator[None]:
    saved = {name: os.environ.pop(name) for name in SERVICE_VARIABLES if name in os.environ}
    # The successor's full tier (a sentence encoder on 2 shared cores) only where a test asks
    # for it (successor/test_full_tier.py); no test ever reaches the Hugging Face hub.
    os.environ["BSKY_SUCCESSOR_ENCODER"] = "none"
    os.environ["HF_HUB_OFFLINE"] = "1"
    yield
    for name in SERVICE_VARIABLES:
        os.environ.pop(name, None)
    os.environ.update(saved)


@pytest.fixture(autouse=True)
def isolated_exports(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Every test's exports (the main job ends with label_exports) go to a folder of its own,
    never into the repository's data dir; text stays out unless a test turns it on."""
    saved = {name: os.environ.pop(name, None) for name in EXPORT_VARIABLES}
    exports = tmp_path_factory.mktemp("exports")
    os.environ["BSKY_EXPORT_DEST"] = str(exports)
    yield exports
    for name, value in saved.items():
        os.environ.pop(name, None)
        if value is not None:
            os.environ[name] = value


def use_perspective(url: str, key: str | None = None) -> None:
    """Point runs of this test at a Perspective server (a self-hosted one's own key)."""
    os.environ["PERSPECTIVE_URL"] = url
    if key:
        os.environ["PERSPECTIVE_SERVER_API_KEY"] = key
    else:
        os.environ.pop("PERSPECTIVE_SERVER_API_KEY", None)


def use_llm(url: str, key: str | None = None) -> None:
    os.environ["OPENAI_BASE_URL"] = url
    if key:
        os.environ["OPENAI_API_KEY"] = key
    else:
        os.environ.pop("OPENAI_API_KEY", None)


@pytest.fixture(scope="session")
def embedded_pgdata(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path | None]:
    """A fresh embedded Postgres for the session, unless BSKY_TEST_DATABASE_URL is set."""
    if os.environ.get("BSKY_TEST_DATABASE_URL"):
        yield None
        return
    pgdata = tmp_path_factory.mktemp("pg") / "postgres"
    try:
        ensure_embedded_server(pgdata)
        yield pgdata
    finally:
        stop_embedded_server(pgdata)


@pytest.fixture(scope="session")
def database_url(embedded_pgdata: Path | None) -> URL:
    """What the pipeline connects as: the embedded server's own non-superuser role."""
    if embedded_pgdata is None:
        return to_sqlalchemy_url(os.environ["BSKY_TEST_DATABASE_URL"])
    return ensure_embedded_server(embedded_pgdata)


@pytest.fixture(scope="session")
def admin_database_url(embedded_pgdata: Path | None) -> URL:
    """A role that may create databases (only tests of Dagster's own storage need one)."""
    if embedded_pgdata is None:
        return to_sqlalchemy_url(os.environ["BSKY_TEST_DATABASE_URL"])
    return embedded_admin_url(embedded_pgdata)


@pytest.fixture
def db_schema(database_url: URL) -> Iterator[str]:
    schema = f"test_{uuid.uuid4().hex[:10]}"
    yield schema
    client = PostgresClient(database_url, schema)
    with client.engine.begin() as conn:
        conn.connection.driver_connection.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


@pytest.fixture
def postgres(database_url: URL, db_schema: str) -> PostgresResource:
    return PostgresResource(
        database_url=database_url.render_as_string(hide_password=False), db_schema=db_schema
    )


@pytest.fixture
def client(postgres: PostgresResource) -> PostgresClient:
    return postgres.get_client()


@pytest.fixture
def landing_root(tmp_path: Path) -> Path:
    root = tmp_path / "landing"
    root.mkdir()
    return root


class Servers:
    """Starts the project's servers for one test, on loopback; stops them after it."""

    def __init__(self) -> None:
        self.started: list[PerspectiveServer | LLMServer] = []

    def perspective(self, **options) -> PerspectiveServer:
        server = PerspectiveServer(ServerOptions(**options)).start()
        self.started.append(server)
        return server

    def llm(self, **options) -> LLMServer:
        server = LLMServer(LLMServerOptions(**options)).start()
        self.started.append(server)
        return server


@pytest.fixture
def serve() -> Iterator[Servers]:
    servers = Servers()
    yield servers
    for server in servers.started:
        server.stop()


@pytest.fixture(scope="session")
def local_perspective() -> Iterator[PerspectiveServer]:
    """A Perspective-compatible server with the synthetic scorer, shared by the session."""
    with PerspectiveServer(ServerOptions(scorer="synthetic")) as server:
        yield server


@pytest.fixture
def perspective(local_perspective: PerspectiveServer) -> PerspectiveResource:
    use_perspective(local_perspective.url)
    return PerspectiveResource(requests_per_second=10_000)


@pytest.fixture(scope="session")
def local_llm() -> Iterator[LLMServer]:
    """An OpenAI-compatible server (keyword heuristic), shared by the session."""
    with LLMServer() as server:
        yield server


@pytest.fixture
def llm(local_llm: LLMServer) -> LLMResource:
    use_llm(local_llm.url)
    return LLMResource(requests_per_minute=600_000, tokens_per_minute=100_000_000)


@pytest.fixture
def defs(
    postgres: PostgresResource,
    landing_root: Path,
    perspective: PerspectiveResource,
    llm: LLMResource,
) -> dg.Definitions:
    return build_definitions(
        postgres=postgres,
        landing=LandingFolder(path=str(landing_root)),
        perspective=perspective,
        llm=llm,
    )


def subprocess_env(database_url: URL | None, **extra: str) -> dict[str, str]:
    """The environment for a command under test: this test's database (None: no DATABASE_URL,
    so the command starts the embedded one of its data dir), and no real API keys inherited
    from the machine (a test must never reach a real service)."""
    environment = {k: v for k, v in os.environ.items() if not k.endswith("_API_KEY")}
    environment.pop("DATABASE_URL", None)
    if database_url is not None:
        environment["DATABASE_URL"] = database_url.render_as_string(hide_password=False)
    return environment | extra


def materialize_in_subprocess(
    env: dict[str, str], tmp_path: Path, select: str, day: date, config: dict | None = None
) -> subprocess.Popen:
    """`dagster asset materialize` for one day in its own process group (so kill -9 reaches the
    step process too), with a fresh DAGSTER_HOME; `env` comes from `subprocess_env`."""
    home = tmp_path / f"home-{time.monotonic_ns()}"
    home.mkdir()
    command = [
        str(Path(sys.executable).parent / "dagster"), "asset", "materialize",
        "-m", "bsky_assets.definitions", "--select", select, "--partition", day.isoformat(),
    ]  # fmt: skip
    if config:
        command += ["--config-json", json.dumps(config)]
    return subprocess.Popen(
        command,
        env=env | {"DAGSTER_HOME": str(home)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )


def materialize_day(
    defs: dg.Definitions, day: date, upstream_of: str | None = None, **kwargs
) -> dg.ExecuteInProcessResult:
    """Run the main job for a day, or only `upstream_of` an asset and what it depends on."""
    if upstream_of is None:
        job = defs.resolve_job_def("label_posts")
    else:
        selection = (
            dg.AssetSelection.assets(upstream_of).upstream().required_multi_asset_neighbors()
        )
        job = defs.resolve_implicit_global_asset_job_def().get_subset(
            asset_selection=selection.resolve(defs.resolve_asset_graph())
        )
    return job.execute_in_process(partition_key=day.isoformat(), **kwargs)


def write_jsonl(path: Path, records: list[dict | bytes]) -> Path:
    """Write records (dicts as JSON, bytes verbatim) as a batch, via write-then-rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name("." + path.name + ".tmp")
    with tmp.open("wb") as handle:
        for record in records:
            line = record if isinstance(record, bytes) else json.dumps(record).encode()
            handle.write(line + b"\n")
    tmp.rename(path)
    return path


def shared(path: Path) -> Path:
    """A file of ../shared/data: a test that needs it fails without it (never a silent skip).
    The project itself never needs these files."""
    if not path.exists():
        pytest.fail(f"{path} is missing: these tests need the shared sample data beside the repo")
    return path


def post(uri_suffix: str, text: str = "a post long enough to label", **fields) -> dict:
    record = {
        "uri": f"at://did:plc:test/app.bsky.feed.post/{uri_suffix}",
        "text": text,
        "created_at": "2024-06-01T10:00:00Z",
        "preprocessing_timestamp": "2024-06-01T12:00:00Z",
        "langs": ["en"],
    }
    record.update(fields)
    return record


def table_rows(client: PostgresClient, table: str, day: date, order: str = "uri") -> list[tuple]:
    return client.fetch_all(
        f"SELECT * FROM {client.qualified(table)} WHERE partition_date = %s ORDER BY {order}",
        (day,),
    )
