"""The Postgres client: write modes, atomicity, streaming reads, identifiers."""

from datetime import UTC, date, datetime

import polars as pl
import pytest

from bsky_assets.lib.db.client import PostgresClient
from bsky_assets.lib.db.partition_slice import PartitionSlice
from bsky_assets.lib.db.tables import PARTITION, Column, TableSpec, WriteMode, validate_identifier
from bsky_assets.posts.tables import CLASSIFICATION_METADATA

DAY = date(2024, 6, 1)
OTHER_DAY = date(2024, 6, 2)

SCORES = TableSpec(
    name="scores",
    columns=(
        PARTITION,
        Column("uri", "text", pl.String(), nullable=False),
        Column("score", "double precision", pl.Float64()),
        Column("note", "text", pl.String()),
        Column("seen_at", "timestamptz", pl.Datetime("us", "UTC")),
    ),
    primary_key=("partition_date", "uri"),
)


def frame(rows: list[tuple[str, float | None, str | None]]) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "uri": [r[0] for r in rows],
            "score": [r[1] for r in rows],
            "note": [r[2] for r in rows],
            "seen_at": [datetime(2024, 6, 1, 12, tzinfo=UTC)] * len(rows),
        },
        schema=SCORES.polars_schema(["uri", "score", "note", "seen_at"]),
    )


def stored(client: PostgresClient, day: date = DAY) -> list[tuple]:
    return client.fetch_all(
        f"SELECT uri, score, note FROM {client.qualified('scores')} "
        "WHERE partition_date = %s ORDER BY uri",
        (day,),
    )


def test_replace_writes_exactly_the_partition(client: PostgresClient) -> None:
    client.write_partition(SCORES, OTHER_DAY, frame([("z", 9.0, "other day")]))
    client.write_partition(SCORES, DAY, frame([("a", 0.1, None), ("b", 0.2, "")]))
    client.write_partition(SCORES, DAY, frame([("b", 0.3, 'x,"y"\nz'), ("c", None, "\\N")]))
    # Nulls and empty strings survive COPY distinctly, quoting too; the other day is untouched.
    assert stored(client) == [("b", 0.3, 'x,"y"\nz'), ("c", None, "\\N")]
    assert stored(client, OTHER_DAY) == [("z", 9.0, "other day")]


def test_failed_write_leaves_the_old_partition_intact(client: PostgresClient) -> None:
    client.write_partition(SCORES, DAY, frame([("a", 0.1, None), ("b", 0.2, None)]))

    def frames_that_fail():
        yield frame([("c", 0.3, None)])
        raise RuntimeError("upstream died mid-stream")

    with pytest.raises(RuntimeError, match="mid-stream"):
        client.write_partition(SCORES, DAY, frames_that_fail())
    with pytest.raises(Exception, match="null value"):  # NOT NULL uri, rejected by Postgres
        client.write_partition(SCORES, DAY, frame([("d", 0.4, None), (None, 0.5, None)]))
    assert stored(client) == [("a", 0.1, None), ("b", 0.2, None)]


def test_upsert_overwrites_by_key_and_keeps_other_rows(client: PostgresClient) -> None:
    client.write_partition(SCORES, DAY, frame([("a", 0.1, "old"), ("b", 0.2, "old")]))
    client.write_partition(
        SCORES, DAY, frame([("b", 0.9, "new"), ("c", 0.5, "new")]), WriteMode.UPSERT
    )
    assert stored(client) == [("a", 0.1, "old"), ("b", 0.9, "new"), ("c", 0.5, "new")]


def test_insert_missing_keeps_existing_rows(client: PostgresClient) -> None:
    first = pl.DataFrame(
        {
            "uri": ["a"],
            "batch_id": ["b1"],
            "preprocessing_timestamp": [datetime(2024, 6, 1, tzinfo=UTC)],
            "text_length": [10],
            "langs": ['["en"]'],
        }
    )
    client.write_partition(CLASSIFICATION_METADATA, DAY, first)
    second = first.with_columns(batch_id=pl.lit("b2")).vstack(first.with_columns(uri=pl.lit("b")))
    client.write_partition(CLASSIFICATION_METADATA, DAY, second)
    rows = client.fetch_all(
        f"SELECT uri, batch_id FROM {client.qualified('classification_metadata')} ORDER BY uri"
    )
    assert rows == [("a", "b1"), ("b", "b1")]


def test_slice_streams_in_chunks_in_key_order(client: PostgresClient) -> None:
    rows = [(f"u{i:03d}", float(i), None) for i in range(25)]
    client.write_partition(SCORES, DAY, frame(rows))
    chunks = list(PartitionSlice(client, SCORES, DAY).iter_frames(["uri", "score"], chunk_rows=10))
    assert [c.height for c in chunks] == [10, 10, 5]
    assert pl.concat(chunks).get_column("uri").to_list() == [r[0] for r in rows]
    assert PartitionSlice(client, SCORES, DAY).count() == 25


def test_rows_of_another_partition_are_refused(client: PostgresClient) -> None:
    wrong = frame([("a", 0.1, None)]).with_columns(partition_date=pl.lit(OTHER_DAY))
    with pytest.raises(ValueError, match="written to 2024-06-01"):
        client.write_partition(SCORES, DAY, wrong)


