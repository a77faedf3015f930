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

from bsky_assets.definitions import build_definitions
from bsky_assets.lib.db.client import PostgresClient
from bsky_assets.lib.db.resource import PostgresResource
from bsky_assets.llm.resource import LLMResource
from bsky_assets.perspective.resource import PerspectiveResource
from bsky_assets.posts.resource import LandingFolder
from bsky_assets.servers.llm import answers
from bsky_assets.servers.llm.batches import BatchOptions
from bsky_assets.servers.llm.server import LLMServer, LLMServerOptions
from bsky_assets_tests.conftest import use_llm, use_perspective

FIXTURE = Path(__file__).parent / "fixtures" / "wave2"
DAYS = {date(2024, 11, 5): "sync", date(2024, 11, 6): "batch"}
LLM_PORT = 47811  # the port the fixture's LLM server had (part of its labeller's name then)
LABEL_TABLES = ("perspective_labels", "sociopolitical_labels")
# What differs between two runs of the same code on the same inputs: when, server-made ids, and
# the address the LLM server listened on (provenance, since wave 3: no part of the labeller).
VOLATILE_COLUMNS = {"label_timestamp", "llm_batch_id", "llm_endpoint"}
VOLATILE_METADATA = ("duration", "per_second", "per_minute", "seconds")
# Shown since wave 2: every bin of the toxicity histogram with its count (issue 21.8).
ADDED_METADATA = {"prob_toxic_bins"}


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
    """The servers the fixture was labelled with: the synthetic scorer and the LLM heuristic
    (batches finish fast, and are polled fast)."""
    monkeypatch.setenv("BSKY_LLM_BATCH_POLL_SECONDS", "0.2")
    options = LLMServerOptions(batches=BatchOptions(completion_delay_seconds=0.2))
    with LLMServer(options) as server:  # any port: the port is no part of the labeller
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


# Wave 2 named an LLM labeller after its server's address; since wave 3 the address is
# provenance (`llm_endpoint`) and the label set is the service and the model that answered.
OLD_LLM_LABELER = f"openai-compatible@127.0.0.1:{LLM_PORT}"
IDENTITY_COLUMNS = {"label_set", "labeler", "llm_endpoint"}


def sets_of(client: PostgresClient) -> list[tuple]:
    """The registry's sets of the two wave-2 tables (labellers added since have their own)."""
    return client.fetch_all(
        "SELECT label_set, label_table, labeler, labeler_version, details "
        f"FROM {client.qualified('label_sets')} WHERE label_table = ANY(%s) ORDER BY 2",
        (list(LABEL_TABLES),),
    )


def without(rows: list[dict], columns: set[str]) -> list[dict]:
    return [{c: v for c, v in row.items() if c not in columns} for row in rows]


def test_a_wave2_database_is_read_as_it_is_and_nothing_is_sent_again(
    postgres, client, wave2_servers
):
    restore_wave2(client)
    before = {table: label_rows(client, table) for table in LABEL_TABLES}
    (perspective_set, _, _, _, _), (old_llm_set, _, old_labeler, _, details) = sets_of(client)
    assert old_labeler == OLD_LLM_LABELER

    shown = label_both_days(postgres, dict.fromkeys(DAYS, "sync"))

    for key, metadata in shown.items():
        assert metadata["posts_sent"].value == 0, key
        assert metadata["this_run"].value == {}, key
    after = {table: label_rows(client, table) for table in LABEL_TABLES}
    assert after["perspective_labels"] == before["perspective_labels"]  # untouched
    # The LLM rows keep every value and timestamp; only their identity columns move.
    llm_before, llm_after = before["sociopolitical_labels"], after["sociopolitical_labels"]
    assert without(llm_after, IDENTITY_COLUMNS) == without(llm_before, IDENTITY_COLUMNS)
    [new_set] = {row["label_set"] for row in llm_after}
    assert new_set == shown["2024-11-05/sociopolitical_labels"]["label_set"].value != old_llm_set
    for row in llm_after:
        if row["labeler"] != "bsky_assets.valid_posts":  # rows of posts never sent stay so
            assert (row["labeler"], row["llm_endpoint"]) == (
                "openai-compatible",
                f"127.0.0.1:{LLM_PORT}",
            )
    assert sets_of(client) == [
        (perspective_set, "perspective_labels", *sets_of(client)[0][2:]),
        (new_set, "sociopolitical_labels", "openai-compatible", answers.MODEL_NAME, details),
    ]


def test_the_same_landing_files_give_the_same_rows_and_metadata(
    postgres, client, second_schema, wave2_servers
):
    restore_wave2(second_schema.get_client())
    label_both_days(second_schema, dict.fromkeys(DAYS, "sync"))  # wave 2's rows, wave 3's ids
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
            and name not in ADDED_METADATA
        }
        if key.endswith("sociopolitical_labels"):  # the identity moved, as above
            assert values.pop("labeler") == "openai-compatible"
            assert values.pop("llm_endpoint").startswith("127.0.0.1:")
            values.pop("label_set")
            assert "llm_endpoint" in values.pop("dagster/column_schema")  # a column since
            assert expected[key].pop("labeler") == OLD_LLM_LABELER
            expected[key].pop("label_set")
            expected[key].pop("dagster/column_schema")
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
