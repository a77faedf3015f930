"""Progress of a labelling step: posts done of the day's total, rate and ETA, at a steady pace.

At Google's default quota a small day takes half an hour and a million-post day hours; the run
log says how far it is every `BSKY_PROGRESS_SECONDS` (default 30), and in-process listeners (the
CLI demo's progress bar) hear every advance.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from bsky_assets import settings

Listener = Callable[["Progress"], None]
_listeners: list[Listener] = []
_lock = threading.Lock()


def listen(listener: Listener) -> Callable[[], None]:
    """Hear every advance of every labelling step in this process; returns the unsubscribe."""
    with _lock:
        _listeners.append(listener)
    return lambda: _listeners.remove(listener)


def duration(seconds: float) -> str:
    hours, rest = divmod(round(seconds), 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{secs:02d}s"


class Progress:
    def __init__(
        self,
        step: str,
        total: int,
        log: logging.Logger | logging.LoggerAdapter,
        interval: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.step = step
        self.total = total
        self.done = 0
        self.log = log
        self.interval = settings.progress_seconds() if interval is None else interval
        self.clock = clock
        self.started = clock()
        self.finished = False
        self._last_logged = self.started
        self._notify()
        log.info(self.line())

    @property
    def rate(self) -> float:
        elapsed = self.clock() - self.started
        return self.done / elapsed if elapsed > 0 else 0.0

    def line(self) -> str:
        share = f" ({self.done / self.total:.0%})" if self.total else ""
        rate = self.rate
        remaining = max(self.total - self.done, 0)
        eta = duration(remaining / rate) if rate > 0 else "unknown"
        return (
            f"{self.step}: {self.done:,}/{self.total:,} posts{share}, "
            f"{rate:,.1f} posts/s, ETA {eta}"
        )

    def advance(self, posts: int) -> None:
        self.done += posts
        self._notify()
        now = self.clock()
        if now - self._last_logged >= self.interval:
            self._last_logged = now
            self.log.info(self.line())

    def finish(self) -> None:
        self.finished = True
        self._notify()
        took = duration(self.clock() - self.started)
        self.log.info(f"{self.line().split(', ETA')[0]}, done in {took}")

    def _notify(self) -> None:
        with _lock:
            listeners = list(_listeners)
        for listener in listeners:
            listener(self)
