"""The queries LLM labelling needs beyond the engine's: Batch API bookkeeping (which batch holds
which posts, recorded before any wait) and which models answered a day."""

from __future__ import annotations

from collections import Counter
from datetime import date
from typing import Any

from bsky_assets.lib.db.client import PostgresClient
from bsky_assets.lib.db.tables import TableSpec, quote
from bsky_assets.lib.labelling.tables import LABEL_SETS
from bsky_assets.llm.tables import LLM_BATCH_REQUESTS, LLM_BATCHES


def ensure_tables(db: PostgresClient) -> None:
    db.ensure_table(LLM_BATCHES)
    db.ensure_table(LLM_BATCH_REQUESTS)


def any_open(db: PostgresClient, label_set: str, day: date) -> bool:
    """Whether the day has batches of this set not yet collected (from any earlier run)."""
    db.ensure_table(LLM_BATCHES)
    return bool(
        db.fetch_all(
            f"SELECT 1 FROM {db.qualified(LLM_BATCHES.name)} WHERE partition_date = %s "
            "AND label_set = %s AND collected_at IS NULL LIMIT 1",
            (day, label_set),
        )
    )


def open_files(db: PostgresClient, label_set: str, day: date) -> list[tuple]:
    """(request_file, input_file_id, batch_id, created epoch) of the set's open files, oldest
    first."""
    return db.fetch_all(
        "SELECT request_file, input_file_id, batch_id, extract(epoch FROM created_at) "
        f"FROM {db.qualified(LLM_BATCHES.name)} WHERE partition_date = %s "
        "AND label_set = %s AND collected_at IS NULL ORDER BY created_at",
        (day, label_set),
    )


def in_flight_condition(db: PostgresClient) -> str:
    """A condition on pending posts `v`: not already in one of this set's open batches (the
    engine's `unless`; it binds `%(label_set)s`)."""
    return (
        f"NOT EXISTS (SELECT 1 FROM {db.qualified(LLM_BATCH_REQUESTS.name)} r "
        "WHERE r.partition_date = v.partition_date AND r.label_set = %(label_set)s "
        "AND r.uri = v.uri)"
    )


def forget_file(db: PostgresClient, day: date, request_file: str) -> None:
    """A request file that was never uploaded: its posts are pending again."""
    for spec in (LLM_BATCH_REQUESTS, LLM_BATCHES):
        db.execute(
            f"DELETE FROM {db.qualified(spec.name)} "
            "WHERE partition_date = %s AND request_file = %s",
            (day, request_file),
        )


def update_file(db: PostgresClient, day: date, request_file: str, **values: Any) -> None:
    assignments = ", ".join(f"{quote(name)} = %({name})s" for name in values)
    db.execute(
        f"UPDATE {db.qualified(LLM_BATCHES.name)} SET {assignments} "
        "WHERE partition_date = %(day)s AND request_file = %(request_file)s",
        {**values, "day": day, "request_file": request_file},
    )


def start_file(db: PostgresClient, day: date, request_file: str, label_set: str) -> None:
    db.insert_rows(
        LLM_BATCHES,
        [{"partition_date": day, "request_file": request_file, "label_set": label_set,
          "requests": 0, "posts": 0, "status": "writing"}],
    )  # fmt: skip


def posts_in_file(db: PostgresClient, day: date, request_file: str) -> int:
    return int(
        db.fetch_all(
            f"SELECT count(*) FROM {db.qualified(LLM_BATCH_REQUESTS.name)} "
            "WHERE partition_date = %s AND request_file = %s",
            (day, request_file),
        )[0][0]
    )


def prompts_of(
    db: PostgresClient, day: date, request_file: str, custom_ids: list[str]
) -> list[tuple[str, str, str, str]]:
    """(custom_id, prompt_id, uri, text_sha256) of the given requests of a file."""
    return db.fetch_all(
        "SELECT custom_id, prompt_id, uri, text_sha256 "
        f"FROM {db.qualified(LLM_BATCH_REQUESTS.name)} WHERE partition_date = %s "
        "AND request_file = %s AND custom_id = ANY(%s)",
        (day, request_file, custom_ids),
    )


def close_file(db: PostgresClient, day: date, request_file: str) -> None:
    """The file's batch is collected: its mapping goes, its row says when."""
    db.execute(
        f"DELETE FROM {db.qualified(LLM_BATCH_REQUESTS.name)} "
        "WHERE partition_date = %s AND request_file = %s",
        (day, request_file),
    )
    db.execute(
        f"UPDATE {db.qualified(LLM_BATCHES.name)} SET collected_at = now() "
        "WHERE partition_date = %s AND request_file = %s",
        (day, request_file),
    )


