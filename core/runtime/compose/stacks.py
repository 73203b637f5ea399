"""The `compose_stacks` table: one saved `StackState` per compose deployment.

Only this module runs SQL on the table. A row is written when the deployment's file is
rendered, read by a rollback to it (on any worker, any host) and by stop, start and down of its
stack, and removed with a failed attempt or with the deployment itself (ON DELETE CASCADE). The
panel's own workers are the only callers: deployments are checked against their owner where
users ask for them (core.deploy.service).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from core.db.pool import Connection, Pool, connection
from core.runtime.compose.state import StackState, state_from_json, state_to_json


class ComposeStacks:
    def __init__(self, pool: Pool) -> None:
        self._pool = pool

    @asynccontextmanager
    async def _using(self, conn: Connection | None) -> AsyncIterator[Connection]:
        """The caller's connection (its transaction), or one of the pool's."""
        if conn is not None:
            yield conn
            return
        async with connection(self._pool) as own:
            yield own

    async def save(
        self, deployment_id: int, state: StackState, conn: Connection | None = None
    ) -> None:
        """Keep `state` for the deployment, over what it had (encoding is CPU only: small)."""
        text = state_to_json(state)
        async with self._using(conn) as db:
            await db.execute(
                "INSERT INTO compose_stacks (deployment_id, state) VALUES ($1, $2::json)"
                " ON CONFLICT (deployment_id) DO UPDATE"
                " SET state = EXCLUDED.state, saved_at = now()",
                deployment_id,
                text,
            )

    async def get(self, deployment_id: int, conn: Connection | None = None) -> StackState | None:
        """The deployment's saved state; None if it has none (a deployment made before states
        were saved, or a Dockerfile one); ComposeStateUnreadable if in an unknown format."""
        async with self._using(conn) as db:
            text = await db.fetchval(
                "SELECT state::text FROM compose_stacks WHERE deployment_id = $1", deployment_id
            )
        if text is None:
            return None
        return state_from_json(text, f"Deployment #{deployment_id}'s compose stack")

    async def forget(self, deployment_id: int, conn: Connection | None = None) -> None:
        async with self._using(conn) as db:
            await db.execute("DELETE FROM compose_stacks WHERE deployment_id = $1", deployment_id)
