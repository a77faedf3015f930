"""The Postgres client behind the IO manager and the incremental label writers.

In the manner of dagster-duckdb's client: connect, ensure the table, replace or merge one
partition, select a partition. Writes stream polars frames through COPY, straight into the table
when rows need no resolving, else into a temporary staging table deduplicated on the way in; both
in one transaction. Memory stays bounded by one chunk, never by the day's size, and a failure at
any point rolls back to the partition's previous rows.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterable, Iterator, Mapping
from datetime import date
from functools import cache
from pathlib import Path
from typing import Any

import backoff
import polars as pl
import psycopg
import sqlalchemy.exc
from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import URL

from bsky_assets.lib.db.embedded import embedded_pgdata_of, revive_embedded_server
from bsky_assets.lib.db.frames import FrameStream
from bsky_assets.lib.db.interrupts import interruptible, interrupts_cancel_the_query
from bsky_assets.lib.db.statements import (
    column_ddl,
    conform,
    copy_frame,
    delete_keys,
    move_staged_sql,
    select_expr,
)
from bsky_assets.lib.db.tables import (
    PARTITION_COLUMN,
    TableSpec,
    WriteMode,
    quote,
    validate_identifier,
)

DEFAULT_CHUNK_ROWS = 50_000
_logger = logging.getLogger(__name__)

# A lost connection (a restart, a failover, a network blip) is retried with backoff; every
# retried operation is one transaction, so a retry never stores anything twice. Streams that
# cannot be replayed (a generator of frames) are not retried: their step fails and re-runs.
TRANSIENT_ERRORS = (psycopg.OperationalError, sqlalchemy.exc.OperationalError)
retry_transient = backoff.on_exception(
    backoff.expo,
    TRANSIENT_ERRORS,
    max_time=120,
    max_value=10,
    jitter=backoff.full_jitter,
    on_backoff=lambda d: _logger.warning(
        "database unavailable (%s); retry %d in %.1f s",
        type(d["exception"]).__name__,
        d["tries"],
        d["wait"],
    ),
)


@cache
def _engine(url: URL) -> Engine:
    # One pool per process and URL: resources are re-instantiated per step, engines must not be.
    engine = create_engine(url, pool_pre_ping=True, pool_size=4, max_overflow=8)
    pgdata = embedded_pgdata_of(url)
    if pgdata is not None:
        event.listen(engine, "do_connect", _reviving_connect(pgdata))
    return engine


def _reviving_connect(pgdata: Path) -> Callable[..., Any]:
    """Every new connection to the embedded server (the reconnect after a lost one included):
    when it fails because the server died, start the server again and connect once more."""

    def connect(dialect: Any, _record: Any, cargs: Any, cparams: Any) -> Any:
        try:
            return dialect.connect(*cargs, **cparams)
        except psycopg.OperationalError:
            if not revive_embedded_server(pgdata):
                raise
            return dialect.connect(*cargs, **cparams)

    return connect


class PostgresClient:
    """Partition-aware reads and writes of asset tables in one schema."""

    def __init__(self, url: URL, schema: str) -> None:
        self.url = url
        self.schema = validate_identifier(schema)
        self.engine = _engine(url)
        self._ensured: set[str] = set()

    # -- names -------------------------------------------------------------------------------

    def qualified(self, table: str) -> str:
        return f"{quote(self.schema)}.{quote(table)}"

    # -- schema --------------------------------------------------------------------------------

    @interruptible
    @retry_transient
    def ensure_table(self, spec: TableSpec) -> None:
        """Create the schema, table, missing columns and indexes if absent (idempotent)."""
        if spec.name in self._ensured:
            return
        target = self.qualified(spec.name)
        column_sql = ", ".join(column_ddl(c) for c in spec.columns)
        pk = ", ".join(quote(c) for c in spec.primary_key)
        with self.engine.begin() as conn:
            cur = conn.connection.driver_connection.cursor()
            cur.execute(
                "SELECT column_name FROM information_schema.columns "
                "WHERE table_schema = %s AND table_name = %s",
                (self.schema, spec.name),
            )
            existing = {row[0] for row in cur.fetchall()}
            missing = [c for c in spec.columns if c.name not in existing]
            if missing:
                # Serialise concurrent first runs (CREATE ... IF NOT EXISTS can race), and take
                # ALTER's exclusive lock only when a column really is missing.
                cur.execute(
                    "SELECT pg_advisory_xact_lock(hashtext(%s))", (f"{self.schema}.{spec.name}",)
                )
                cur.execute(f"CREATE SCHEMA IF NOT EXISTS {quote(self.schema)}")
                cur.execute(
                    f"CREATE TABLE IF NOT EXISTS {target} ({column_sql}, PRIMARY KEY ({pk}))"
                )
                if existing:  # columns added to a spec after the table was created
                    for column in missing:
                        # Nullable here: existing rows have no value; a migration that fills
                        # them sets NOT NULL (see lib/labelling/store/).
                        ddl = column_ddl(column, nullable=True)
                        cur.execute(f"ALTER TABLE {target} ADD COLUMN IF NOT EXISTS {ddl}")
            for index_columns in spec.indexes:
                name = validate_identifier(f"{spec.name}_{'_'.join(index_columns)}_idx"[:63])
                cur.execute("SELECT to_regclass(%s)", (f"{quote(self.schema)}.{quote(name)}",))
                if cur.fetchone()[0] is not None:
                    continue  # CREATE INDEX IF NOT EXISTS would wait behind every open write
                cols = ", ".join(quote(c) for c in index_columns)
                cur.execute(f"CREATE INDEX IF NOT EXISTS {quote(name)} ON {target} ({cols})")
        self._ensured.add(spec.name)

    # -- writes --------------------------------------------------------------------------------

    def write_partition(
        self,
        spec: TableSpec,
        partition: date,
        frames: pl.DataFrame | Iterable[pl.DataFrame],
        mode: WriteMode | None = None,
    ) -> int:
        """Write one partition's rows in a single transaction; return the rows inserted or updated.

        REPLACE leaves exactly the written rows in the partition; INSERT_MISSING and UPSERT keep
        other rows. Rows repeating a primary key are resolved by `spec.keep_latest_by`. A frame
        (not a stream) is written again if the connection is lost.
        """
        if isinstance(frames, pl.DataFrame):
            return retry_transient(self._write_partition)(spec, partition, [frames], mode)
        return self._write_partition(spec, partition, frames, mode)

    @interruptible
    def _write_partition(
        self,
        spec: TableSpec,
        partition: date | None,  # None: an unpartitioned side table (INSERT_MISSING only)
        frames: pl.DataFrame | Iterable[pl.DataFrame],
        mode: WriteMode | None = None,
    ) -> int:
        mode = mode or spec.write_mode
        self.ensure_table(spec)
        if isinstance(frames, pl.DataFrame):
            frames = [frames]
        target = self.qualified(spec.name)
        direct = not spec.keep_latest_by and mode is not WriteMode.INSERT_MISSING
        written = 0
        stream = frames if isinstance(frames, FrameStream) else FrameStream(frames)
        with contextlib.closing(stream) as frames, self.engine.begin() as conn:
            cur = conn.connection.driver_connection.cursor()
            if direct:
                # Nothing to resolve between rows: COPY straight into the table (twice as fast
                # as staging). REPLACE clears the partition first; UPSERT clears each chunk's keys.
                if mode is WriteMode.REPLACE:
                    self._replace_partition(cur, spec, partition)
                for frame in frames:
                    if frame.height == 0:
                        continue
                    frame = conform(spec, frame, partition)
                    if mode is WriteMode.UPSERT:
                        delete_keys(cur, spec, target, partition, frame)
                    copy_frame(cur, target, frame)
                    written += frame.height
                return written
            stage = quote(f"stage_{spec.name}"[:63])
            cur.execute(
                f"CREATE TEMP TABLE {stage} (LIKE {target} INCLUDING DEFAULTS) ON COMMIT DROP"
            )
            for frame in frames:
                if frame.height:
                    copy_frame(cur, stage, conform(spec, frame, partition))
            if mode is WriteMode.REPLACE:
                self._replace_partition(cur, spec, partition)
            cur.execute(move_staged_sql(spec, stage, target, mode))
            return cur.rowcount

    def _replace_partition(self, cur: Any, spec: TableSpec, partition: date | None) -> None:
        """Clear a partition for its new rows, one writer at a time.

        Two replaces of one partition at once (two ingests of a day) would both delete the old
        rows, and the second would then insert keys the first just wrote (a UniqueViolation).
        The transaction-scoped advisory lock makes the second wait until the first commits; its
        DELETE, a statement started after that, then sees and replaces the first one's rows."""
        assert partition is not None
        cur.execute(
            "SELECT pg_advisory_xact_lock(hashtext(%s), %s)",
            (self.qualified(spec.name), partition.toordinal()),
        )
        target = self.qualified(spec.name)
        cur.execute(f"DELETE FROM {target} WHERE {PARTITION_COLUMN} = %s", (partition,))

    def insert_missing(self, spec: TableSpec, frames: pl.DataFrame | Iterable[pl.DataFrame]) -> int:
        """Insert rows of an unpartitioned table whose keys are absent; return how many were."""
        return self._write_partition(spec, None, frames, WriteMode.INSERT_MISSING)

    def analyze(self, spec: TableSpec) -> None:
        """Refresh the planner's statistics after a day's bulk write. Without them a table that
        just received its rows looks empty, and the joins that follow (pending posts, checks)
        are planned as nested loops: seconds at 20,000 posts, hours at 1,000,000. ANALYZE reads
        a fixed sample (30,000 rows), whatever the table's size."""
        self.ensure_table(spec)
        self.execute(f"ANALYZE {self.qualified(spec.name)}")

    @interruptible
    @retry_transient
    def execute(self, sql: str, params: tuple[Any, ...] | Mapping[str, Any] = ()) -> int:
        """Run one statement in its own transaction; return the affected row count."""
        with self.engine.begin() as conn:
            cur = conn.connection.driver_connection.cursor()
            cur.execute(sql, params)
            return cur.rowcount

    @interruptible
    @retry_transient
    def execute_returning(
        self, sql: str, params: tuple[Any, ...] | Mapping[str, Any] = ()
    ) -> list[tuple]:
        """Run one statement that changes rows in its own transaction; return what it returns."""
        with self.engine.begin() as conn:
            cur = conn.connection.driver_connection.cursor()
            cur.execute(sql, params)
            return list(cur.fetchall())

    @interruptible
    @retry_transient
    def insert_rows(
        self, spec: TableSpec, rows: list[dict[str, Any]], on_conflict: str = "nothing"
    ) -> int:
        """Insert a few rows into a side table; on a primary-key conflict do nothing or update."""
        self.ensure_table(spec)
        if not rows:
            return 0
        columns = list(rows[0])
        names = ", ".join(quote(c) for c in columns)
        values = ", ".join(f"%({c})s::{spec.column(c).pg_type}" for c in columns)
        pk = ", ".join(quote(c) for c in spec.primary_key)
        if on_conflict == "update":
            updates = ", ".join(
                f"{quote(c)} = EXCLUDED.{quote(c)}" for c in columns if c not in spec.primary_key
            )
            conflict = f"ON CONFLICT ({pk}) DO UPDATE SET {updates}"
        else:
            conflict = f"ON CONFLICT ({pk}) DO NOTHING"
        sql = f"INSERT INTO {self.qualified(spec.name)} ({names}) VALUES ({values}) {conflict}"
        with self.engine.begin() as conn:
            cur = conn.connection.driver_connection.cursor()
            cur.executemany(sql, rows)
            return cur.rowcount

    # -- reads -----------------------------------------------------------------------------------

    def iter_frames(
        self,
        spec: TableSpec,
        partition: date,
        columns: list[str] | None = None,
        chunk_rows: int = DEFAULT_CHUNK_ROWS,
    ) -> Iterator[pl.DataFrame]:
        """Stream one partition in primary-key order, `chunk_rows` rows at a time."""
        columns = columns or spec.column_names
        select = ", ".join(select_expr(spec, c) for c in columns)
        order = ", ".join(quote(c) for c in spec.primary_key)
        sql = (
            f"SELECT {select} FROM {self.qualified(spec.name)} "
            f"WHERE {PARTITION_COLUMN} = %s ORDER BY {order}"
        )
        yield from self.iter_query(sql, (partition,), spec.polars_schema(columns), chunk_rows)

    def iter_pages(
        self,
        sql: str,
        params: Mapping[str, Any],
        schema: Mapping[str, pl.DataType],
        key: str,
        page_rows: int = 10_000,
    ) -> Iterator[pl.DataFrame]:
        """Rows in pages by key (keyset pagination): each page is a short query of its own,
        retried if the connection is lost, so a long consumer (a labelling run) neither holds a
        snapshot open for hours nor dies with the connection. `sql` must select `key` first,
        filter on `%(after)s` and order by `key`."""
        after = ""
        while True:
            rows = self.fetch_all(sql, {**params, "after": after, "limit": page_rows})
            if not rows:
                return
            yield pl.DataFrame(rows, schema=dict(schema), orient="row")
            after = rows[-1][0]
            if len(rows) < page_rows:
                return

    def iter_query(
        self,
        sql: str,
        params: tuple[Any, ...] | Mapping[str, Any],
        schema: Mapping[str, pl.DataType],
        chunk_rows: int = DEFAULT_CHUNK_ROWS,
    ) -> Iterator[pl.DataFrame]:
        """Stream a query's rows as frames through a server-side cursor."""
        with self.engine.connect() as conn:
            raw = conn.connection.driver_connection
            with raw.cursor(name="bsky_read") as cur:
                cur.itersize = chunk_rows
                with interrupts_cancel_the_query():  # never across a yield: only the calls
                    cur.execute(sql, params)
                while True:
                    with interrupts_cancel_the_query():
                        rows = cur.fetchmany(chunk_rows)
                    if not rows:
                        return
                    yield pl.DataFrame(rows, schema=dict(schema), orient="row")

    @interruptible
    @retry_transient
    def fetch_all(self, sql: str, params: tuple[Any, ...] | Mapping[str, Any] = ()) -> list[tuple]:
        with self.engine.connect() as conn:
            cur = conn.connection.driver_connection.cursor()
            cur.execute(sql, params)
            return list(cur.fetchall())

    def count(self, spec: TableSpec, partition: date) -> int:
        self.ensure_table(spec)
        sql = f"SELECT count(*) FROM {self.qualified(spec.name)} WHERE {PARTITION_COLUMN} = %s"
        return int(self.fetch_all(sql, (partition,))[0][0])
