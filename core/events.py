"""Events: what changed in PostgreSQL, handed to whoever in this process watches it.

Writes publish themselves: triggers (migrations 0008 and 0010) call `pg_notify` on `CHANNEL` in the same
transaction as the change, so an event exists only once the change is committed, whichever
process made it (a worker, another `ghst serve`, `ghst` on the host). The payload is small and
carries no tenant text: the kind, the project id, the owner's user id, the deployment id.

Kinds:
    deployment  a deployment was queued or changed (state, error, image, port...)
    log         a deployment's build log grew (nothing else of it changed)
    archive     an upload was stored or refused, or a version deleted
    project     a project was created, deleted or changed (app port, stopped, live deployment)
    env         a project's environment variables changed
    session     a user's logins changed: a session revoked or deleted, the account blocked or
                unblocked (migration 0010); whoever serves that user's connections checks them
    refresh     sent by the hub itself: events may have been missed, load everything again

Each process has one `EventHub`: one dedicated connection that LISTENs (opened when the first
subscriber comes, so the worker and `ghst` commands never open it), and in-process fan-out to
`Subscription`s keyed by user id. A subscriber only ever receives events of the account its
actor acts for (operators receive all). When the connection is lost (PostgreSQL restarted), the
hub reconnects with back-off and then sends every subscriber one `refresh`.

Caches: a writer drops the caches its change spoils only after its commit, so an event can
arrive first. `prepare` (given by the composition root) runs before an event is delivered, in
processes where someone watches it, so a subscriber that loads on the event never reads a cache
from before the change. Events still reach subscribers in the order they were committed.

A subscription either calls a callback (cheap: no task per subscriber; the dashboard posts a
message to its screen) or queues events for `get()` / `async for`. Queued events are bounded:
past `MAX_PENDING` they collapse into one `refresh`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections import deque
from collections.abc import Awaitable, Callable, Collection
from dataclasses import dataclass
from typing import Literal, get_args

import asyncpg

from core.actor import Actor
from core.errors import PermissionDenied

log = logging.getLogger(__name__)

CHANNEL = "ghst_events"
EventKind = Literal["deployment", "log", "archive", "project", "env", "session", "refresh", "audit"]
KINDS: frozenset[str] = frozenset(get_args(EventKind))
MAX_PENDING = 256
CONNECT_TIMEOUT = 10.0
RETRY_FIRST = 0.5  # seconds before the first reconnection attempt; doubled up to RETRY_MAX
RETRY_MAX = 5.0
# A lost server is noticed when its socket closes; a silent one (a dead host, a cut network)
# only by asking. One `SELECT 1` per process this often, and only after this much silence.
CHECK_SECONDS = 30.0
CONNECTION_ERRORS = (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError)


@dataclass(frozen=True, slots=True)
class Event:
    kind: EventKind
    project_id: int | None = None
    user_id: int | None = None
    deployment_id: int | None = None


REFRESH = Event("refresh")


def parse(payload: str) -> Event | None:
    """The event in a NOTIFY payload, or None when it is not one of ours."""
    try:
        data = json.loads(payload)
        kind = data["k"]
        ids = [data.get(key) for key in ("p", "u", "d")]
    except (ValueError, TypeError, KeyError, AttributeError):
        return None
    if kind not in KINDS or kind == "refresh":
        return None
    if not all(value is None or type(value) is int for value in ids):
        return None
    return Event(kind, *ids)


class Subscription:
    """Events of one user (or all, for operators), optionally of one project and some kinds.

    `refresh` is always delivered. Close it (or use it as a context manager) when done.
    """

    def __init__(
        self,
        hub: EventHub,
        user_id: int | None,
        project_id: int | None,
        kinds: frozenset[str] | None,
        callback: Callable[[Event], object] | None,
    ) -> None:
        self.hub = hub
        self.user_id = user_id  # None: every user's (an operator)
        # May be set later: a screen that knows its project by name learns the id on load.
        self.project_id = project_id
        self.kinds = kinds
        self._callback = callback
        self._pending: deque[Event] = deque()
        self._arrived = asyncio.Event()
        self.closed = False

    def matches(self, event: Event) -> bool:
        if event.kind == "refresh":
            return True
        if self.user_id is not None and event.user_id != self.user_id:
            return False
        if self.project_id is not None and event.project_id != self.project_id:
            return False
        return self.kinds is None or event.kind in self.kinds

    def deliver(self, event: Event) -> None:
        if self.closed or not self.matches(event):
            return
        if self._callback is not None:
            self._callback(event)
            return
        if len(self._pending) >= MAX_PENDING:
            self._pending.clear()
            event = REFRESH  # too many to keep: the subscriber loads everything again
        self._pending.append(event)
        self._arrived.set()

    async def get(self) -> Event:
        """The next event (waits for one)."""
        while not self._pending:
            self._arrived.clear()
            await self._arrived.wait()
        return self._pending.popleft()

    def drain(self) -> list[Event]:
        """The events waiting now, without waiting: several changes make one reload."""
        events = list(self._pending)
        self._pending.clear()
        return events

    def __aiter__(self) -> Subscription:
        return self

    async def __anext__(self) -> Event:
        return await self.get()

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.hub._remove(self)

    def __enter__(self) -> Subscription:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()


class EventHub:
    """One LISTEN connection per process, fanned out to subscriptions.

    With `dsn=None` the hub is in-process only: `deliver` hands events to subscribers (tests,
    fakes). `listening` is set while the connection is up.
    """

    def __init__(
        self,
        dsn: str | None,
        *,
        check_seconds: float = CHECK_SECONDS,
        retry_max: float = RETRY_MAX,
        prepare: Callable[[Event], Awaitable[object]] | None = None,
    ) -> None:
        self._dsn = dsn
        self._prepare = prepare
        self._inbox: deque[Event] = deque()
        self._sorter: asyncio.Task[None] | None = None
        self._check_seconds = check_seconds
        self._retry_max = retry_max
        self._by_user: dict[int, set[Subscription]] = {}
        self._everyone: set[Subscription] = set()
        self._task: asyncio.Task[None] | None = None
        self._closed = False
        self.listening = asyncio.Event()
        self.connections = 0  # times the LISTEN connection was (re)established
        # Events handed out so far: what a reader loaded after this number had changed includes
        # every change told so far (readers that woke on the same event can share one load).
        self.sequence = 0
        self.delivered = 0  # events received from PostgreSQL

    @classmethod
    def offline(cls) -> EventHub:
        return cls(None)

    @property
    def subscribers(self) -> int:
        return len(self._everyone) + sum(len(subs) for subs in self._by_user.values())

    def subscribe(
        self,
        actor: Actor,
        *,
        project_id: int | None = None,
        kinds: Collection[str] | None = None,
        callback: Callable[[Event], object] | None = None,
    ) -> Subscription:
        """Watch the events of the account `actor` acts for (every account for operators)."""
        actor.require("read")
        if actor.projects is not None:
            # Events name projects by id and the token by name: refuse rather than guess.
            raise PermissionDenied(f"{actor.label} is limited to some projects: it cannot watch.")
        unknown = set(kinds or ()) - KINDS
        if unknown:
            raise ValueError(f"unknown event kinds: {sorted(unknown)}")
        user_id = None if actor.is_operator else actor.owner_id
        subscription = Subscription(
            self, user_id, project_id, frozenset(kinds) if kinds else None, callback
        )
        if user_id is None:
            self._everyone.add(subscription)
        else:
            self._by_user.setdefault(user_id, set()).add(subscription)
        self._start()
        return subscription

    def _remove(self, subscription: Subscription) -> None:
        if subscription.user_id is None:
            self._everyone.discard(subscription)
            return
        subscriptions = self._by_user.get(subscription.user_id)
        if subscriptions is not None:
            subscriptions.discard(subscription)
            if not subscriptions:
                del self._by_user[subscription.user_id]

    def deliver(self, event: Event) -> None:
        """Hand an event to every subscription it concerns (one failing never stops the rest)."""
        self.sequence += 1
        if event.kind == "refresh":
            targets = [*self._everyone, *(s for subs in self._by_user.values() for s in subs)]
        else:
            own = self._by_user.get(event.user_id) if event.user_id is not None else None
            targets = [*self._everyone, *(own or ())]
        for subscription in targets:
            try:
                subscription.deliver(event)
            except Exception:
                log.exception("an event subscriber failed on %s", event)

    # --- the LISTEN connection ----------------------------------------------------------------

    def _start(self) -> None:
        if self._dsn is None or self._closed or self._task is not None:
            return
        self._task = asyncio.get_running_loop().create_task(self._run(), name="ghst-events")

    async def start(self) -> None:
        """Listen now rather than at the first subscription, and wait until it does."""
        self._start()
        if self._task is not None:
            await self.listening.wait()

    async def _run(self) -> None:
        assert self._dsn is not None
        delay = RETRY_FIRST
        while True:
            try:
                conn = await asyncpg.connect(self._dsn, timeout=CONNECT_TIMEOUT)
            except CONNECTION_ERRORS as error:
                log.warning("events: cannot listen (%s), trying again in %.1f s", error, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, self._retry_max)
                continue
            try:
                await self._listen(conn)
                delay = RETRY_FIRST
            except CONNECTION_ERRORS as error:
                log.warning("events: the LISTEN connection failed: %s", error)
            finally:
                self.listening.clear()
                conn.terminate()
            log.warning("events: the LISTEN connection was lost, reconnecting")
            await asyncio.sleep(delay)

    async def _listen(self, conn: asyncpg.Connection) -> None:
        """Deliver what `conn` hears; return when it is lost."""
        lost = asyncio.Event()
        conn.add_termination_listener(lambda _conn: lost.set())
        await conn.add_listener(CHANNEL, self._on_notify)
        self.connections += 1
        self.listening.set()
        # Whatever happened while nobody listened (or before the first subscriber's load ran
        # against a hub not yet listening) was missed: load once more.
        self.deliver(REFRESH)
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(lost.wait(), self._check_seconds)
                return
            await conn.execute("SELECT 1", timeout=CONNECT_TIMEOUT)

    def _on_notify(self, _conn: object, _pid: int, _channel: str, payload: object) -> None:
        if self._closed:  # a notification still arriving while the hub closes starts no work
            return
        event = parse(payload) if isinstance(payload, str) else None
        if event is None:
            log.warning("events: ignored a payload that is not an event: %.80r", payload)
            return
        self.delivered += 1
        if self._prepare is None:
            self.deliver(event)
            return
        self._inbox.append(event)
        if self._sorter is None or self._sorter.done():
            self._sorter = asyncio.get_running_loop().create_task(self._prepare_and_deliver())

    def _watched(self, event: Event) -> bool:
        own = self._by_user.get(event.user_id) if event.user_id is not None else None
        return any(s.matches(event) for s in (*self._everyone, *(own or ())))

    async def _prepare_and_deliver(self) -> None:
        assert self._prepare is not None
        while self._inbox:
            event = self._inbox.popleft()
            if not self._watched(event):
                continue
            try:
                await self._prepare(event)
            except Exception:
                log.exception("events: preparing %s failed", event)
            self.deliver(event)

    async def close(self) -> None:
        self._closed = True
        for task in (self._task, self._sorter):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        self._task = self._sorter = None
        for subscription in [*self._everyone, *(s for v in self._by_user.values() for s in v)]:
            subscription.closed = True
        self._everyone.clear()
        self._by_user.clear()
