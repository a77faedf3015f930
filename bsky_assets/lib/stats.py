"""Free-form counters a service keeps about itself (the local servers show them at /stats)."""

from __future__ import annotations

import threading
import time
from collections import Counter
from typing import Any


class Stats:
    """Free-form request counters, readable over HTTP at /stats."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.counts: Counter[str] = Counter()
        self.started = time.monotonic()

    def add(self, **counts: int) -> None:
        with self._lock:
            self.counts.update(counts)

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return {**self.counts, "uptime_seconds": time.monotonic() - self.started}

    def reset(self) -> None:
        with self._lock:
            self.counts.clear()
            self.started = time.monotonic()