def test_unknown_columns_and_bad_identifiers_are_refused(client: PostgresClient) -> None:
    with pytest.raises(ValueError, match="not in the table"):
        client.write_partition(SCORES, DAY, frame([("a", 1.0, None)]).with_columns(x=pl.lit(1)))
    for bad in ["Robert'); DROP TABLE x;--", "a b", "UPPER", "1abc", ""]:
        with pytest.raises(ValueError, match="invalid SQL identifier"):
            validate_identifier(bad)
    with pytest.raises(ValueError, match="invalid SQL identifier"):
        PostgresClient(client.url, 'bsky"; drop schema public')


def test_write_mode_default_comes_from_the_spec() -> None:
    assert CLASSIFICATION_METADATA.write_mode is WriteMode.INSERT_MISSING
    assert SCORES.write_mode is WriteMode.REPLACE


def test_upsert_with_a_repeated_key_is_refused_and_changes_nothing(client: PostgresClient) -> None:
    client.write_partition(SCORES, DAY, frame([("a", 0.1, "old")]))
    with pytest.raises(Exception, match="duplicate key"):
        client.write_partition(
            SCORES, DAY, frame([("a", 0.2, "new"), ("a", 0.3, "newer")]), WriteMode.UPSERT
        )
    assert stored(client) == [("a", 0.1, "old")]


def test_upsert_streams_chunks_and_later_chunks_win(client: PostgresClient) -> None:
    chunks = [frame([("a", 0.1, "first"), ("b", 0.2, "first")]), frame([("a", 0.9, "second")])]
    assert client.write_partition(SCORES, DAY, iter(chunks), WriteMode.UPSERT) == 3
    assert stored(client) == [("a", 0.9, "second"), ("b", 0.2, "first")]


def test_an_upsert_never_keeps_a_plan_made_while_its_table_was_empty(
    client: PostgresClient,
) -> None:
    """psycopg prepares a query after five runs, and the server then keeps the plan it made
    from that moment's statistics. The delete of a label table's upserts, kept from while the
    day's table was empty, read the whole partition for every 10-row write; it must be planned
    each time. A query run as often on the same connection is prepared: the check can fail."""
    client.engine.dispose()  # one connection from here on: earlier tests left others pooled
    for i in range(12):  # small writes into a table that starts empty, as label batches are
        batch = [(f"p{i}-{j}", float(j), None) for j in range(10)]
        client.write_partition(SCORES, DAY, frame(batch), WriteMode.UPSERT)
    for _ in range(6):  # committed, as the writes are (a rollback clears psycopg's cache)
        client.execute("SELECT %s::int", (1,))
    prepared = [r[0] for r in client.fetch_all("SELECT statement FROM pg_prepared_statements")]
    assert any(statement.startswith("SELECT $1::int") for statement in prepared)  # same connection
    assert not [statement for statement in prepared if statement.startswith("DELETE")]
    assert len(stored(client)) == 120


@pytest.mark.parametrize("n_keys", [10, 2_000])
def test_an_upserts_delete_reads_its_keys_never_the_whole_partition(
    client: PostgresClient, n_keys: int
) -> None:
    """Statistics lag a day's writes: analysed before today's rows came, they call today's
    partition empty, and a delete the planner is free to plan walks the whole partition (for 10
    keys or 2,000). The delete reads one row per key."""
    from bsky_assets.lib.db.statements import delete_keys

    client.write_partition(
        SCORES, OTHER_DAY, frame([(f"o{i:05}", 1.0, None) for i in range(5_000)])
    )
    client.analyze(SCORES)  # yesterday's ANALYZE
    client.write_partition(SCORES, DAY, frame([(f"u{i:05}", 1.0, None) for i in range(20_000)]))
    keys = frame([(f"u{i:05}", 2.0, None) for i in range(0, 20_000, 20_000 // n_keys)])
    with client.engine.begin() as conn:  # this transaction's own statistics, read inside it
        cur = conn.connection.driver_connection.cursor()
        delete_keys(cur, SCORES, client.qualified("scores"), DAY, keys)
        assert cur.rowcount == n_keys
        cur.execute(
            "SELECT idx_tup_fetch FROM pg_stat_xact_user_tables "
            "WHERE schemaname = %s AND relname = 'scores'",
            (client.schema,),
        )
        assert cur.fetchone()[0] <= 2 * n_keys  # rows read: 20,000 when the plan walks the day
        conn.rollback()
    assert len(stored(client)) == 20_000


def test_an_interrupted_query_raises_the_interruption_alone(client: PostgresClient) -> None:
    """A step's interruption (Dagster's SIGINT handler) landing mid-query: the query is
    cancelled, the step sees DagsterExecutionInterruptedError with nothing of psycopg in it, and
    the next query (a pooled connection, pinged first) works."""
    import os
    import signal
    import threading
    import traceback

    from dagster._core.errors import DagsterExecutionInterruptedError
    from dagster._utils.interrupts import raise_interrupts_as

    for _ in range(2):  # the second takes the connection the first gave back
        with raise_interrupts_as(DagsterExecutionInterruptedError):
            threading.Timer(0.5, os.kill, (os.getpid(), signal.SIGINT)).start()
            with pytest.raises(DagsterExecutionInterruptedError) as raised:
                client.fetch_all("SELECT pg_sleep(5)")
        shown = "".join(traceback.format_exception(raised.value))
        assert "psycopg" not in shown, shown
        assert raised.value.__context__ is None or raised.value.__suppress_context__
        assert client.fetch_all("SELECT 1") == [(1,)]
