"""Running out of money, against the real PostgreSQL, dockerd and nginx: paid projects are
suspended once the balance has been at zero or below for the grace period (their containers
stop, nginx shows the suspended page, their work is refused), and a credit that brings the
balance above zero resumes them by itself. Promised payments and their limits."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import docker
import pytest

from core.actor import Actor
from core.billing.promised import MAX_PROMISES, PROMISE_DAYS
from core.billing.proration import billing_day, daily_share
from core.deploy.store import DeploymentStore
from core.errors import (
    ConflictError,
    NotFoundError,
    PermissionDenied,
    SuspendedError,
    ValidationError,
)
from core.panel import Panel
from tests.actors import SYSTEM, acting, as_user
from tests.fixtures_deploy import Deploying, eventually, page_app
from tests.fixtures_nginx import http_request

PASSWORD = "correct horse battery"
HOST_0 = 50_000  # kopecks a month


async def sign_up(panel: Panel, name: str) -> Actor:
    return acting(await panel.accounts.sign_up(name, f"{name}@example.com", PASSWORD))


async def run_out(panel: Panel, user_id: int) -> datetime:
    """Bring the account to zero or below; since when it has been there."""
    balance = await panel.billing.balances.balance(SYSTEM, owner_id=user_id)
    if balance > 0:
        await panel.billing.balances.adjust(SYSTEM, user_id, -balance - 100, "spent")
    elif balance == 0:
        await panel.billing.balances.adjust(SYSTEM, user_id, -100, "spent")
    async with panel.pool.acquire() as conn:
        since = await panel.billing.suspensions.in_arrears_since(conn, user_id)
    assert since is not None
    return since


async def suspended(panel: Panel, actor: Actor, project: str) -> bool:
    plan = await panel.billing.subscriptions.plan_of(actor, project)
    assert plan is not None
    return plan.suspended_at is not None


def running_containers(client: docker.DockerClient, panel: Panel, deployment_id: int) -> list[str]:
    labels = [f"ghst.deployment={deployment_id}", f"ghst.installation={panel.installation.id}"]
    return [found["Id"] for found in client.api.containers(filters={"label": labels})]


async def test_suspended_then_topped_up_the_site_comes_back_through_nginx(
    deploying: Deploying, base_image: str, docker_client: docker.DockerClient
) -> None:
    panel, router = deploying.panel, deploying.router
    alice = as_user(deploying.user_id)
    await panel.billing.subscriptions.create_project(alice, "paid-site", "host-0")
    await panel.billing.subscriptions.create_project(alice, "free-site")
    first = await deploying.deploy_files("paid-site", page_app(base_image, "first"))
    assert first.state == "running", await deploying.log(first)
    live = await deploying.deploy_files("paid-site", page_app(base_image, "hello"))
    assert live.state == "running", await deploying.log(live)
    free = await deploying.deploy_files("free-site", page_app(base_image, "free"))
    assert free.state == "running", await deploying.log(free)
    assert (await http_request(router, "paid-site")).text.strip() == "hello"

    since = await run_out(panel, deploying.user_id)
    run = await panel.billing.suspensions.run(now=since + timedelta(days=3))
    assert run is not None and len(run.projects) == 1  # the paid one only
    assert await suspended(panel, alice, "paid-site")
    assert not await suspended(panel, alice, "free-site")

    async def shows_suspended_page() -> bool:
        answer = await http_request(router, "paid-site")
        status = await panel.deployments.status(alice, "paid-site")
        return answer.status == 503 and "suspended" in answer.text and status.state == "stopped"

    await eventually(shows_suspended_page)
    assert "run out of money" in (await http_request(router, "paid-site")).text
    assert running_containers(docker_client, panel, live.id) == []
    assert (await http_request(router, "free-site")).text.strip() == "free"

    # Every way to make it run again is refused, with the reason and what to do.
    for attempt in (
        panel.deployments.deploy(alice, "paid-site"),
        panel.deployments.redeploy(alice, "paid-site"),
        panel.deployments.restart(alice, "paid-site"),
        panel.deployments.rollback(alice, "paid-site", first.id),
        panel.deployments.start(alice, "paid-site"),
        panel.archives.begin_upload(alice, "paid-site", "app.tar"),
    ):
        with pytest.raises(SuspendedError, match=r"suspended for non-payment.*Top up"):
            await attempt
    # A heal queued straight into the queue (as the lost-container check does) is refused by
    # the worker that claims it: nothing brings a suspended project back up but money.
    async with panel.pool.acquire() as conn, conn.transaction():
        heal = await DeploymentStore(panel.pool).insert(
            conn,
            project_id=live.project_id,
            project_name="paid-site",
            user_id=deploying.user_id,
            archive_id=live.archive_id,
            archive_name=live.archive_name,
            reason="heal",
            source_id=live.id,
        )
    healed = await deploying.settle(heal)
    assert healed.state == "failed" and "suspended for non-payment" in healed.error
    assert (await http_request(router, "paid-site")).status == 503
    # A top-up that leaves the balance at zero or below resumes nothing.
    owed = -await panel.billing.balances.balance(alice)
    await panel.billing.payments.record_manual(SYSTEM, deploying.user_id, owed, "part")
    assert await suspended(panel, alice, "paid-site")

    await panel.billing.payments.record_manual(SYSTEM, deploying.user_id, 50_000, "bank")
    assert not await suspended(panel, alice, "paid-site")  # in the payment's transaction

    # The start job routes the site before it records the project as running again: wait for
    # both, as a user watching the dashboard and the site would.
    async def answers_again() -> bool:
        answer = await http_request(router, "paid-site")
        status = await panel.deployments.status(alice, "paid-site")
        return answer.status == 200 and answer.text.strip() == "hello" and status.state == "running"

    await eventually(answers_again)
    assert running_containers(docker_client, panel, live.id)
    status = await panel.deployments.status(alice, "paid-site")
    assert (status.state, status.live) == ("running", live)


async def test_a_project_its_owner_had_stopped_stays_stopped_after_the_resume(
    deploying: Deploying, base_image: str
) -> None:
    panel, router = deploying.panel, deploying.router
    alice = as_user(deploying.user_id)
    await panel.billing.subscriptions.create_project(alice, "paused", "host-0")
    live = await deploying.deploy_files("paused", page_app(base_image, "hi"))
    assert live.state == "running", await deploying.log(live)
    await panel.deployments.stop(alice, "paused")
    since = await run_out(panel, deploying.user_id)
    await panel.billing.suspensions.run(now=since + timedelta(days=4))

    async def page(word: str) -> bool:
        answer = await http_request(router, "paused")
        return answer.status == 503 and word in answer.text

    await eventually(lambda: page("is suspended"))
    await panel.billing.balances.adjust(SYSTEM, deploying.user_id, 100_000, "goodwill")
    await eventually(lambda: page("is stopped"))
    assert (await panel.deployments.status(alice, "paused")).state == "stopped"


async def test_the_grace_period_ends_exactly_when_set_and_a_rerun_changes_nothing(
    panel: Panel,
) -> None:
    alice = await sign_up(panel, "alice")
    await panel.billing.subscriptions.create_project(alice, "shop", "host-0")
    await panel.billing.subscriptions.create_project(alice, "diary", "host-1")
    await panel.billing.subscriptions.create_project(alice, "notes")  # free
    bob = await sign_up(panel, "bob")
    await panel.billing.subscriptions.create_project(bob, "bobs", "host-0")
    await panel.billing.balances.adjust(SYSTEM, bob.owner_id, 10_000, "paid ahead")
    since = await run_out(panel, alice.owner_id)
    suspensions = panel.billing.suspensions
    grace = timedelta(days=3)
    early = await suspensions.run(now=since + grace - timedelta(microseconds=1))
    assert early is not None and early.projects == ()
    assert not await suspended(panel, alice, "shop")
    on_time = await suspensions.run(now=since + grace)
    assert on_time is not None and on_time.accounts == (alice.owner_id,)
    assert len(on_time.projects) == 2
    assert await suspended(panel, alice, "shop") and await suspended(panel, alice, "diary")
    assert not await suspended(panel, alice, "notes")  # a free project is never suspended
    assert not await suspended(panel, bob, "bobs")  # bob has money
    again = await suspensions.run(now=since + grace * 10)
    assert again is not None and again.projects == ()
    # A suspended project is not charged.
    charged = await panel.billing.charges.run(now=since + grace + timedelta(days=1))
    assert charged is not None
    history = await panel.billing.balances.history(alice)
    assert not [entry for entry in history if entry.kind == "charge"]


async def test_two_suspension_runners_at_once_suspend_each_project_once(panel: Panel) -> None:
    names = []
    for index in range(6):
        user = await sign_up(panel, f"user{index}")
        await panel.billing.subscriptions.create_project(user, f"site{index}", "host-0")
        await run_out(panel, user.owner_id)
        names.append(user)
    later = datetime.now(UTC) + timedelta(days=5)
    runs = await asyncio.gather(*(panel.billing.suspensions.run(now=later) for _ in range(4)))
    suspended_now = [project for run in runs if run is not None for project in run.projects]
    assert len(suspended_now) == len(set(suspended_now)) == 6


async def test_a_payment_racing_a_suspension_leaves_the_account_running(panel: Panel) -> None:
    for attempt in range(5):
        user = await sign_up(panel, f"racer{attempt}")
        await panel.billing.subscriptions.create_project(user, f"race{attempt}", "host-0")
        since = await run_out(panel, user.owner_id)
        await asyncio.gather(
            panel.billing.suspensions.run(now=since + timedelta(days=3)),
            panel.billing.payments.record_manual(SYSTEM, user.owner_id, 100_000, "bank"),
        )
        # Whichever came first, the money is in and the project runs.
        assert not await suspended(panel, user, f"race{attempt}")


async def test_a_promised_payment_resumes_and_is_limited_to_two_in_28_days(panel: Panel) -> None:
    alice = await sign_up(panel, "alice")
    await panel.billing.subscriptions.create_project(alice, "shop", "host-0")
    promised = panel.billing.promised
    since = await run_out(panel, alice.owner_id)
    await panel.billing.suspensions.run(now=since + timedelta(days=3))
    assert await suspended(panel, alice, "shop")
    today = billing_day(datetime.now(UTC), panel.settings.billing_time_zone)
    three_days = PROMISE_DAYS * daily_share(HOST_0, today)
    assert await promised.offer(alice) == three_days

    first = await promised.take(alice)
    assert first.amount == three_days
    assert not await suspended(panel, alice, "shop")  # resumed like a top-up
    assert await panel.billing.balances.balance(alice) == three_days - 100
    with pytest.raises(ConflictError, match="already have a promised payment open"):
        await promised.take(alice)

    # The next top-up takes it back, in its own transaction.
    await panel.billing.payments.record_manual(SYSTEM, alice.owner_id, 10_000, "bank")
    assert await panel.billing.balances.balance(alice) == 10_000 - 100
    back = [e for e in await panel.billing.balances.history(alice) if e.kind == "adjustment"]
    assert back[0].amount == -three_days and "taken back (paid by a top-up)" in back[0].reason
    with pytest.raises(ValidationError, match="still covers"):
        await promised.take(alice)

    await run_out(panel, alice.owner_id)
    second = await promised.take(alice)
    # Unpaid, it is taken back when it expires, and the account is in arrears again.
    assert await promised.settle_expired(now=second.expires_at - timedelta(seconds=1)) == 0
    assert await promised.settle_expired(now=second.expires_at) == 1
    assert await promised.settle_expired(now=second.expires_at) == 0
    assert await panel.billing.balances.balance(alice) < 0
    with pytest.raises(ConflictError, match=f"at most {MAX_PROMISES} times in 28 days"):
        await promised.take(alice)
    # 28 days after the first, one is available again.
    after = await promised.take(alice, now=first.taken_at + timedelta(days=28, seconds=1))
    assert after.amount > 0
    assert len(await promised.history(alice)) == 3


async def test_promised_payments_racing_for_one_account_credit_once(panel: Panel) -> None:
    users = []
    for name in ("alice", "bob"):
        user = await sign_up(panel, name)
        await panel.billing.subscriptions.create_project(user, f"{name}-shop", "host-0")
        await run_out(panel, user.owner_id)
        users.append(user)
    alice, bob = users
    outcomes = await asyncio.gather(
        *(panel.billing.promised.take(alice) for _ in range(4)),
        panel.billing.promised.take(bob),
        return_exceptions=True,
    )
    taken = [o for o in outcomes[:4] if not isinstance(o, BaseException)]
    refused = [o for o in outcomes[:4] if isinstance(o, ConflictError)]
    assert (len(taken), len(refused)) == (1, 3)
    assert not isinstance(outcomes[4], BaseException)  # another account is not held up
    credits = [e for e in await panel.billing.balances.history(alice) if e.kind == "promised"]
    assert len(credits) == 1


async def test_nobody_takes_a_promised_payment_for_another_account(panel: Panel) -> None:
    alice = await sign_up(panel, "alice")
    await panel.billing.subscriptions.create_project(alice, "shop", "host-0")
    await run_out(panel, alice.owner_id)
    bob = await sign_up(panel, "bob")
    with pytest.raises(NotFoundError):
        await panel.billing.promised.take(bob, owner_id=alice.owner_id)
    token = Actor("token", alice.owner_id, "token abc of alice")
    with pytest.raises(PermissionDenied):
        await panel.billing.promised.take(token)
    # No paid project: nothing to promise.
    with pytest.raises(ValidationError, match="no paid project"):
        await panel.billing.promised.take(bob)
    assert await panel.billing.promised.history(alice) == []
    # An operator may give one (the `ghst billing promise` command does).
    given = await panel.billing.promised.take(SYSTEM, owner_id=alice.owner_id)
    assert given.user_id == alice.owner_id


async def test_the_grace_period_counts_from_when_the_balance_first_ran_out(panel: Panel) -> None:
    alice = await sign_up(panel, "alice")
    balances = panel.billing.balances
    suspensions = panel.billing.suspensions

    async def since() -> datetime | None:
        async with panel.pool.acquire() as conn:
            return await suspensions.in_arrears_since(conn, alice.owner_id)

    assert await since() is None
    await balances.adjust(SYSTEM, alice.owner_id, 500, "gift")
    assert await since() is None
    await balances.adjust(SYSTEM, alice.owner_id, -500, "spent")
    first = await since()
    assert first is not None  # zero counts as run out
    await balances.adjust(SYSTEM, alice.owner_id, -300, "spent more")
    assert await since() == first  # still the day it first ran out
    await balances.adjust(SYSTEM, alice.owner_id, 301, "paid")
    assert await since() is None
    await balances.adjust(SYSTEM, alice.owner_id, -2, "spent")
    again = await since()
    assert again is not None and again > first
