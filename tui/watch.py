"""Screens that redraw on events: a subscription whose events arrive as messages to the screen.

The hub calls back in whatever context received the NOTIFY; posting a message hands the event
to the screen's own message loop, with no task per screen. A covered screen ignores them and
loads when it is shown again.

One event can wake every screen watching a project at once (all of a team's sessions, a
bench's hundreds): `load_slot` lets `LOADS_AT_ONCE` loads of the process run together and
queues the rest, so a burst never asks Redis and PostgreSQL for more connections than their
pools hold (the rest would fail, or fall back from the cache).
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Collection
from typing import Any

from textual.message import Message

from core.actor import Actor
from core.events import Event, Subscription
from tui.screens.base import GhstScreen

LOADS_AT_ONCE = 8
# Every session's app runs on the server's one loop; tests run one loop each.
_slots: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Semaphore] = (
    weakref.WeakKeyDictionary()
)


def load_slot() -> asyncio.Semaphore:
    """Hold it while loading what a screen shows (`async with load_slot():`)."""
    loop = asyncio.get_running_loop()
    slot = _slots.get(loop)
    if slot is None:
        slot = _slots[loop] = asyncio.Semaphore(LOADS_AT_ONCE)
    return slot


class Changed(Message, bubble=False):
    """Something the screen shows may have changed (or, `refresh`, events were missed)."""

    def __init__(self, event: Event) -> None:
        super().__init__()
        self.event = event


def watch(
    screen: GhstScreen[Any], kinds: Collection[str], project_id: int | None = None
) -> Subscription:
    """Events of the signed-in user's `kinds` (and `refresh`), posted to `screen` as `Changed`."""
    return screen.panel.events.subscribe(
        Actor.for_user(screen.user),
        project_id=project_id,
        kinds=kinds,
        callback=lambda event: screen.post_message(Changed(event)),
    )
