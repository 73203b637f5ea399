"""Screens that redraw on events: a subscription whose events arrive as messages to the screen.

The hub calls back in whatever context received the NOTIFY; posting a message hands the event
to the screen's own message loop, with no task per screen. A covered screen ignores them and
loads when it is shown again.

One event can wake every screen watching a project at once (all of a team's sessions, a
bench's hundreds): `load_slot` lets `LOADS_AT_ONCE` loads of the process run together and
queues the rest, so a burst never asks Redis and PostgreSQL for more connections than their
pools hold (the rest would fail, or fall back from the cache). And `shared_load` runs the same
load (same user, same thing) once for all the screens that woke on the same event: a load
that started after everything a screen had been told is as fresh as its own would be.

A deployment goes queued, claimed, building within milliseconds: the events of one screen that
come within `COALESCE_SECONDS` of the first are handed to it as one message, so it loads and
redraws once, with the last state, rather than once per step. A `refresh` (events were missed)
is handed over at once, with those gathered so far.

While one event fans out to many screens, their frames queue on the one loop: a running
build's duration that ticks meanwhile on the screens already drawn adds a frame each, ahead of
the screens still waiting (at scale, most of an event's CPU and its delay). So from an event's
arrival until the screen has drawn it (`event_drawn`), every tick of the process waits
(`ticks_wait`): a skipped tick is drawn by the next one, the second after. A screen that never
says it drew stops holding ticks after `HOLD_TICKS_SECONDS`.
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Awaitable, Callable, Collection, Hashable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from textual.message import Message

from core.actor import Actor
from core.events import Event, EventHub, Subscription
from tui.screens.base import GhstScreen

T = TypeVar("T")
LOADS_AT_ONCE = 8
COALESCE_SECONDS = 0.02
HOLD_TICKS_SECONDS = 3.0
# Every session's app runs on the server's one loop; tests run one loop each.
_slots: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Semaphore] = (
    weakref.WeakKeyDictionary()
)


# Per loop: the screens with an event not drawn yet, and when it came (loop time).
_undrawn: weakref.WeakKeyDictionary[
    asyncio.AbstractEventLoop, weakref.WeakKeyDictionary[GhstScreen[Any], float]
] = weakref.WeakKeyDictionary()


def _undrawn_here() -> weakref.WeakKeyDictionary[GhstScreen[Any], float] | None:
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        return None
    screens = _undrawn.get(loop)
    if screens is None:
        screens = _undrawn[loop] = weakref.WeakKeyDictionary()
    return screens


def event_arrived(screen: GhstScreen[Any]) -> None:
    """`screen` has an event to draw: the process's ticks wait until it did (`event_drawn`)."""
    screens = _undrawn_here()
    if screens is not None and screen not in screens:
        screens[screen] = asyncio.get_running_loop().time()


def event_drawn(screen: GhstScreen[Any]) -> None:
    """`screen` drew its events (or will load them later, when shown again)."""
    screens = _undrawn_here()
    if screens is not None:
        screens.pop(screen, None)


def ticks_wait() -> bool:
    """True while an event is on its way to a screen of this process: a tick (a cosmetic
    redraw, drawn again a second later) would delay it."""
    screens = _undrawn_here()
    if not screens:
        return False
    now = asyncio.get_running_loop().time()
    for screen, since in list(screens.items()):
        if now - since < HOLD_TICKS_SECONDS:
            return True
        del screens[screen]  # it never said it drew: it holds no tick any more
    return False


def load_slot() -> asyncio.Semaphore:
    """Hold it while loading what a screen shows (`async with load_slot():`)."""
    loop = asyncio.get_running_loop()
    slot = _slots.get(loop)
    if slot is None:
        slot = _slots[loop] = asyncio.Semaphore(LOADS_AT_ONCE)
    return slot


class Changed(Message, bubble=False):
    """Something the screen shows may have changed (or, `refresh`, events were missed)."""

    def __init__(self, events: Sequence[Event], gathered: Gathered | None = None) -> None:
        super().__init__()
        self.events = tuple(events)
        self._gathered = gathered

    def taken(self) -> None:
        """The screen has it (`changes_waiting` is False again unless more came since)."""
        if self._gathered is not None and not self._gathered.events:
            self._gathered.waiting = False

    @property
    def kinds(self) -> frozenset[str]:
        return frozenset(event.kind for event in self.events)


