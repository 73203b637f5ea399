"""Keep each hosted app's context out of the state shared by all sessions.

Textual keeps the running app in context variables (`active_app`, `active_message_pump`, ...),
and asyncio copies the current context into every callback and task it schedules. A dashboard
screen that awaits a core call therefore hands its app's context to whatever that call
schedules on shared objects: asyncpg, for instance, arms a timer on each pool connection it
releases (idle connection expiry, statement cache expiry; minutes long). Those timers keep the
finished app, its screens and its widgets alive long after the user left.

`isolated_services` gives the apps the same services, each running every coroutine method in a
task with a fresh, empty context: nothing an app's core call schedules refers back to the app.
"""

from __future__ import annotations

import asyncio
import contextvars
import dataclasses
import functools
import inspect
from collections.abc import AsyncGenerator, Callable, Coroutine
from typing import Any

from core.services import Services, ServiceSet


class ContextFree:
    """Proxy to a core service: its coroutine methods run in a context of their own."""

    def __init__(self, target: object) -> None:
        self._target = target

    def __getattr__(self, name: str) -> Any:
        value = getattr(self._target, name)
        if inspect.iscoroutinefunction(value):
            return _context_free(value)
        if inspect.isasyncgenfunction(value):
            return _context_free_stream(value)
        return value

    def __repr__(self) -> str:
        return f"ContextFree({self._target!r})"


def _context_free(
    method: Callable[..., Coroutine[Any, Any, Any]],
) -> Callable[..., Coroutine[Any, Any, Any]]:
    @functools.wraps(method)
    async def call(*args: Any, **kwargs: Any) -> Any:
        loop = asyncio.get_running_loop()
        # Cancelling the caller cancels the awaited task too.
        return await loop.create_task(method(*args, **kwargs), context=contextvars.Context())

    return call


def _context_free_stream(
    method: Callable[..., AsyncGenerator[Any, None]],
) -> Callable[..., AsyncGenerator[Any, None]]:
    """An async generator whose every step runs in one context of its own (log streams)."""

    @functools.wraps(method)
    async def stream(*args: Any, **kwargs: Any) -> AsyncGenerator[Any, None]:
        loop = asyncio.get_running_loop()
        context = contextvars.Context()
        inner: AsyncGenerator[Any, None] = context.run(method, *args, **kwargs)

        async def step() -> Any:
            return await inner.__anext__()

        try:
            while True:
                try:
                    item = await loop.create_task(step(), context=context)
                except StopAsyncIteration:
                    return
                yield item
        finally:
            await loop.create_task(inner.aclose(), context=context)

    return stream


def _is_core_service(value: object) -> bool:
    kind = type(value)
    if not kind.__module__.startswith("core.") or dataclasses.is_dataclass(value):
        return False
    return any(
        inspect.iscoroutinefunction(member)
        for name, member in inspect.getmembers(kind)
        if not name.startswith("_")
    )


def isolated_services(services: Services) -> ServiceSet:
    """The same services (same objects behind them), each wrapped in `ContextFree`."""
    narrowed = ServiceSet.of(services)
    changes: dict[str, Any] = {}
    for field in dataclasses.fields(narrowed):
        value = getattr(narrowed, field.name)
        if _is_core_service(value):
            changes[field.name] = ContextFree(value)
    return dataclasses.replace(narrowed, **changes)
