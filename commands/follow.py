"""Follow a deployment until it ends, printing its build log as it grows (`deploy --wait`,
`logs NAME --build N -f`). Woken by the panel's events (core/events.py), not by polling."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from collections.abc import Callable

from commands.base import Context
from commands.output import printable
from commands.streams import checkpoint
from core.actor import Actor
from core.deploy.model import ACTIVE_STATES, Deployment, State

# Events wake the loop; should the panel's LISTEN connection be down, look anyway this often.
RECHECK_SECONDS = 5.0
SUCCESS = (State.RUNNING, State.DONE)


def watcher(actor: Actor) -> Actor:
    """What follows a deployment the actor started: reads its state and hears its project's
    events. Only after the actor was checked on the project (events carry ids, and a token
    limited to some projects may not subscribe in its own name)."""
    return dataclasses.replace(actor, scopes=frozenset({"read"}), projects=None)


async def follow(
    ctx: Context, project_name: str, deployment_id: int, emit: Callable[[str], None] | None
) -> Deployment:
    """Until the deployment ends: each new piece of its build log goes to `emit` (None: the
    actor may not read logs, or nobody asked). The deployment as it ended."""
    reader = watcher(ctx.actor)
    project = await ctx.services.projects.resolve(ctx.actor, project_name)
    subscription = ctx.services.events.subscribe(
        reader, project_id=project.id, kinds=("deployment", "log")
    )
    offset = 0
    try:
        while True:
            checkpoint()
            # State first, then the log: a deployment seen ended has its whole log written.
            current = await ctx.services.deployments.get(reader, project_name, deployment_id)
            if emit is not None:
                text, offset = await ctx.services.deployments.build_log(
                    ctx.actor, project_name, deployment_id, offset
                )
                if text:
                    emit(text)
                    await ctx.out.drain()
            if current.state not in ACTIVE_STATES:
                return current
            # asyncio.timeout, not wait_for: on Python 3.11 wait_for swallows a cancellation
            # (Ctrl-C, the client leaving) that lands as an event arrives.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(RECHECK_SECONDS):
                    await subscription.get()
            subscription.drain()
    finally:
        subscription.close()


def log_text(text: str) -> str:
    """A build log piece for a terminal: control characters out, line ends kept."""
    return "".join(printable(line) + "\n" for line in text.splitlines())
