"""`:system`'s serving processes (core/admin/processes.py, migration 0021): each `ghst serve`
process beats in PostgreSQL with its open sessions, any process lists them all, and a process
that stops is gone from the list (one killed ages out). Once with real processes sharing the
port and OpenSSH clients."""

from __future__ import annotations

import asyncio
import signal
import socket
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from core.actor import Actor
from core.admin.processes import STALE, Counts
from core.errors import PermissionDenied
from core.panel import Panel
from core.settings import Settings
from tests.actors import SYSTEM, acting
from tests.e2e.helpers import add_key, create_user, new_key, write_private_key
from tests.e2e.terminal import OpenSSHTerminal, openssh_command
from tests.fixtures_deploy import eventually
from tests.integration.test_serve_processes import dashboards_on_every_process, ghst_serve

STARTED = datetime(2026, 12, 1, 8, 0, tzinfo=UTC)


async def test_processes_are_listed_for_staff_and_age_out(panel: Panel) -> None:
    await panel.processes.beat("web-1", 101, STARTED, Counts(3, 4))
    await panel.processes.beat("web-1", 102, STARTED, Counts(0, 1))
    await panel.processes.beat("web-1", 101, STARTED, Counts(5, 6))  # the same process again
    await panel.accounts.sign_up("olga", "olga@example.com", "correct horse battery")
    operator = Actor.for_staff(await panel.accounts.set_role(SYSTEM, "olga", "operator"))
    rows = await panel.admin.processes(operator)
    assert [(r.name, r.detail) for r in rows] == [
        ("ghst serve web-1:101", "5 sessions · 6 connections · up 12-01 08:00"),
        ("ghst serve web-1:102", "0 sessions · 1 connections · up 12-01 08:00"),
    ]
    bob = acting(await panel.accounts.sign_up("bob", "bob@example.org", "correct horse battery"))
    with pytest.raises(PermissionDenied):
        await panel.admin.processes(bob)

    await panel.processes.gone("web-1", 102)
    assert [r.pid for r in await panel.processes.alive()] == [101]
    # One that stopped beating (killed) is left out once its last beat is STALE old.
    later = datetime.now(UTC) + STALE + timedelta(seconds=1)
    assert await panel.processes.alive(now=later) == []


async def test_a_heartbeat_reports_the_counts_and_removes_its_row_when_stopped(
    panel: Panel,
) -> None:
    counts = Counts(2, 3)
    beating = asyncio.create_task(panel.processes.heartbeat("web-2", 7, lambda: counts, 0.05))

    async def shows(sessions: int) -> bool:
        return [(r.pid, r.sessions) for r in await panel.processes.alive()] == [(7, sessions)]

    await eventually(lambda: shows(2))
    counts = Counts(9, 9)
    await eventually(lambda: shows(9))
    beating.cancel()
    with pytest.raises(asyncio.CancelledError):
        await beating
    assert await panel.processes.alive() == []


async def test_system_lists_each_serving_process_with_its_sessions(
    panel: Panel, settings: Settings, tmp_path: Path
) -> None:
    user = await create_user(panel, "alice")
    key = new_key()
    await add_key(panel, user, key)
    command = openssh_command(0, "alice", write_private_key(key, tmp_path / "id"))
    terminals: list[OpenSSHTerminal] = []
    async with ghst_serve(
        settings, "--processes", "2", "--no-worker", GHST_NGINX_MANAGED="0"
    ) as served:
        try:
            command[command.index("-p") + 1] = str(served.port)
            terminals = await dashboards_on_every_process(served, command)
            children = sorted(served.children)
            host = socket.gethostname()

            async def listed() -> bool:
                found = {(r.host, r.pid): r.sessions for r in await panel.processes.alive()}
                return (
                    sorted(pid for h, pid in found if h == host) == children
                    and sum(found.values()) == len(terminals)
                    and all(found.values())  # each serves some of them
                )

            await eventually(listed, within=30)
            rows = await panel.admin.processes(SYSTEM)
            assert {r.name for r in rows} == {f"ghst serve {host}:{pid}" for pid in children}
        finally:
            for terminal in terminals:
                await terminal.close()
            served.process.send_signal(signal.SIGTERM)
            assert await asyncio.wait_for(served.process.wait(), 30) == 0
    assert await panel.processes.alive() == []  # each removed its row on the way out
