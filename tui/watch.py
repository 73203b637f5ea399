"""Screens that redraw on events: a subscription whose events arrive as messages to the screen.

The hub calls back in whatever context received the NOTIFY; posting a message hands the event
to the screen's own message loop, with no task per screen. A screen that is covered by another
one keeps receiving them (it notes it is stale and loads on coming back).
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from textual.message import Message

from core.actor import Actor
from core.events import Event, Subscription
from tui.screens.base import GhstScreen


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
