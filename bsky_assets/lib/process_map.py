"""An ordered map over worker processes, for pure-Python work that holds the GIL.

scikit-learn's n-gram analyzers use one core whatever the threads; worker processes use them
all. joblib's loky backend (scikit-learn's own dependency, pinned) runs them: its workers never
import the caller's `__main__` (multiprocessing's spawn re-runs an unguarded script, and fork
copies the locks of Dagster's and polars' threads mid-use), stay alive for the next call, and
results come back in input order, so the caller's result does not depend on the cores a run
was given. Items are dispatched `2 × workers` ahead, each as an earlier one finishes (joblib's
`pre_dispatch`): results are held until the caller takes them, so the caller must keep up with
the workers (the TF-IDF fit adds a bincount and keeps or spills the counts per task).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator
from typing import TypeVar

from joblib import Parallel, delayed

Item = TypeVar("Item")
Result = TypeVar("Result")


def available_cores() -> int:
    """The cores this process may run on (a container's or `taskset`'s share, not the host's)."""
    return max(1, len(os.sched_getaffinity(0)))


def ordered_process_map(
    function: Callable[[Item], Result], items: Iterable[Item], workers: int
) -> Iterator[Result]:
    """`map(function, items)` on `workers` processes (in this process when `workers` is 1), in
    order. `function` must be importable by the workers, its items and results picklable."""
    if workers <= 1:
        yield from map(function, items)
        return
    parallel = Parallel(
        n_jobs=workers,
        backend="loky",
        return_as="generator",
        batch_size=1,
        pre_dispatch=2 * workers,
        max_nbytes=None,  # arguments are text lists: nothing to memory-map
    )
    yield from parallel(delayed(function)(item) for item in items)
