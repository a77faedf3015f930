"""A thread-safe token bucket shared by every thread of the process.

Why not a library: the pacing must charge a batch by its number of parts (Google counts each part
of a batch against the quota), block fairly across threads, and run on an injectable clock so
tests check the pacing without wall time. That is the whole class; pyrate-limiter and friends add
backends and async machinery this project does not use, and none takes a fake clock as simply.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable


class TokenBucket:
    """`rate` tokens per second, bursting to `capacity`; `acquire(n)` blocks until n are free.

    Tokens are reserved first-come, first-served: a caller that must wait takes its tokens on
    credit (the balance goes negative) and sleeps until the debt is repaid, so later callers queue
    behind it instead of starving it. Over any window of T seconds at most capacity + rate·T tokens
    are granted, so the configured rate is reached and never exceeded. A client of a per-minute
    quota starts empty (`initial_tokens=0`) so not even its first minute can exceed the quota.
    """

    def __init__(
        self,
        rate: float,
        capacity: float | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        initial_tokens: float | None = None,
    ) -> None:
        if rate <= 0:
            raise ValueError("rate must be positive")
        self.rate = rate
        self.capacity = capacity if capacity is not None else max(rate, 1.0)
        self._clock = clock
        self._sleep = sleep
        self._tokens = self.capacity if initial_tokens is None else initial_tokens
        self._updated = clock()
        self._lock = threading.Lock()
        self.waited_seconds = 0.0

    def _refill(self) -> None:
        now = self._clock()
        self._tokens = min(self.capacity, self._tokens + (now - self._updated) * self.rate)
        self._updated = now

    def try_acquire(self, tokens: float = 1.0) -> float | None:
        """Take `tokens` if they are there now (None); else take nothing and return the seconds
        until they would be (what a server enforcing a quota answers with, e.g. retry-after)."""
        with self._lock:
            self._refill()
            if self._tokens >= tokens:
                self._tokens -= tokens
                return None
            return (tokens - self._tokens) / self.rate

    def acquire(self, tokens: float = 1.0) -> float:
        """Take `tokens`, sleeping as long as needed; return the seconds slept."""
        if tokens > self.capacity:
            raise ValueError(
                f"cannot take {tokens} tokens at once from a bucket of {self.capacity}"
            )
        with self._lock:
            self._refill()
            self._tokens -= tokens
            wait = -self._tokens / self.rate if self._tokens < 0 else 0.0
            self.waited_seconds += wait
        if wait > 0:
            self._sleep(wait)
        return wait
