"""An admin's suspension of a project (abuse, say): `admin_holds`, this module's table.

It is not billing's suspension for non-payment (core.billing.suspension): a top-up never lifts
it, and lifting it never lifts that one; a project held by both runs again only once neither
holds it. It stops a project the same way: in the transaction that records it, the project's
queued deployments are cancelled and a stop is queued, so a worker stops its containers and
nginx shows the held page; deploys, starts and uploads are refused with the reason (it is
a `Hold` on projects, attached when the panel is built).

Both the suspension and the resume lock the owner's balance row first, as a credit (which may
resume billing's suspension) does: the two never decide about the same project at once. (An
account without a balance row has never had money move, so billing holds none of its projects.)
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from core.actor import Actor
from core.audit import entries as audit
from core.audit.service import records_refusals
from core.billing import ledger, subscriptions
from core.db.pool import Connection, Pool
from core.db.unit import reading, transaction
from core.deploy.service import DeploymentService
from core.errors import NotFoundError, SuspendedError, ValidationError
from core.projects.holds import StoppedPage
from core.projects.service import Project, ProjectService

MAX_REASON = 200
CANCELLED = "The project was suspended by the panel's operators before this could run."


def refusal(what: str, reason: str) -> str:
    why = f" ({reason})" if reason else ""
    return (
        f"This project is suspended by the panel's operators{why}, so it cannot {what} now."
        " Topping up the balance does not lift it: write to the operators. Nothing was deleted."
    )


@dataclass(frozen=True)
class AdminHold:
    project: str
    held_at: datetime
    reason: str


class AdminHolds:
    """Admins suspend and resume projects; also the projects' `Hold` for those suspended."""

    def __init__(
        self, pool: Pool, projects: ProjectService, deployments: DeploymentService
    ) -> None:
        self._pool = pool
        self._projects = projects
        self._deployments = deployments

    # --- the Hold on projects -----------------------------------------------------------------

    async def refuse(self, conn: Connection, project_id: int, what: str) -> None:
        reason = await conn.fetchval(
            "SELECT reason FROM admin_holds WHERE project_id = $1", project_id
        )
        if reason is not None:
            raise SuspendedError(refusal(what, str(reason)))

    async def stopped_page(self, project_id: int) -> StoppedPage:
        async with reading(self._pool) as db:
            held = await db.fetchval(
                "SELECT true FROM admin_holds WHERE project_id = $1", project_id
            )
        return "held" if held else "stopped"

    # --- admins' changes ----------------------------------------------------------------------

    @records_refusals("project.suspend")
    async def suspend(self, actor: Actor, project: str, reason: str = "") -> AdminHold:
        """Hold the project (already held: as it was). Its containers stop through the queue."""
        actor.require_admin()
        reason = " ".join(reason.split())
        if len(reason) > MAX_REASON:
            raise ValidationError(f"A reason is at most {MAX_REASON} characters.")
        found = await self._project(project)
        async with transaction(self._pool) as conn:
            await ledger.lock_existing_balance(conn, found.user_id)
            await self._projects.lock(conn, found.id)
            # The owner's own choice: billing's record of it if its suspension holds already
            # (its stop made the project look stopped), else the project's flag.
            stopped = await subscriptions.stopped_before_suspension(conn, found.id)
            if stopped is None:
                flags = (await self._projects.deploy_flags([found.id], conn)).get(found.id)
                stopped = flags is not None and flags.stopped
            row = await conn.fetchrow(
                "INSERT INTO admin_holds (project_id, held_by, reason, stopped_before)"
                " VALUES ($1, $2, $3, $4) ON CONFLICT (project_id) DO NOTHING"
                " RETURNING held_at, reason",
                found.id,
                actor.user_id,
                reason,
                stopped,
            )
            if row is None:  # held already: nothing changes, nothing is recorded
                row = await conn.fetchrow(
                    "SELECT held_at, reason FROM admin_holds WHERE project_id = $1", found.id
                )
                assert row is not None
                return AdminHold(found.name, row["held_at"], row["reason"])
            await self._deployments.hold(conn, found, actor, CANCELLED)
            await audit.record(
                conn,
                actor,
                "project.suspend",
                audit.Target("project", found.name, found.id, found.user_id),
                metadata={"reason": reason},
            )
        await self._projects.invalidate(found.user_id)
        return AdminHold(found.name, row["held_at"], row["reason"])

    @records_refusals("project.resume")
    async def resume(self, actor: Actor, project: str) -> bool:
        """Lift the admin's hold; the project starts again unless billing still holds it (or
        its owner had stopped it). False: it was not held by an admin."""
        actor.require_admin()
        found = await self._project(project)
        async with transaction(self._pool) as conn:
            await ledger.lock_existing_balance(conn, found.user_id)
            await self._projects.lock(conn, found.id)
            stopped = await conn.fetchval(
                "DELETE FROM admin_holds WHERE project_id = $1 RETURNING stopped_before", found.id
            )
            if stopped is None:
                return False
            if await self._projects.holds.held(conn, found.id):
                # Billing's suspension stays; its resume starts the project as the owner left it.
                await subscriptions.keep_stopped_before(conn, found.id, bool(stopped))
            else:
                await self._deployments.release(conn, found, actor, start=not stopped)
            await audit.record(
                conn,
                actor,
                "project.resume",
                audit.Target("project", found.name, found.id, found.user_id),
            )
        await self._projects.invalidate(found.user_id)
        return True

    async def _project(self, name: str) -> Project:
        found = await self._projects.by_name(name.strip().lower())
        if found is None:
            raise NotFoundError(f"No project named {name[:40]!r}.")
        return found
