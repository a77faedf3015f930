"""One run at a time labels a day into a table: a lease row with a heartbeat.

A second run of the same day (a sensor run beside a backfill) waits for the lease, then finds
nothing pending, so no post is paid for twice. The lease is a row, not a session lock: a session
lock (the advisory lock this replaced) vanishes with its connection when Postgres restarts, and a
second run then labelled every post the first still had in flight. The row survives a restart;
its holder's heartbeat resumes on reconnect.

The holder checks the lease before it draws each post to send (`verify`): while its heartbeat is
overdue (the database is away) it pauses; if another run took the lease (ours expired) it stops
sending, lets what is in flight land, and fails. A holder that died frees the lease when its
heartbeat is older than `ttl` seconds, or at once when it ran on this machine and its process is
gone (kill -9 of a step).
"""

from __future__ import annotations

import logging
import socket
import threading
import time
import uuid
from collections.abc import Iterable, Iterator
from datetime import date
from types import TracebackType
from typing import TypeVar

import psutil

from bsky_assets.lib.db.client import PostgresClient
from bsky_assets.lib.labelling import store

T = TypeVar("T")
_logger = logging.getLogger(__name__)


class LeaseLost(RuntimeError):
    """Another run took the day's lease: this run stopped sending."""


def _this_process() -> str:
    process = psutil.Process()
    return f"{socket.gethostname()}:{process.pid}:{process.create_time():.3f}"


def holder_is_dead(holder: str) -> bool:
    """Whether a holder ran on this machine and its process is gone (pid and start time)."""
    host, _, rest = holder.partition(":")
    pid, _, started = rest.partition(":")
    if host != socket.gethostname() or not pid.isdigit():
        return False
    try:
        return f"{psutil.Process(int(pid)).create_time():.3f}" != started.split(":")[0]
    except psutil.NoSuchProcess:
        return True
    except psutil.Error:
        return False


class DayLease:
    """The (table, day) lease, held for a `with` block."""

    def __init__(
        self,
        client: PostgresClient,
        table: str,
        day: date,
        log: logging.Logger | logging.LoggerAdapter,
        ttl_seconds: float = 30.0,
        heartbeat_seconds: float = 3.0,
    ) -> None:
        self.client = client
        self.table = table
        self.day = day
        self.log = log
        self.ttl = ttl_seconds
        self.heartbeat = heartbeat_seconds
        self.holder = f"{_this_process()}:{uuid.uuid4().hex[:8]}"
        self._renewed = 0.0  # monotonic time of the last heartbeat the database recorded
        self._lost = False
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # -- taking and giving back ------------------------------------------------------------------

    def __enter__(self) -> DayLease:
        told = False
        while True:
            current = store.take_lease(self.client, self.table, self.day, self.holder, self.ttl)
            if current == self.holder:
                break
            if current and holder_is_dead(current):
                self.log.info(f"the run holding {self.table} for {self.day} is gone: taking over")
                store.release_lease(self.client, self.table, self.day, current)
                continue
            if not told:
                self.log.info(
                    f"another run is labelling {self.table} for {self.day}: waiting for it "
                    "to finish"
                )
                told = True
            time.sleep(min(self.heartbeat, 1.0))
        self._renewed = time.monotonic()
        self._thread = threading.Thread(target=self._beat, name=f"lease-{self.table}", daemon=True)
        self._thread.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=self.heartbeat + 1)
        try:
            store.release_lease(self.client, self.table, self.day, self.holder)
        except Exception as release_error:  # expires by itself; never mask the run's own error
            _logger.warning("could not release the lease (%s)", type(release_error).__name__)

    def _beat(self) -> None:
        while not self._stop.wait(self.heartbeat):
            try:
                if store.renew_lease(self.client, self.table, self.day, self.holder):
                    self._renewed = time.monotonic()
                else:
                    self._lost = True
                    return
            except Exception as error:  # the database is away: keep trying; verify() pauses
                _logger.warning("lease heartbeat failed (%s); retrying", type(error).__name__)

    # -- while holding ---------------------------------------------------------------------------

    def verify(self) -> None:
        """Return when the lease is ours and fresh; wait while its heartbeat is overdue (the
        database is away); raise LeaseLost when another run has taken it."""
        paused = False
        while not self._lost and time.monotonic() - self._renewed > self.ttl / 2:
            if not paused:
                self.log.warning(
                    f"the lease on {self.table} for {self.day} could not be renewed for "
                    f"{self.ttl / 2:.0f} s (is the database away?): sending paused"
                )
                paused = True
            time.sleep(0.2)
        if self._lost:
            raise LeaseLost(
                f"another run took over labelling {self.table} for {self.day} (this run's "
                "lease expired): this run stopped sending; what it had in flight is stored"
            )

    def guard(self, items: Iterable[T]) -> Iterator[T]:
        """`items`, each drawn only after `verify()`: nothing is sent without the lease.

        When the lease is lost the stream ends instead of raising inside a client, so answers
        already in flight are still written; call `verify()` after the loop to fail the run."""
        for item in items:
            try:
                self.verify()
            except LeaseLost:
                return
            yield item
