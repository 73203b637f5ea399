"""Give memory back after a burst of sessions ended.

A dashboard is a tree of objects with reference cycles (widgets and their parents): when a
session ends, its app is only freed by the cyclic garbage collector, whose oldest generation
runs rarely in a long-lived server (and `ghst serve` freezes what it loaded at start). Even
freed, the memory stays in the allocator's heap. So once sessions have ended and none ended for
a moment, the server collects, then asks glibc to return free heap pages (`malloc_trim`, in a
thread: it can take a while on a large heap). A later burst of sessions reuses what the
collection freed either way.

Those full collections are the server's only ones while it runs (`start`). Python's collector
walks every object of its oldest generation whenever a quarter of that generation is new, and
with dashboards open that is every open session's widgets: ~0.9 s of CPU with 100 sessions
open, ~9 s with 1000, the event loop stopped meanwhile. Redraws of hundreds of screens after one
event leave that quarter behind (caches, rows), so an event on a busy server paid for one. The
young generations are still collected as usual (cheap, and most garbage dies there); what
reaches the oldest waits for sessions to end, or for `PERIOD_SECONDS`.
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
# A full collection at least this often while the server runs: garbage that reached the oldest
# generation without a session ending (screens left long after they were opened).
PERIOD_SECONDS = 600.0
# New sessions postpone their collection at most until this many times `min_ended` came.
POSTPONED_AT_MOST = 10
# The collector's third threshold (young collections before it considers a full one): never.
NEVER = 2**30


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

    def __init__(
        self,
        settle: float = SETTLE_SECONDS,
        min_ended: int = MIN_ENDED,
        period: float = PERIOD_SECONDS,
    ) -> None:
        self.settle = settle
        self.min_ended = min_ended
        self.period = period
        self._thresholds: tuple[int, int, int] | None = None
        self._periodic: asyncio.TimerHandle | None = None
        self._ended = 0
        self._started = 0
        self._timer: asyncio.TimerHandle | None = None
        self._trimming: asyncio.Task[None] | None = None
        self._survivors: list[weakref.ref[object]] = []
        self._retries = 0
        self.collections = 0

    def start(self) -> None:
        """Take over the collector's full collections until `close` (see the module)."""
        if self._periodic is None:
            young, middle, oldest = gc.get_threshold()
            if oldest != NEVER:  # (else another server of this process took them over)
                self._thresholds = (young, middle, oldest)
                gc.set_threshold(young, middle, NEVER)
            self._schedule_periodic()

    def _schedule_periodic(self) -> None:
        self._periodic = asyncio.get_running_loop().call_later(
            self.period, self._periodic_collection, context=contextvars.Context()
        )

    def _periodic_collection(self) -> None:
        if self._timer is None:  # else a collection after ended sessions is due anyway
            self._collect()
        self._schedule_periodic()

    def session_started(self) -> None:
        """Building a dashboard leaves garbage (the login screen, the first loads) that lives
        long enough to reach the oldest generation: a burst of new sessions is collected once,
        `settle` seconds after the last of them (or after `POSTPONED_AT_MOST` bursts' worth)."""
        self._started += 1
        if self._started < self.min_ended:
            return
        if self._timer is not None:
            if self._started >= self.min_ended * POSTPONED_AT_MOST:
                return  # sessions keep coming: collect when due rather than never
            self._timer.cancel()
        self._schedule(self.settle)

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
        # After new sessions only, the freed memory is for the next ones: no trim.
        trim = not (self._started and not self._ended and not self._survivors)
        self._timer = None
        self._ended = 0
        self._started = 0
        self.collections += 1
        gc.collect()
        self._survivors = [ref for ref in self._survivors if ref() is not None]
        if self._survivors and self._retries < RECOLLECTIONS:
            self._retries += 1
            self._schedule(self.settle * 2**self._retries)
        if trim and (self._trimming is None or self._trimming.done()):
            self._trimming = asyncio.ensure_future(asyncio.to_thread(release_memory))

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._periodic is not None:
            self._periodic.cancel()
            self._periodic = None
        if self._thresholds is not None:
            gc.set_threshold(*self._thresholds)
            self._thresholds = None
