"""The serving processes (`ghst serve` runs several on one port, SO_REUSEPORT): each says in
`panel_processes`, this module's table, that it is alive, since when, and how many dashboard
sessions and SSH connections it holds, so `:system` in any process lists them all.

A process beats every `BEAT_SECONDS` and removes its row when it stops. One killed without a
word is left out of the list once its row is `STALE` old, and a later beat deletes the row.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from core.db.pool import Connection, Pool
from core.db.unit import reading, transaction

log = logging.getLogger(__name__)

BEAT_SECONDS = 5.0
STALE = timedelta(seconds=20)  # four beats missed


@dataclass(frozen=True)
class PanelProcess:
    host: str
    pid: int
    started_at: datetime
    sessions: int
    connections: int
    seen_at: datetime


@dataclass(frozen=True)
class Counts:
    sessions: int
    connections: int


async def alive(conn: Connection, now: datetime | None = None) -> list[PanelProcess]:
    """The processes that beat within `STALE` of `now`, by host and pid."""
    rows = await conn.fetch(
        "SELECT host, pid, started_at, sessions, connections, seen_at FROM panel_processes"
        " WHERE seen_at > $1 ORDER BY host, pid",
        (now or datetime.now(UTC)) - STALE,
    )
    return [PanelProcess(**dict(row)) for row in rows]


class PanelProcesses:
    """This process's heartbeat (written by `ghst serve`, never by a session), and the list."""

    def __init__(self, pool: Pool) -> None:
        self._pool = pool

    async def beat(self, host: str, pid: int, started_at: datetime, counts: Counts) -> None:
        async with transaction(self._pool) as conn:
            await conn.execute(
                "INSERT INTO panel_processes (host, pid, started_at, sessions, connections)"
                " VALUES ($1, $2, $3, $4, $5) ON CONFLICT (host, pid) DO UPDATE SET"
                " started_at = $3, sessions = $4, connections = $5, seen_at = now()",
                host,
                pid,
                started_at,
                counts.sessions,
                counts.connections,
            )
            # Rows of processes gone without a word (killed, a crashed host).
            await conn.execute(
                "DELETE FROM panel_processes WHERE seen_at < now() - $1::interval", STALE
            )

    async def gone(self, host: str, pid: int) -> None:
        async with transaction(self._pool) as conn:
            await conn.execute(
                "DELETE FROM panel_processes WHERE host = $1 AND pid = $2", host, pid
            )

    async def alive(self, now: datetime | None = None) -> list[PanelProcess]:
        async with reading(self._pool) as conn:
            return await alive(conn, now)

    async def heartbeat(
        self, host: str, pid: int, counts: Callable[[], Counts], every: float = BEAT_SECONDS
    ) -> None:
        """Beat every `every` seconds until cancelled, then remove the row. A beat that fails
        (the database restarting) is logged, and the next one tries again."""
        started_at = datetime.now(UTC)
        try:
            while True:
                try:
                    await self.beat(host, pid, started_at, counts())
                except Exception as error:  # the database restarting, say: the next beat tries
                    log.warning("the heartbeat of process %d was not written: %s", pid, error)
                await asyncio.sleep(every)
        finally:
            try:
                await asyncio.shield(self.gone(host, pid))
            except Exception as error:  # it ages out instead
                log.warning("process %d's row was not removed: %s", pid, error)
