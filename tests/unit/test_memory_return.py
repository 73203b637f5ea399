"""When the SSH server collects and trims after sessions end (sshd.memory)."""

from __future__ import annotations

import asyncio

from sshd.memory import MemoryReturn


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