def batch_models(db: PostgresClient, spec: TableSpec, label_set: str, day: date) -> Counter[str]:
    """Models named by the rows batches wrote for the day (a resumed run collects only some)."""
    rows = db.fetch_all(
        f"SELECT llm_model_name, count(*) FROM {db.qualified(spec.name)} "
        "WHERE partition_date = %s AND label_set = %s AND llm_batch_id IS NOT NULL "
        "AND llm_model_name IS NOT NULL GROUP BY 1",
        (day, label_set),
    )
    return Counter({str(m): int(n) for m, n in rows})


def address_named_sets(db: PostgresClient, spec: TableSpec) -> list[tuple[str, str, str, dict]]:
    """(label_set, labeler, labeler_version, details) of the table's sets whose labeler names a
    server's address (`openai-compatible@host:port`, as sets were named before wave 3)."""
    db.ensure_table(LABEL_SETS)
    return db.fetch_all(
        f"SELECT label_set, labeler, labeler_version, details FROM {db.qualified(LABEL_SETS.name)} "
        "WHERE label_table = %s AND labeler LIKE 'openai-compatible@%%' ORDER BY first_used",
        (spec.name,),
    )


def models_that_answered(db: PostgresClient, spec: TableSpec, label_set: str) -> list[str]:
    rows = db.fetch_all(
        f"SELECT DISTINCT llm_model_name FROM {db.qualified(spec.name)} "
        "WHERE label_set = %s AND was_successfully_labeled AND llm_model_name IS NOT NULL",
        (label_set,),
    )
    return sorted(str(r[0]) for r in rows)


def merge_label_set(
    db: PostgresClient, spec: TableSpec, old: str, new: dict[str, Any], endpoint: str
) -> int:
    """Move every row of label set `old` into `new` (registered here), in one transaction: where
    both hold a post the better row stays (a success over a failure, else the newer); rows
    that named the address as their labeler name the service and keep the address as
    `llm_endpoint`; the batch bookkeeping follows; `old` leaves the registry."""
    table = db.qualified(spec.name)
    same_post = "a.partition_date = b.partition_date AND a.uri = b.uri"
    better = (
        "(b.was_successfully_labeled AND NOT a.was_successfully_labeled) OR "
        "(b.was_successfully_labeled = a.was_successfully_labeled "
        "AND b.label_timestamp >= a.label_timestamp)"
    )
    with db.engine.begin() as conn:
        cur = conn.connection.driver_connection.cursor()
        cur.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (f"merge sets {table}",))
        cur.execute(f"SELECT 1 FROM {db.qualified(LABEL_SETS.name)} WHERE label_set = %s", (old,))
        if not cur.fetchall():
            return 0  # another run merged it while we waited
        cur.execute(
            f"INSERT INTO {db.qualified(LABEL_SETS.name)} (label_set, label_table, labeler, "
            "labeler_version, emulated, details) VALUES (%(label_set)s, %(label_table)s, "
            "%(labeler)s, %(labeler_version)s, %(emulated)s, %(details)s::jsonb) "
            "ON CONFLICT (label_set) DO NOTHING",
            new,
        )
        for loser, winner in ((old, new["label_set"]), (new["label_set"], old)):
            cur.execute(
                f"DELETE FROM {table} a USING {table} b WHERE a.label_set = %s "
                f"AND b.label_set = %s AND {same_post} AND ({better})",
                (loser, winner),
            )
        cur.execute(
            f"UPDATE {table} SET label_set = %s, "
            "llm_endpoint = CASE WHEN labeler LIKE 'openai-compatible@%%' "
            "THEN coalesce(llm_endpoint, %s) ELSE llm_endpoint END, "
            "labeler = CASE WHEN labeler LIKE 'openai-compatible@%%' "
            "THEN %s ELSE labeler END WHERE label_set = %s",
            (new["label_set"], endpoint, new["labeler"], old),
        )
        moved = cur.rowcount
        for bookkeeping in (LLM_BATCHES, LLM_BATCH_REQUESTS):
            cur.execute(
                f"UPDATE {db.qualified(bookkeeping.name)} SET label_set = %s WHERE label_set = %s",
                (new["label_set"], old),
            )
        cur.execute(f"DELETE FROM {db.qualified(LABEL_SETS.name)} WHERE label_set = %s", (old,))
    return moved
