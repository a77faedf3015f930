"""Handing freed heap memory back to the operating system between the phases of a long step."""

from __future__ import annotations

import ctypes


def release_freed_memory() -> None:
    """glibc keeps freed blocks (and every thread's arena) for reuse, so a step's resident
    memory stays near its high-water mark after a phase has freed its arrays, and the next
    phase's peak stacks on top; `malloc_trim` hands them back. A no-op on another C library."""
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return
    trim = getattr(libc, "malloc_trim", None)
    if trim is not None:
        trim(0)
