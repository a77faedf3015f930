"""A database written by the wave-2 code (fixtures/wave2, commit b799ab1) keeps working.

Two promises, on the same landing files that code labelled:
- today's code reads that database, sends nothing again and changes no label row;
- labelling the same files afresh writes the same rows and shows the same metadata.

The fixture holds the landing files, a `pg_dump --inserts` of the schema that code wrote, and
what each label asset's materialization showed (make_fixture.py says how it was made).
"""

from __future__ import annotations

import gzip
import json
import os
import re
import uuid
from collections.abc import Iterator
from datetime import date
from pathlib import Path

import dagster as dg
import pytest

from bsky_assets.db.client import PostgresClient
from bsky_assets.definitions import build_definitions
from bsky_assets.llm.resource import LLMResource
from bsky_assets.resources.landing import LandingFolder
from bsky_assets.resources.perspective import PerspectiveResource
from bsky_assets.resources.postgres import PostgresResource
from bsky_assets.servers.llm.batches import BatchOptions
from bsky_assets.servers.llm.server import LLMServer, LLMServerOptions
from bsky_assets_tests.conftest import use_llm, use_perspective

FIXTURE = Path(__file__).parent / "fixtures" / "wave2"
DAYS = {date(2024, 11, 5): "sync", date(2024, 11, 6): "batch"}
LLM_PORT = 47811  # the port the fixture's LLM server had (it is part of that code's labeler)
LABEL_TABLES = ("perspective_labels", "sociopolitical_labels")
# What differs between two runs of the same code on the same inputs: when, and server-made ids.
VOLATILE_COLUMNS = {"label_timestamp", "llm_batch_id"}
VOLATILE_METADATA = ("duration", "per_second", "per_minute", "seconds")


def restore_wave2(client: PostgresClient) -> None:
    """Load the fixture's dump into the client's schema (which must not exist yet)."""
    with gzip.open(FIXTURE / "dump.sql.gz", "rt") as handle:
        dump = handle.read()
    dump = re.sub(r"\bwave2\b", client.schema, dump)
    with client.engine.begin() as conn:
        conn.connection.driver_connection.execute(dump)


def label_rows(client: PostgresClient, table: str, volatile: bool = True) -> list[dict]:
    """Every row of a label table, as dicts in key order, without volatile columns."""
    columns = [
        row[0]
        for row in client.fetch_all(
            "SELECT column_name FROM information_schema.columns WHERE table_schema = %s "
            "AND table_name = %s ORDER BY ordinal_position",
            (client.schema, table),
        )
    ]
    rows = client.fetch_all(
        f"SELECT * FROM {client.qualified(table)} ORDER BY partition_date, uri, label_set"
    )
    return [
        {c: v for c, v in zip(columns, row, strict=True) if volatile or c not in VOLATILE_COLUMNS}
        for row in rows
    ]


@pytest.fixture
def second_schema(database_url) -> Iterator[PostgresResource]:
    schema = f"test_{uuid.uuid4().hex[:10]}"
    resource = PostgresResource(
        database_url=database_url.render_as_string(hide_password=False), db_schema=schema
    )
    yield resource
    with resource.get_client().engine.begin() as conn:
        conn.connection.driver_connection.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


@pytest.fixture
def wave2_servers(local_perspective, monkeypatch) -> Iterator[None]:
    """The servers the fixture was labelled with: the synthetic scorer, and the LLM heuristic on
    the fixture's port (batches finish fast, and are polled fast)."""
    monkeypatch.setenv("BSKY_LLM_BATCH_POLL_SECONDS", "0.2")
    options = LLMServerOptions(batches=BatchOptions(completion_delay_seconds=0.2))
    with LLMServer(options, port=LLM_PORT) as server:
        use_perspective(local_perspective.url)
        use_llm(server.url)
        yield


def label_both_days(postgres: PostgresResource, modes: dict[date, str]) -> dict[str, dict]:
    """The main job for each fixture day; what each label asset's materialization showed."""
    defs = build_definitions(
        postgres=postgres,
        landing=LandingFolder(path=str(FIXTURE / "landing")),
        perspective=PerspectiveResource(requests_per_second=10_000),
        llm=LLMResource(requests_per_minute=600_000, tokens_per_minute=100_000_000),
    )
    shown = {}
    for day, mode in modes.items():
        os.environ["BSKY_LLM_MODE"] = mode
        try:
            result = defs.resolve_job_def("label_posts").execute_in_process(
                partition_key=day.isoformat()
            )
        finally:
            os.environ.pop("BSKY_LLM_MODE", None)
        assert result.success
        for asset in LABEL_TABLES:
            (event,) = result.asset_materializations_for_node(asset)
            shown[f"{day}/{asset}"] = event.metadata
    return shown


def test_a_wave2_database_is_read_as_it_is_and_nothing_is_sent_again(
    postgres, client, wave2_servers
):
    restore_wave2(client)
    before = {table: label_rows(client, table) for table in LABEL_TABLES}
    # (labellers added since, e.g. valence, register sets of their own)
    sets_sql = (
        f"SELECT * FROM {client.qualified('label_sets')} WHERE label_table = ANY(%s) ORDER BY 1"
    )
    label_sets = client.fetch_all(sets_sql, (list(LABEL_TABLES),))

    shown = label_both_days(postgres, dict.fromkeys(DAYS, "sync"))

    for key, metadata in shown.items():
        assert metadata["posts_sent"].value == 0, key
        assert metadata["this_run"].value == {}, key
    assert {table: label_rows(client, table) for table in LABEL_TABLES} == before
    assert client.fetch_all(sets_sql, (list(LABEL_TABLES),)) == label_sets


def test_the_same_landing_files_give_the_same_rows_and_metadata(
    postgres, client, second_schema, wave2_servers
):
    restore_wave2(second_schema.get_client())
    shown = label_both_days(postgres, DAYS)

    for table in LABEL_TABLES:
        assert label_rows(client, table, volatile=False) == label_rows(
            second_schema.get_client(), table, volatile=False
        )
    expected = json.loads((FIXTURE / "metadata.json").read_text())
    for key, metadata in shown.items():
        values = {
            name: _plain(value.value, client.schema)
            for name, value in metadata.items()
            if not any(word in name for word in VOLATILE_METADATA)
            and not str(value.value).startswith("![")
        }
        assert values == expected[key], key


def _plain(value: object, schema: str) -> object:
    """A metadata value as the fixture stored it (JSON, the schema named `wave2`)."""
    if isinstance(value, dg.TableSchema) or not isinstance(
        value, int | float | str | bool | dict | list | type(None)
    ):
        value = str(value)
    if isinstance(value, str):
        return value.replace(f"{schema}.", "wave2.")
    return value
