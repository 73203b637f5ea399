"""Give memory back after a burst of sessions ended.

A dashboard is a tree of objects with reference cycles (widgets and their parents): when a
session ends, its app is only freed by the cyclic garbage collector, whose oldest generation
runs rarely in a long-lived server (and `ghst serve` freezes what it loaded at start). Even
freed, the memory stays in the allocator's heap. So once sessions have ended and none ended for
a moment, the server collects, then asks glibc to return free heap pages (`malloc_trim`, in a
thread: it can take a while on a large heap). A later burst of sessions reuses what the
collection freed either way.
"""

from __future__ import annotations

import asyncio
import contextvars
import ctypes
import ctypes.util
import gc
import logging
import weakref
from collections.abc import Callable

log = logging.getLogger(__name__)

# Quiet time after the last ended session before collecting, and how many must have ended.
SETTLE_SECONDS = 2.0
MIN_ENDED = 10
# An ended app still referenced when the collection ran (its connection's last callbacks had not
# run yet, on a busy server) gets this many more collections, each one twice as late.
RECOLLECTIONS = 4


def _load_malloc_trim() -> Callable[[int], int] | None:
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        libc = ctypes.CDLL(name)
        trim = libc.malloc_trim
    except (OSError, AttributeError):  # not glibc (e.g. musl has no malloc_trim)
        return None
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int
    return trim


_malloc_trim = _load_malloc_trim()


def release_memory() -> None:
    """Return free heap pages to the operating system, where the C library can."""
    if _malloc_trim is not None:
        _malloc_trim(0)


class MemoryReturn:
    """Counts ended sessions; `settle` seconds after enough of them ended (or the last open
    one did), collects and trims. At most one collection per `settle` seconds: a full
    collection walks every live session's objects, so it is kept for bursts. An ended app that
    survives a collection is looked at again later, so it is not left for the rare automatic
    collection of the oldest generation."""

    def __init__(self, settle: float = SETTLE_SECONDS, min_ended: int = MIN_ENDED) -> None:
        self.settle = settle
        self.min_ended = min_ended
        self._ended = 0
        self._timer: asyncio.TimerHandle | None = None
        self._trimming: asyncio.Task[None] | None = None
        self._survivors: list[weakref.ref[object]] = []
        self._retries = 0
        self.collections = 0

    def session_ended(self, still_open: int, app: object | None = None) -> None:
        if app is not None:
            self._survivors.append(weakref.ref(app))
        self._ended += 1
        self._retries = 0
        if self._timer is not None or (still_open and self._ended < self.min_ended):
            return
        self._schedule(self.settle)

    def _schedule(self, delay: float) -> None:
        # In an empty context: called from a session's task, whose context holds its app; the
        # collection would otherwise run with that app still referenced.
        self._timer = asyncio.get_running_loop().call_later(
            delay, self._collect, context=contextvars.Context()
        )

    def _collect(self) -> None:
        self._timer = None
        self._ended = 0
        self.collections += 1
        gc.collect()
        self._survivors = [ref for ref in self._survivors if ref() is not None]
        if self._survivors and self._retries < RECOLLECTIONS:
            self._retries += 1
            self._schedule(self.settle * 2**self._retries)
        if self._trimming is None or self._trimming.done():
            self._trimming = asyncio.ensure_future(asyncio.to_thread(release_memory))

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
