"""Postgres advisory locks: one holder of a key at a time, across processes and machines."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

import psycopg

if TYPE_CHECKING:
    from bsky_assets.lib.db.client import PostgresClient


@contextlib.contextmanager
def advisory_lock(
    client: PostgresClient, key: str, on_wait: Callable[[], object] | None = None
) -> Iterator[None]:
    """Hold a Postgres advisory lock on `key` for the block, on a connection of its own: it goes
    with the connection if the process dies. `on_wait()` is called when another holder makes
    this one wait."""
    from bsky_assets.lib.db.embedded import to_libpq_url

    with psycopg.connect(to_libpq_url(client.url), autocommit=True) as conn:
        got = conn.execute("SELECT pg_try_advisory_lock(hashtext(%s))", (key,)).fetchone()
        if not got or not got[0]:
            if on_wait:
                on_wait()
            conn.execute("SELECT pg_advisory_lock(hashtext(%s))", (key,))
        try:
            yield
        finally:
            with contextlib.suppress(psycopg.Error):
                conn.execute("SELECT pg_advisory_unlock(hashtext(%s))", (key,))
