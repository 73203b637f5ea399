"""An admin's suspension of a project (core/admin/holds.py, migration 0020), against the real
PostgreSQL (and dockerd and nginx for the real deployment path): it stops the project like
billing's suspension, refuses its work, is not lifted by money, does not lift billing's, and
only admins make it, audited as themselves; refused attempts are audited too."""

from __future__ import annotations

from datetime import timedelta

import docker
import pytest

from core.actor import Actor
from core.errors import NotFoundError, PermissionDenied, SuspendedError, ValidationError
from core.events import Event
from core.panel import Panel
from tests.actors import SYSTEM, acting, as_user
from tests.fixtures_deploy import Deploying, eventually, page_app
from tests.fixtures_nginx import http_request
from tests.integration.test_events import REFRESH, next_event
from tests.integration.test_suspension import run_out, running_containers, suspended

PASSWORD = "correct horse battery"
OPERATORS = r"suspended by the panel's operators.*does not lift it"


async def staff(panel: Panel) -> tuple[Actor, Actor]:
    """An admin (root) and an operator (olga)."""
    await panel.accounts.sign_up("root", "root@example.com", PASSWORD)
    await panel.accounts.sign_up("olga", "olga@example.com", PASSWORD)
    admin = await panel.accounts.set_role(SYSTEM, "root", "admin")
    operator = await panel.accounts.set_role(SYSTEM, "olga", "operator")
    return Actor.for_staff(admin), Actor.for_staff(operator)


async def audited(panel: Panel, action: str) -> list[tuple[str, str | None, str]]:
    """(actor, target, outcome) of the entries of `action`, oldest first."""
    rows = await panel.admin.audit(SYSTEM, f"action:{action}", limit=50)
    return [(e.actor_label, e.target_name, e.outcome) for e in reversed(rows)]


async def test_an_admins_suspension_outlasts_money_and_billings_resume(
    deploying: Deploying, base_image: str, docker_client: docker.DockerClient
) -> None:
    panel, router = deploying.panel, deploying.router
    admin, _ = await staff(panel)
    alice = as_user(deploying.user_id)
    await panel.billing.subscriptions.create_project(alice, "abuse", "host-0")
    first = await deploying.deploy_files("abuse", page_app(base_image, "first"))
    assert first.state == "running", await deploying.log(first)
    live = await deploying.deploy_files("abuse", page_app(base_image, "hello"))
    assert live.state == "running", await deploying.log(live)

    await panel.admin.suspend(admin, "abuse", "phishing pages")
    assert (await panel.admin.project(admin, "abuse")).held

    async def page(status: int, word: str) -> bool:
        answer = await http_request(router, "abuse")
        return answer.status == status and word in answer.text

    async def stopped() -> bool:
        status = await panel.deployments.status(alice, "abuse")
        return await page(503, "is suspended") and status.state == "stopped"

    await eventually(stopped)
    assert running_containers(docker_client, panel, live.id) == []
    page_text = (await http_request(router, "abuse")).text
    assert "suspended by the hosting panel's operators" in page_text  # not "run out of money"
    assert "money" not in page_text
    for attempt in (
        panel.deployments.deploy(alice, "abuse"),
        panel.deployments.redeploy(alice, "abuse"),
        panel.deployments.restart(alice, "abuse"),
        panel.deployments.rollback(alice, "abuse", first.id),
        panel.deployments.start(alice, "abuse"),
        panel.archives.begin_upload(alice, "abuse", "app.tar"),
    ):
        with pytest.raises(SuspendedError, match=r"operators \(phishing pages\).*does not lift"):
            await attempt

    # A top-up lifts nothing; billing's suspension comes and goes under the admin's.
    await panel.billing.balances.adjust(SYSTEM, deploying.user_id, 100_000, "top-up")
    assert (await panel.admin.project(admin, "abuse")).held
    since = await run_out(panel, deploying.user_id)
    await panel.billing.suspensions.run(now=since + timedelta(days=4))
    assert await suspended(panel, alice, "abuse")
    await panel.billing.payments.record_manual(SYSTEM, deploying.user_id, 100_000, "bank")
    assert not await suspended(panel, alice, "abuse")
    with pytest.raises(SuspendedError, match=OPERATORS):
        await panel.archives.begin_upload(alice, "abuse", "app.tar")
    jobs = await panel.admin.deployments(admin, active_only=False, project_prefix="abuse")
    assert "start" not in [job.operation for job in jobs]  # the payment started nothing
    await eventually(stopped)

    assert await panel.admin.resume(admin, "abuse")

    async def answers_again() -> bool:
        status = await panel.deployments.status(alice, "abuse")
        return await page(200, "hello") and status.state == "running"

    await eventually(answers_again)
    assert await audited(panel, "project.suspend") == [("root", "abuse", "ok")]
    assert await audited(panel, "project.resume") == [("root", "abuse", "ok")]


