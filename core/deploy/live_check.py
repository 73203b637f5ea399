"""Live deployments whose containers are gone: noticed, shown to their owner, and healed.

Containers can vanish under the panel: removed by hand or by another program, or lost with
dockerd. The database then still says "running" while nginx answers 502. Every worker looks
now and then (`find_missing`): a live, not stopped deployment with no container of this panel
left is marked `missing_since`, which the project's screen shows, and a `heal` deployment is
queued once per loss: it starts the same image again (a restart that skips the build), so the
site comes back with the same version and env vars, and its log says what happened. Containers
that come back by themselves (dockerd restarted) clear the mark.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from core.db.pool import Pool, connection
from core.deploy.service import DEPLOYMENT_SELECT, NOTIFY_CHANNEL, Deployment, row_to_deployment
from core.installation import DEPLOYMENT_LABEL
from core.runtime.engine import DockerEngine

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Missing:
    deployment: Deployment  # the live one whose containers are gone
    heal_id: int | None  # the heal deployment queued for it now, if any


async def find_missing(pool: Pool, engine: DockerEngine) -> list[Missing]:
    """Live deployments that lost every container since the last look, each with its heal."""
    async with connection(pool) as conn:
        rows = await conn.fetch(
            DEPLOYMENT_SELECT + " WHERE d.state = 'running' AND p.live_deployment_id = d.id"
            " AND NOT p.stopped"
        )
    if not rows:
        return []
    live = [row_to_deployment(row) for row in rows]
    # Listed after the query: a deployment live by then had its containers before.
    present = {labels.get(DEPLOYMENT_LABEL, "") for labels in await engine.container_labels({})}
    back = [d.id for d in live if d.missing_since is not None and str(d.id) in present]
    if back:
        async with connection(pool) as conn:
            await conn.execute(
                "UPDATE deployments SET missing_since = NULL WHERE id = any($1::bigint[])", back
            )
    found = []
    for deployment in live:
        if str(deployment.id) in present or deployment.missing_since is not None:
            continue
        noticed, heal_id = await _mark_and_heal(pool, deployment)
        if noticed:
            found.append(Missing(deployment, heal_id))
            log.warning(
                "the containers of live deployment %s (%s) are gone: %s",
                deployment.id,
                deployment.project,
                f"healing with deployment {heal_id}" if heal_id else "nothing to start again",
            )
    return found


async def _mark_and_heal(pool: Pool, deployment: Deployment) -> tuple[bool, int | None]:
    """Mark the loss (once) and queue a heal unless another deployment is on its way."""
    async with connection(pool) as conn, conn.transaction():
        owner = await conn.fetchval(
            "SELECT user_id FROM projects WHERE id = $1 AND live_deployment_id = $2"
            " AND NOT stopped FOR UPDATE",
            deployment.project_id,
            deployment.id,
        )
        if owner is None:  # replaced, stopped or deleted meanwhile
            return False, None
        marked = await conn.fetchval(
            "UPDATE deployments SET missing_since = now() WHERE id = $1"
            " AND missing_since IS NULL RETURNING id",
            deployment.id,
        )
        if marked is None:  # another worker noticed first
            return False, None
        if deployment.image is None:
            return True, None
        busy = await conn.fetchval(
            "SELECT id FROM deployments WHERE project_id = $1"
            " AND state IN ('queued', 'building', 'starting') LIMIT 1",
            deployment.project_id,
        )
        if busy is not None:  # it replaces the lost version anyway
            return True, None
        heal_id = await conn.fetchval(
            "INSERT INTO deployments"
            " (project_id, user_id, archive_id, archive_name, reason, source_id)"
            " VALUES ($1, $2, $3, $4, 'heal', $5) RETURNING id",
            deployment.project_id,
            owner,
            deployment.archive_id,
            deployment.archive_name,
            deployment.id,
        )
        await conn.execute("SELECT pg_notify($1, $2)", NOTIFY_CHANNEL, str(heal_id))
    return True, int(heal_id)
