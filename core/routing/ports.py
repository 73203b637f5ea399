"""Host ports on 127.0.0.1 for app containers: unique across the panel, recorded in PostgreSQL,
freed with their deployment (the row goes when the deployment or project does).

Only the system (the deploy pipeline) hands ports out, so these methods take no actor; they
take the caller's connection so a port can be given in the same transaction as its deployment.
"""

from __future__ import annotations

import random
import socket

import asyncpg

from core.db.pool import Connection, Pool
from core.db.unit import reading, transaction
from core.errors import UnavailableError

CANDIDATES_PER_QUERY = 32


def port_is_free(port: int) -> bool:
    """Nothing else on the machine listens there (another program may hold a port we never gave)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


class PortAllocator:
    def __init__(self, pool: Pool, low: int, high: int) -> None:
        if not 1024 <= low <= high <= 65535:
            raise ValueError(f"bad port range {low}-{high}")
        self._pool = pool
        self._low = low
        self._high = high

    async def allocate(
        self, project_id: int, deployment_id: int, *, conn: Connection | None = None
    ) -> int:
        """A port nobody has: not in the table, and nothing listening on it right now. With
        `conn`, the port is the caller's only if its transaction commits."""
        size = self._high - self._low + 1
        # Start at a random place so a port just freed is not handed out again at once.
        start = random.randrange(size)
        async with reading(self._pool, conn) as db:
            rows = await db.fetch(
                "SELECT s AS port FROM generate_series($1::int, $2::int) s"
                " WHERE NOT EXISTS (SELECT 1 FROM ports WHERE port = s)"
                " ORDER BY (s - $1 + $3) % $4 LIMIT $5",
                self._low,
                self._high,
                size - start,
                size,
                CANDIDATES_PER_QUERY,
            )
            for row in rows:
                port = int(row["port"])
                if not port_is_free(port):
                    continue
                try:
                    # Its own (sub)transaction: a clash must not abort the caller's transaction.
                    async with db.transaction():
                        await db.execute(
                            "INSERT INTO ports (port, project_id, deployment_id)"
                            " VALUES ($1, $2, $3)",
                            port,
                            project_id,
                            deployment_id,
                        )
                except asyncpg.UniqueViolationError:
                    continue  # taken by a concurrent allocation: try the next one
                return port
        raise UnavailableError(
            "No free port is left for new apps on this server. Please tell the operator."
        )

    async def release(self, deployment_id: int, *, conn: Connection | None = None) -> None:
        async with transaction(self._pool, conn) as tx:
            await tx.execute("DELETE FROM ports WHERE deployment_id = $1", deployment_id)

    async def held(self, project_id: int, *, conn: Connection | None = None) -> list[int]:
        async with reading(self._pool, conn) as db:
            rows = await db.fetch(
                "SELECT port FROM ports WHERE project_id = $1 ORDER BY port", project_id
            )
        return [int(row["port"]) for row in rows]