async def test_billings_suspension_stays_when_the_admin_resumes(panel: Panel) -> None:
    admin, _ = await staff(panel)
    bob = acting(await panel.accounts.sign_up("bob", "bob@example.org", PASSWORD))
    await panel.billing.subscriptions.create_project(bob, "shop", "host-0")
    assert bob.user_id is not None
    since = await run_out(panel, bob.user_id)
    await panel.billing.suspensions.run(now=since + timedelta(days=4))
    await panel.admin.suspend(admin, "shop")
    with pytest.raises(SuspendedError, match=OPERATORS):  # the operators' reason comes first
        await panel.archives.begin_upload(bob, "shop", "app.tar")

    assert await panel.admin.resume(admin, "shop")
    assert not await panel.admin.resume(admin, "shop")  # nothing left to lift
    row = await panel.admin.project(admin, "shop")
    assert (row.held, row.suspended) == (False, True)
    with pytest.raises(SuspendedError, match=r"non-payment.*Top up"):
        await panel.archives.begin_upload(bob, "shop", "app.tar")


async def test_suspending_twice_holds_once_and_keeps_the_first_reason(panel: Panel) -> None:
    admin, _ = await staff(panel)
    bob = acting(await panel.accounts.sign_up("bob", "bob@example.org", PASSWORD))
    await panel.billing.subscriptions.create_project(bob, "shop")
    first = await panel.admin.suspend(admin, "shop", "  spam   mail ")
    assert await panel.admin.arrears(admin) == []  # suspending moved no money
    again = await panel.admin.suspend(admin, "shop", "other")
    assert (first.reason, again.reason, again.held_at) == ("spam mail", "spam mail", first.held_at)
    assert await audited(panel, "project.suspend") == [("root", "shop", "ok")]
    with pytest.raises(ValidationError, match="at most 200"):
        await panel.admin.suspend(admin, "shop", "x" * 201)
    with pytest.raises(NotFoundError):
        await panel.admin.suspend(admin, "nothing-here")


async def test_nobody_but_an_admin_suspends_or_resumes_and_the_attempt_is_audited(
    panel: Panel,
) -> None:
    admin, operator = await staff(panel)
    bob_user = await panel.accounts.sign_up("bob", "bob@example.org", PASSWORD)
    bob = acting(bob_user)
    await panel.billing.subscriptions.create_project(bob, "shop")
    mallory = acting(await panel.accounts.sign_up("mallory", "m@example.org", PASSWORD))
    await panel.billing.subscriptions.create_project(mallory, "lair")
    token = Actor.for_token(
        bob_user, token_id=1, prefix="gh_x", scopes=frozenset({"read", "deploy", "admin"})
    )
    # The owner may not lift an admin's suspension of their own project, nor anyone else's.
    await panel.admin.suspend(admin, "shop")
    for actor in (operator, bob, mallory, token):
        with pytest.raises(PermissionDenied):
            await panel.admin.suspend(actor, "lair")
        with pytest.raises(PermissionDenied):
            await panel.admin.resume(actor, "shop")
    assert (await panel.admin.project(admin, "shop")).held
    assert not (await panel.admin.project(admin, "lair")).held
    # (The token's attempt is the same account's as bob's moments ago: recorded once.)
    for action, target in (("admin.suspend", "lair"), ("admin.resume", "shop")):
        refused = {(e[0], e[1]) for e in await audited(panel, action) if e[2] == "refused"}
        assert refused >= {("bob", target), ("mallory", target)}, action


async def test_a_payment_while_both_hold_succeeds_and_starts_nothing(
    deploying: Deploying, base_image: str
) -> None:
    panel, router = deploying.panel, deploying.router
    admin, _ = await staff(panel)
    alice = as_user(deploying.user_id)
    await panel.billing.subscriptions.create_project(alice, "owing", "host-0")
    live = await deploying.deploy_files("owing", page_app(base_image, "hello"))
    assert live.state == "running", await deploying.log(live)
    since = await run_out(panel, deploying.user_id)
    await panel.billing.suspensions.run(now=since + timedelta(days=4))

    async def page(status: int, word: str) -> bool:
        answer = await http_request(router, "owing")
        state = (await panel.deployments.status(alice, "owing")).state
        return answer.status == status and word in answer.text and state == wanted[status]

    wanted = {503: "stopped", 200: "running"}
    await eventually(lambda: page(503, "is suspended"))
    await panel.admin.suspend(admin, "owing", "abuse")

    # Billing's resume lifts its own suspension only; the payment itself goes through.
    await panel.billing.payments.record_manual(SYSTEM, deploying.user_id, 100_000, "bank")
    row = await panel.admin.project(admin, "owing")
    assert (row.suspended, row.held) == (False, True)
    jobs = await panel.admin.deployments(admin, active_only=False, project_prefix="owing")
    assert "start" not in [job.operation for job in jobs]
    with pytest.raises(SuspendedError, match=OPERATORS):
        await panel.archives.begin_upload(alice, "owing", "app.tar")

    assert await panel.admin.resume(admin, "owing")  # the owner had not stopped it: it runs
    await eventually(lambda: page(200, "hello"))


async def test_a_hold_taken_or_lifted_tells_the_owners_watchers(panel: Panel) -> None:
    admin, _ = await staff(panel)
    bob_user = await panel.accounts.sign_up("bob", "bob@example.org", PASSWORD)
    bob = acting(bob_user)
    await panel.billing.subscriptions.create_project(bob, "shop")
    project = await panel.projects.by_name("shop")
    assert project is not None
    with panel.events.subscribe(bob, kinds=["project"]) as events:
        await panel.events.start()
        assert await next_event(events) == REFRESH
        await panel.admin.suspend(admin, "shop")
        assert await next_event(events) == Event("project", project.id, bob_user.id)
        await panel.admin.resume(admin, "shop")
        assert await next_event(events) == Event("project", project.id, bob_user.id)
