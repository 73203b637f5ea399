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

from core.db.unit import transaction
from core.deploy.model import Deployment
from core.deploy.store import DeploymentStore
from core.installation import DEPLOYMENT_LABEL
from core.projects.service import ProjectService
from core.runtime.engine import DockerEngine

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Missing:
    deployment: Deployment  # the live one whose containers are gone
    heal_id: int | None  # the heal deployment queued for it now, if any


async def find_missing(
    store: DeploymentStore, projects: ProjectService, engine: DockerEngine
) -> list[Missing]:
    """Live deployments that lost every container since the last look, each with its heal."""
    live = await store.running(await projects.live_deployment_ids(running_only=True))
    if not live:
        return []
    # Listed after the query: a deployment live by then had its containers before.
    present = {labels.get(DEPLOYMENT_LABEL, "") for labels in await engine.container_labels({})}
    back = [d.id for d in live if d.missing_since is not None and str(d.id) in present]
    if back:
        await store.clear_missing(back)
    found = []
    for deployment in live:
        if str(deployment.id) in present or deployment.missing_since is not None:
            continue
        noticed, heal_id = await _mark_and_heal(store, projects, deployment)
        if noticed:
            found.append(Missing(deployment, heal_id))
            log.warning(
                "the containers of live deployment %s (%s) are gone: %s",
                deployment.id,
                deployment.project,
                f"healing with deployment {heal_id}" if heal_id else "nothing to start again",
            )
    return found


async def _mark_and_heal(
    store: DeploymentStore, projects: ProjectService, deployment: Deployment
) -> tuple[bool, int | None]:
    """Mark the loss (once) and queue a heal unless another deployment is on its way."""
    async with transaction(store.pool) as conn:
        owner = await projects.lock(conn, deployment.project_id, live_id=deployment.id)
        if owner is None:  # replaced, stopped or deleted meanwhile
            return False, None
        if not await store.mark_missing(conn, deployment.id):  # another worker noticed first
            return False, None
        if deployment.image is None:
            return True, None
        if await store.pending(deployment.project_id, conn) is not None:
            return True, None  # it replaces the lost version anyway
        heal = await store.insert(
            conn,
            project_id=deployment.project_id,
            project_name=deployment.project,
            user_id=owner,
            archive_id=deployment.archive_id,
            archive_name=deployment.archive_name,
            reason="heal",
            source_id=deployment.id,
        )
    return True, heal.id
