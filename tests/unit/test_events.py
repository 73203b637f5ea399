"""The event hub's fan-out, without a database: who receives what."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import pytest

from core.actor import Actor
from core.errors import PermissionDenied
from core.events import MAX_PENDING, REFRESH, Event, EventHub, parse
from tui.watch import shared_load

ALICE = Actor("user", 1, "alice")
BOB = Actor("user", 2, "bob")


def test_a_payload_becomes_an_event_and_anything_else_is_ignored() -> None:
    assert parse('{"k": "deployment", "p": 3, "u": 1, "d": 9}') == Event("deployment", 3, 1, 9)
    assert parse('{"k": "archive", "p": 3, "u": 1, "d": null}') == Event("archive", 3, 1)
    for payload in (
        "",
        "7",
        "[]",
        '{"p": 3}',
        '{"k": "refresh"}',  # only the hub itself says that
        '{"k": "gossip", "u": 1}',
        '{"k": "project", "p": "3", "u": 1}',
        '{"k": "project", "p": 3, "u": true}',
    ):
        assert parse(payload) is None, payload


async def test_a_subscriber_gets_only_its_own_users_events() -> None:
    hub = EventHub.offline()
    alice, bob = hub.subscribe(ALICE), hub.subscribe(BOB)
    prying = hub.subscribe(BOB, project_id=3)  # Alice's project id: still only Bob's events
    hub.deliver(Event("deployment", 3, 1, 9))
    assert alice.drain() == [Event("deployment", 3, 1, 9)]
    assert bob.drain() == [] and prying.drain() == []
    hub.deliver(Event("project", 4, 2))
    assert bob.drain() == [Event("project", 4, 2)]
    assert alice.drain() == [] and prying.drain() == []


async def test_project_and_kind_filters_and_refresh_for_everyone() -> None:
    hub = EventHub.offline()
    shop = hub.subscribe(ALICE, project_id=3, kinds=["deployment"])
    hub.deliver(Event("deployment", 4, 1, 10))  # another project of hers
    hub.deliver(Event("log", 3, 1, 9))  # a kind it does not watch
    hub.deliver(Event("deployment", 3, 1, 9))
    assert shop.drain() == [Event("deployment", 3, 1, 9)]
    bob = hub.subscribe(BOB)
    hub.deliver(REFRESH)
    assert shop.drain() == [REFRESH] and bob.drain() == [REFRESH]


async def test_operators_see_every_users_events() -> None:
    hub = EventHub.offline()
    operator = hub.subscribe(Actor.system("billing"))
    hub.deliver(Event("project", 4, 2))
    hub.deliver(Event("archive", 3, 1))
    assert operator.drain() == [Event("project", 4, 2), Event("archive", 3, 1)]


def test_what_may_not_subscribe() -> None:
    hub = EventHub.offline()
    limited = Actor("token", 1, "token abc of alice", projects=frozenset({"shop"}))
    with pytest.raises(PermissionDenied):
        hub.subscribe(limited)
    with pytest.raises(PermissionDenied):
        hub.subscribe(Actor("token", 1, "token abc of alice", scopes=frozenset({"deploy"})))
    with pytest.raises(ValueError):
        hub.subscribe(ALICE, kinds=["gossip"])


async def test_a_queue_that_overflows_becomes_one_refresh_and_get_waits() -> None:
    hub = EventHub.offline()
    subscription = hub.subscribe(ALICE)
    for n in range(MAX_PENDING + 5):
        hub.deliver(Event("log", 3, 1, n))
    # The one that did not fit and all before it became one refresh; later ones follow it.
    late = [Event("log", 3, 1, n) for n in range(MAX_PENDING + 1, MAX_PENDING + 5)]
    assert subscription.drain() == [REFRESH, *late]
    waiting = asyncio.ensure_future(subscription.get())
    await asyncio.sleep(0)
    assert not waiting.done()
    hub.deliver(Event("archive", 3, 1))
    assert await asyncio.wait_for(waiting, 1) == Event("archive", 3, 1)


async def test_a_failing_callback_harms_no_other_subscriber_and_close_stops_delivery() -> None:
    hub = EventHub.offline()
    got: list[Event] = []

    def broken(event: Event) -> None:
        raise RuntimeError("a screen that went wrong")

    hub.subscribe(ALICE, callback=broken)
    kept = hub.subscribe(ALICE, callback=got.append)
    hub.deliver(Event("archive", 3, 1))
    assert got == [Event("archive", 3, 1)]
    kept.close()
    hub.deliver(Event("archive", 3, 1))
    assert got == [Event("archive", 3, 1)]
    assert hub.subscribers == 1


async def test_screens_woken_by_one_event_share_a_load_but_never_an_older_one() -> None:
    hub = EventHub.offline()
    calls: list[str] = []
    release = asyncio.Event()

    def loader(name: str) -> Callable[[], Awaitable[str]]:
        async def load() -> str:
            calls.append(name)
            await release.wait()
            return name

        return load

    first = asyncio.ensure_future(shared_load(hub, ("project", 1, "shop"), loader("a")))
    await asyncio.sleep(0)
    same = asyncio.ensure_future(shared_load(hub, ("project", 1, "shop"), loader("b")))
    other_user = asyncio.ensure_future(shared_load(hub, ("project", 2, "shop"), loader("c")))
    await asyncio.sleep(0)
    hub.deliver(Event("deployment", 3, 1, 9))  # a change after the first load started
    newer = asyncio.ensure_future(shared_load(hub, ("project", 1, "shop"), loader("d")))
    await asyncio.sleep(0)
    release.set()
    assert await asyncio.gather(first, same, other_user, newer) == ["a", "a", "c", "d"]
    assert calls == ["a", "c", "d"]


async def test_a_load_no_screen_waits_for_any_more_is_cancelled_not_left_running() -> None:
    """A closed session's screens stop waiting; their load must not go on using the panel's
    pools (they may be closing too)."""
    hub = EventHub.offline()
    started, cancelled = asyncio.Event(), asyncio.Event()

    async def load() -> str:
        started.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.set()
            raise
        return "never"

    screen = asyncio.ensure_future(shared_load(hub, ("project", 1, "shop"), load))
    await started.wait()
    screen.cancel()
    await asyncio.wait_for(cancelled.wait(), 5)


async def test_a_load_goes_on_while_another_screen_still_waits_for_it() -> None:
    hub = EventHub.offline()
    release = asyncio.Event()

    async def load() -> str:
        await release.wait()
        return "rows"

    leaving = asyncio.ensure_future(shared_load(hub, ("project", 1, "shop"), load))
    staying = asyncio.ensure_future(shared_load(hub, ("project", 1, "shop"), load))
    await asyncio.sleep(0)
    leaving.cancel()
    await asyncio.sleep(0)
    release.set()
    assert await staying == "rows"
