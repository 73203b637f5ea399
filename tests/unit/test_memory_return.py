"""When the SSH server collects and trims after sessions end (sshd.memory)."""

from __future__ import annotations

import asyncio
import gc
import time
import weakref
from collections.abc import Callable

from sshd.memory import RECOLLECTIONS, MemoryReturn


async def test_a_burst_of_ended_sessions_is_collected_once_after_the_settle_time() -> None:
    memory = MemoryReturn(settle=0.1, min_ended=3)
    for open_left in (10, 9, 8, 7, 6):
        memory.session_ended(still_open=open_left)
    assert memory.collections == 0
    await asyncio.sleep(0.3)
    assert memory.collections == 1


async def test_a_few_ended_sessions_wait_for_more_while_others_are_open() -> None:
    memory = MemoryReturn(settle=0.01, min_ended=3)
    memory.session_ended(still_open=5)
    memory.session_ended(still_open=4)
    await asyncio.sleep(0.1)
    assert memory.collections == 0
    memory.session_ended(still_open=3)
    await asyncio.sleep(0.1)
    assert memory.collections == 1


async def test_the_last_open_session_ending_is_collected() -> None:
    memory = MemoryReturn(settle=0.01, min_ended=10)
    memory.session_ended(still_open=0)
    await asyncio.sleep(0.1)
    assert memory.collections == 1


async def test_closing_cancels_a_pending_collection() -> None:
    memory = MemoryReturn(settle=0.05, min_ended=1)
    memory.session_ended(still_open=3)
    memory.close()
    await asyncio.sleep(0.1)
    assert memory.collections == 0


class App:
    """Stands for a dashboard: a cycle, so only the cyclic collector frees it."""

    def __init__(self) -> None:
        self.me = self


async def until(check: Callable[[], bool], within: float = 10.0) -> None:
    deadline = time.monotonic() + within
    while not check():
        assert time.monotonic() < deadline, "the condition never held"
        await asyncio.sleep(0.01)


async def test_an_app_still_held_at_the_collection_is_collected_again_once_let_go() -> None:
    memory = MemoryReturn(settle=0.05, min_ended=1)
    app: App | None = App()
    held = [app]  # something of its connection had not let go yet
    memory.session_ended(still_open=0, app=app)
    app = None
    await until(lambda: memory.collections >= 1)
    gone = weakref.ref(held[0])
    gc.disable()  # only the server's collections may free it
    try:
        held.clear()
        await until(lambda: gone() is None)
        assert memory.collections >= 2  # a later collection, not the automatic collector
    finally:
        gc.enable()


async def test_an_app_that_never_lets_go_is_looked_at_a_bounded_number_of_times() -> None:
    memory = MemoryReturn(settle=0.005, min_ended=1)
    leaked = App()
    memory.session_ended(still_open=0, app=leaked)
    await until(lambda: memory.collections == 1 + RECOLLECTIONS)
    # The last retry waited 0.005 * 2**4 s: twice that and no more collections came.
    await asyncio.sleep(0.2)
    assert memory.collections == 1 + RECOLLECTIONS


async def test_the_server_takes_over_full_collections_and_gives_them_back() -> None:
    before = gc.get_threshold()
    memory = MemoryReturn(settle=0.01, min_ended=10, period=0.05)
    memory.start()
    try:
        # Young generations as before; the oldest never collected by Python on its own.
        assert gc.get_threshold()[:2] == before[:2]
        assert gc.get_threshold()[2] >= 2**30
        # ... but by the server, now and then, even with no session ended.
        for _ in range(100):
            if memory.collections >= 2:
                break
            await asyncio.sleep(0.05)
        assert memory.collections >= 2
    finally:
        memory.close()
    assert gc.get_threshold() == before
    collections = memory.collections
    await asyncio.sleep(0.1)
    assert memory.collections == collections  # closed: no more


async def test_a_burst_of_new_sessions_is_collected_once_after_the_last() -> None:
    memory = MemoryReturn(settle=1.0, min_ended=3)
    memory.session_started()
    memory.session_started()
    await asyncio.sleep(1.2)
    assert memory.collections == 0  # fewer than a burst
    for _ in range(5):
        memory.session_started()
        await asyncio.sleep(0.05)  # each one postpones it
    assert memory.collections == 0
    for _ in range(100):
        if memory.collections:
            break
        await asyncio.sleep(0.05)
    assert memory.collections == 1
    await asyncio.sleep(1.2)
    assert memory.collections == 1
    memory.close()
