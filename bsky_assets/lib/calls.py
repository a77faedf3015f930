"""One core for paced, batched, retried calls to a labelling API (Perspective and the LLM).

Both clients send units of work (a batch of comments, a prompt of posts) with a window of
`concurrency` units in flight and yield each unit's final results as it completes; both retry
transient failures with exponential backoff and full jitter, give up with `RETRIES_EXHAUSTED`
(retryable: the next run sends those posts again), fail the run on refused credentials without
blaming any post, and scrub their key from every message they produce.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from itertools import islice
from typing import TypeVar

from pydantic import BaseModel, ConfigDict, Field

from bsky_assets.lib.secrets import protect_logs, scrub

RETRIES_EXHAUSTED = "retries_exhausted"

T = TypeVar("T")
R = TypeVar("R")


class ApiAuthError(RuntimeError):
    """The service refused the credentials: fail the run, do not mark posts."""


class CallTuning(BaseModel):
    """How calls are paced and retried: what run config may tune. Where the calls go and with
    which key is never here (see `settings.py`: the environment only)."""

    model_config = ConfigDict(frozen=True)

    concurrency: int = Field(default=4, ge=1, description="Units of work in flight.")
    max_retries: int = Field(default=6, ge=0)
    initial_backoff_seconds: float = Field(default=1.0, gt=0)
    max_backoff_seconds: float = Field(default=60.0, gt=0)
    timeout_seconds: float = Field(default=60.0, gt=0)


@dataclass
class Counters:
    """Thread-safe integer counters; subclasses declare the fields."""

    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self, **counts: int) -> None:
        with self._lock:
            for name, value in counts.items():
                setattr(self, name, getattr(self, name) + value)

    def as_dict(self) -> dict[str, int]:
        return {k: v for k, v in self.__dict__.items() if not k.startswith("_")}


def chunks(items: Iterable[T], size: int) -> Iterator[list[T]]:
    iterator = iter(items)
    while chunk := list(islice(iterator, size)):
        yield chunk


class PacedClient:
    """Base of both API clients: scrubbing, backoff, and the in-flight window."""

    def __init__(
        self,
        tuning: CallTuning,
        api_key: str | None,
        sleep: Callable[[float], None] = time.sleep,
        rng: random.Random | None = None,
    ) -> None:
        self.tuning = tuning
        self._api_key = api_key
        protect_logs(api_key)
        self._sleep = sleep
        self._rng = rng or random.Random()
        self._rng_lock = threading.Lock()

    def scrub(self, text: str) -> str:
        """`text` without the key, key-shaped URL parameters or bearer tokens."""
        return scrub(text, [self._api_key])

    def backoff(self, attempt: int) -> float:
        """Exponential backoff with full jitter (the AWS architecture blog's recommendation)."""
        ceiling = min(
            self.tuning.max_backoff_seconds,
            self.tuning.initial_backoff_seconds * 2 ** (attempt - 1),
        )
        with self._rng_lock:
            return self._rng.uniform(0, ceiling)

    def in_flight(
        self, units: Iterable[T], call: Callable[[T], R], thread_name: str
    ) -> Iterator[R]:
        """Run `call` on each unit with `concurrency` in flight; yield results as they finish.

        Units are drawn lazily, so memory holds the window, never the whole input.
        """
        iterator = iter(units)
        concurrency = self.tuning.concurrency
        with ThreadPoolExecutor(concurrency, thread_name) as pool:
            running: set[Future[R]] = set()
            exhausted = False
            while running or not exhausted:
                while not exhausted and len(running) < concurrency:
                    unit = next(iterator, None)
                    if unit is None:
                        exhausted = True
                    else:
                        running.add(pool.submit(call, unit))
                if not running:
                    break
                done, running = wait(running, return_when=FIRST_COMPLETED)
                for future in done:
                    yield future.result()