class Gathered:
    """The events of one screen's subscription, posted to it together (`COALESCE_SECONDS`)."""

    def __init__(self, screen: GhstScreen[Any]) -> None:
        self.screen = screen
        self.events: list[Event] = []
        self._flush: asyncio.TimerHandle | None = None
        self.waiting = False  # from an event until the screen took its `Changed`

    def add(self, event: Event) -> None:
        self.events.append(event)
        self.waiting = True
        event_arrived(self.screen)
        if event.kind == "refresh":
            self.flush()
        elif self._flush is None:
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:  # delivered outside the loop (a test): no burst to wait for
                self.flush()
                return
            self._flush = loop.call_later(COALESCE_SECONDS, self.flush)

    def flush(self) -> None:
        if self._flush is not None:
            self._flush.cancel()
            self._flush = None
        events, self.events = self.events, []
        if events:
            self.screen.post_message(Changed(events, self))
            if not self.screen.DRAWS_CHANGES_AFTER_LOAD:
                # Handled, and the frame that follows drawn: the ticks need not wait for it.
                self.screen.call_after_refresh(event_drawn, self.screen)


def watch(
    screen: GhstScreen[Any], kinds: Collection[str], project_id: int | None = None
) -> Subscription:
    """Events of the signed-in user's `kinds` (and `refresh`), posted to `screen` as `Changed`
    (those of a burst together)."""
    gathered = Gathered(screen)
    # On the screen itself: a global weak map would hold the screen through this value forever.
    screen.__dict__[_GATHERED] = gathered
    return screen.panel.events.subscribe(
        Actor.for_user(screen.user),
        project_id=project_id,
        kinds=kinds,
        callback=gathered.add,
    )


_GATHERED = "_ghst_gathered_events"


def changes_waiting(screen: GhstScreen[Any]) -> bool:
    """True from an event for `screen` until it took the `Changed` (its load starts then): what
    it would draw in between (a duration ticking) is about to be drawn again."""
    gathered = screen.__dict__.get(_GATHERED)
    return isinstance(gathered, Gathered) and gathered.waiting


@dataclass(eq=False)
class _Flight:
    started: int  # the hub's sequence when the load started
    future: asyncio.Future[Any]
    waiters: int = 0


# What is being loaded now, per loop: key -> the load.
_flights: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[Hashable, _Flight]] = (
    weakref.WeakKeyDictionary()
)


async def shared_load(
    hub: EventHub, key: Hashable, load: Callable[[], Awaitable[T]], *, slot: bool = True
) -> T:
    """`load()`, or the result of the same load already running if it started after every
    event delivered so far. `key` must name the user: loads are shared only within one.
    A load that every screen awaiting it stopped waiting for (closed, cancelled) is cancelled:
    it must not outlive its sessions and use the panel's pools after they close. `slot=False`
    for a slow measurement (docker stats) that must not hold up the screens' loads."""
    flights = _flights.setdefault(asyncio.get_running_loop(), {})
    seen = hub.sequence
    flight = flights.get(key)
    if flight is None or flight.started < seen or flight.future.done():
        flight = _Flight(seen, asyncio.ensure_future(_loaded(load) if slot else load()))
        flights[key] = flight
        flight.future.add_done_callback(lambda done: _land(flights, key, done))
    flight.waiters += 1
    try:
        result: T = await asyncio.shield(flight.future)
        return result
    finally:
        flight.waiters -= 1
        if flight.waiters == 0 and not flight.future.done():
            flight.future.cancel()


async def _loaded(load: Callable[[], Awaitable[T]]) -> T:
    async with load_slot():
        return await load()


def _land(flights: dict[Hashable, _Flight], key: Hashable, done: asyncio.Future[Any]) -> None:
    flight = flights.get(key)
    if flight is not None and flight.future is done:
        del flights[key]
    if not done.cancelled():
        done.exception()  # retrieved: a failure is raised to the screens that awaited it
