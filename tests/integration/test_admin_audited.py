"""Every change the admin app makes leaves an audit entry with the admin as actor and `admin`
as origin: the walk below makes each one (tui/admin's keys call these AdminService methods),
then reads them back through `:audit`'s read model."""

from __future__ import annotations

import pytest

from core.actor import Actor
from core.billing.plans import PlanSpec
from core.errors import PanelError
from core.panel import Panel
from tests.actors import acting
from tests.fixtures_deploy import running_worker
from tests.integration.test_actor_rights import upload
from tests.integration.test_admin_views import people


async def test_every_admin_action_is_audited_as_the_admin_from_the_admin_app(
    deploy_panel: Panel,
) -> None:
    panel = deploy_panel
    alice, olga, bob = await people(panel)
    admin = Actor.for_staff(alice).acting_from("admin", source_address="local")
    staff = panel.admin
    done: list[str] = []

    async def step(action: str, change: object) -> None:
        await change  # type: ignore[misc]
        done.append(action)

    await step("account.block", staff.block(admin, "bob"))
    await step("account.unblock", staff.unblock(admin, "bob"))
    await step("account.set_role", staff.set_role(admin, "bob", "user"))
    await step("balance.adjust", staff.adjust_balance(admin, "bob", 200_000, "bank transfer"))
    await step("plan.change", staff.change_plan(admin, "shop", "host-1"))
    balance = (await staff.user(admin, "bob")).balance_kopecks
    await step("balance.adjust", staff.adjust_balance(admin, "bob", -balance, "refund"))
    await step("promised.take", staff.grant_promised_payment(admin, "bob"))

    await upload(panel, acting(bob), "shop")
    queued = await panel.deployments.deploy(acting(bob), "shop")
    await step("deployment.cancel", staff.cancel(admin, "shop", queued.id))
    again = await staff.requeue(admin, "shop", queued.id)
    done.append("deployment.deploy")
    await step("deployment.cancel", staff.cancel(admin, "shop", again.id))

    await step(
        "plan.create", staff.create_plan(admin, PlanSpec("tiny", "Tiny", 0, 250, 256, 256, 1))
    )
    await step("plan.retire", staff.retire_plan(admin, "tiny"))
    # Stop, start and delete wait for a worker. "shop" is made live on a deployment that has
    # no containers (nothing to build): the worker's stop finds nothing to do.
    async with panel.pool.acquire() as conn:
        await conn.execute(
            "UPDATE projects SET live_deployment_id = $1 WHERE name = 'shop'", queued.id
        )
    async with running_worker(panel):
        await step("project.stop", staff.stop(admin, "shop"))
        # Started on containers that never were: the worker fails it, the start is recorded.
        with pytest.raises(PanelError, match="containers of deployment"):
            await staff.start(admin, "shop")
        done.append("project.start")
        await step("project.delete", staff.delete_project(admin, "shop", "shop"))

    entries = await staff.audit(Actor.for_staff(olga), "actor:alice", limit=200)
    recorded = [e.action for e in reversed(entries) if e.action in done]
    for action in set(done):
        assert recorded.count(action) >= done.count(action), (action, recorded)
    for entry in entries:
        assert (entry.actor_kind, entry.actor_label, entry.origin) == ("admin", "alice", "admin")
    outcomes = {(e.action, e.outcome) for e in entries}
    assert ("project.start", "failed") in outcomes  # what the worker said, as the admin's
    assert {o for a, o in outcomes if a != "project.start"} == {"ok"}
