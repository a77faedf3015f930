"""A terminated step's interruption, landing inside a database call, cancels the query first."""

from __future__ import annotations

import contextlib
import functools
import signal
import threading
from collections.abc import Callable, Iterator
from typing import Any


@contextlib.contextmanager
def interrupts_cancel_the_query() -> Iterator[None]:
    """Let an interruption that lands inside a database call cancel the query first.

    Terminating a run interrupts its step with Dagster's DagsterExecutionInterruptedError, raised
    by a SIGINT handler wherever the main thread is. psycopg cancels the running query only for
    KeyboardInterrupt; for any other exception the connection is left mid-query (ACTIVE), and
    what touches it next fails with a psycopg error that replaces the interruption: the
    rollback ("another command is already in progress", an OperationalError that was then
    retried, so the step even went on) or the pool's ping ("can't change 'autocommit' now").
    So inside a call the handler raises KeyboardInterrupt (psycopg cancels the query and the
    connection goes back to the pool clean), and on the way out the step's own handler raises
    its interruption, with nothing of the database in it."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    step_handler = signal.getsignal(signal.SIGINT)
    if not callable(step_handler) or step_handler in (signal.default_int_handler, _raise_ki):
        yield  # plain Ctrl-C (psycopg already cancels), or an enclosing call has done this
        return
    sigterm_too = signal.getsignal(signal.SIGTERM) is step_handler  # Dagster maps one to other

    def restore() -> None:
        signal.signal(signal.SIGINT, step_handler)
        if sigterm_too:
            signal.signal(signal.SIGTERM, step_handler)

    signal.signal(signal.SIGINT, _raise_ki)
    if sigterm_too:
        signal.signal(signal.SIGTERM, _raise_ki)
    try:
        yield
    except KeyboardInterrupt:
        restore()
        try:
            step_handler(signal.SIGINT, None)  # raises the step's own interruption
        except BaseException as interruption:
            raise interruption.with_traceback(None) from None
        raise
    finally:
        restore()


def _raise_ki(_signo: int, _frame: Any) -> None:
    raise KeyboardInterrupt


def interruptible(method: Callable[..., Any]) -> Callable[..., Any]:
    """`method` under `interrupts_cancel_the_query`."""

    @functools.wraps(method)
    def call(*args: Any, **kwargs: Any) -> Any:
        with interrupts_cancel_the_query():
            return method(*args, **kwargs)

    return call
