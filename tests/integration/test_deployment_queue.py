"""The deployments queue and records against real PostgreSQL: what front ends and workers rely on.

No Docker here: these tests drive the queue the way a worker does (claim, renew, go live,
finish) and check what users see through DeploymentService.
"""

from __future__ import annotations

import asyncio
import random
import socket
from pathlib import Path

import pytest

from core.actor import Actor
from core.deploy.model import State
from core.deploy.queue import WORKER_DIED, DeploymentQueue, LeaseLost
from core.errors import (
    ConflictError,
    NotFoundError,
    PermissionDenied,
    UnavailableError,
    ValidationError,
)
from core.panel import Panel
from core.routing.ports import PortAllocator
from tests.actors import acting, as_user
from tests.integration.test_archives import PASSWORD, app_zip, upload


async def owner_with_versions(panel: Panel, name: str = "alice", versions: int = 2) -> int:
    user = await panel.accounts.sign_up(name, f"{name}@example.com", PASSWORD)
    await panel.projects.create(acting(user.id), f"{name}-shop")
    for _ in range(versions):
        await upload(panel, user.id, f"{name}-shop", "app.zip", app_zip())
    return user.id


def queue(panel: Panel, lease: float = 30.0) -> DeploymentQueue:
    return DeploymentQueue(panel.pool, lease, projects=panel.projects)


async def test_deploy_queues_the_newest_version_and_a_newer_request_replaces_a_queued_one(
    panel: Panel,
) -> None:
    alice = await owner_with_versions(panel)
    first = await panel.deployments.deploy(as_user(alice), "alice-shop")
    assert (first.state, first.archive_name, first.reason) == ("queued", "v2-app.zip", "deploy")
    second = await panel.deployments.deploy(as_user(alice), "alice-shop", "v1")
    history = await panel.deployments.list(as_user(alice), "alice-shop")
    assert [(d.id, d.state, d.archive_name) for d in history] == [
        (second.id, "queued", "v1-app.zip"),
        (first.id, "superseded", "v2-app.zip"),
    ]
    assert "newer deployment" in history[1].error
    status = await panel.deployments.status(as_user(alice), "alice-shop")
    assert status.state == "deploying"
    assert status.url == "http://alice-shop.localhost:8080/"


async def test_deploying_needs_an_uploaded_version_of_ones_own_project(panel: Panel) -> None:
    alice = await owner_with_versions(panel, versions=0)
    with pytest.raises(ValidationError, match="no uploaded version"):
        await panel.deployments.deploy(as_user(alice), "alice-shop")
    bob = await owner_with_versions(panel, "bob")
    with pytest.raises(NotFoundError):
        await panel.deployments.deploy(as_user(alice), "bob-shop")
    with pytest.raises(NotFoundError):
        await panel.deployments.deploy(as_user(bob), "bob-shop", "v9")


async def test_another_user_cannot_see_cancel_roll_back_or_read_logs_of_a_deployment(
    panel: Panel,
) -> None:
    alice = await owner_with_versions(panel)
    bob = await owner_with_versions(panel, "bob")
    deployment = await panel.deployments.deploy(as_user(alice), "alice-shop")
    for attempt in (
        panel.deployments.get(as_user(bob), "alice-shop", deployment.id),
        panel.deployments.list(as_user(bob), "alice-shop"),
        panel.deployments.cancel(as_user(bob), "alice-shop", deployment.id),
        panel.deployments.rollback(as_user(bob), "alice-shop", deployment.id),
        panel.deployments.build_log(as_user(bob), "alice-shop", deployment.id),
        panel.deployments.status(as_user(bob), "alice-shop"),
        panel.deployments.stop(as_user(bob), "alice-shop"),
        panel.deployments.restart(as_user(bob), "alice-shop"),
    ):
        with pytest.raises(NotFoundError):
            await attempt
    # Asking through one's own project for someone else's deployment number: not found either.
    with pytest.raises(NotFoundError):
        await panel.deployments.get(as_user(bob), "bob-shop", deployment.id)
    assert (
        await panel.deployments.get(as_user(alice), "alice-shop", deployment.id)
    ).state == "queued"


async def test_workers_claim_distinct_jobs_and_one_project_builds_one_at_a_time(
    panel: Panel,
) -> None:
    alice = await owner_with_versions(panel)
    bob = await owner_with_versions(panel, "bob")
    a = await panel.deployments.deploy(as_user(alice), "alice-shop")
    b = await panel.deployments.deploy(as_user(bob), "bob-shop")
    jobs = queue(panel)
    claimed = await asyncio.gather(*(jobs.claim(f"w{i}") for i in range(4)))
    got = sorted(job.id for job in claimed if job is not None)
    assert got == sorted([a.id, b.id])
    assert {job.state for job in claimed if job is not None} == {"building"}
    # A new deploy of alice's project waits while her build runs.
    again = await panel.deployments.deploy(as_user(alice), "alice-shop")
    assert await jobs.claim("w9") is None
    alice_worker = next(f"w{i}" for i, job in enumerate(claimed) if job and job.id == a.id)
    assert await jobs.finish(a.id, alice_worker, "failed", "boom")
    nxt = await jobs.claim("w9")
    assert nxt is not None and nxt.id == again.id


async def test_a_worker_that_stops_renewing_is_reaped_and_cannot_write_afterwards(
    panel: Panel,
) -> None:
    alice = await owner_with_versions(panel)
    deployment = await panel.deployments.deploy(as_user(alice), "alice-shop")
    jobs = queue(panel, lease=0.3)
    job = await jobs.claim("dead-worker")
    assert job is not None
    assert await jobs.reap_expired() == []  # the lease is still running
    await asyncio.sleep(0.5)
    reaped = await jobs.reap_expired()
    assert [(d.id, d.state, d.error) for d in reaped] == [(deployment.id, "failed", WORKER_DIED)]
    with pytest.raises(LeaseLost):
        await jobs.renew(deployment.id, "dead-worker")
    with pytest.raises(LeaseLost):
        await jobs.go_live(deployment.id, "dead-worker")
    assert not await jobs.finish(deployment.id, "dead-worker", "cancelled", "late")
    assert not await jobs.went_live(deployment.id, "dead-worker")
    seen = await panel.deployments.get(as_user(alice), "alice-shop", deployment.id)
    assert (seen.state, seen.error) == ("failed", WORKER_DIED)
    assert (await panel.deployments.status(as_user(alice), "alice-shop")).state == "failed"


async def test_cancel_ends_a_queued_deployment_and_asks_a_building_one_to_stop(
    panel: Panel,
) -> None:
    alice = await owner_with_versions(panel)
    jobs = queue(panel)
    building = await panel.deployments.deploy(as_user(alice), "alice-shop")
    assert await jobs.claim("w1") is not None
    assert not (await jobs.renew(building.id, "w1")).cancel_requested
    await panel.deployments.cancel(as_user(alice), "alice-shop", building.id)
    assert (await jobs.renew(building.id, "w1")).cancel_requested
    queued = await panel.deployments.deploy(as_user(alice), "alice-shop")
    cancelled = await panel.deployments.cancel(as_user(alice), "alice-shop", queued.id)
    assert cancelled.state == "cancelled"
    with pytest.raises(ConflictError, match="already finished"):
        await panel.deployments.cancel(as_user(alice), "alice-shop", queued.id)


async def test_going_live_replaces_the_previous_version_which_stays_available_for_rollback(
    panel: Panel,
) -> None:
    alice = await owner_with_versions(panel)
    jobs = queue(panel)
    first = await panel.deployments.deploy(as_user(alice), "alice-shop", "v1")
    await jobs.claim("w")
    await jobs.record(first.id, "w", kind="dockerfile", image="ghst/alice-shop:1", port=20001)
    assert await jobs.go_live(first.id, "w") is None
    second = await panel.deployments.deploy(as_user(alice), "alice-shop", "v2")
    await jobs.claim("w")
    await jobs.record(second.id, "w", kind="dockerfile", image="ghst/alice-shop:2", port=20002)
    assert not await jobs.went_live(second.id, "w")
    replaced = await jobs.go_live(second.id, "w")
    assert replaced is not None and replaced.id == first.id
    # Going live ends the lease: renewing fails, but the worker can tell it went live.
    with pytest.raises(LeaseLost):
        await jobs.renew(second.id, "w")
    assert await jobs.went_live(second.id, "w") and await jobs.went_live(first.id, "w")
    assert not await jobs.went_live(second.id, "another-worker")
    status = await panel.deployments.status(as_user(alice), "alice-shop")
    assert (status.state, status.live and status.live.id) == ("running", second.id)
    history = {d.id: d for d in await panel.deployments.list(as_user(alice), "alice-shop")}
    assert history[first.id].state == "superseded" and history[first.id].can_roll_back_to
    assert await panel.deployments.statuses(as_user(alice)) == {"alice-shop": "running"}

    with pytest.raises(ValidationError, match="running now"):
        await panel.deployments.rollback(as_user(alice), "alice-shop", second.id)
    rollback = await panel.deployments.rollback(as_user(alice), "alice-shop", first.id)
    assert (rollback.reason, rollback.source_id, rollback.archive_name) == (
        "rollback",
        first.id,
        "v1-app.zip",
    )
    restart = await panel.deployments.restart(as_user(alice), "alice-shop")
    assert (restart.reason, restart.source_id) == ("restart", second.id)
    await jobs.forget_image(first.id)
    with pytest.raises(ValidationError, match="pruned"):
        await panel.deployments.rollback(as_user(alice), "alice-shop", first.id)


async def test_a_failed_deployment_cannot_be_rolled_back_to(panel: Panel) -> None:
    alice = await owner_with_versions(panel)
    jobs = queue(panel)
    failed = await panel.deployments.deploy(as_user(alice), "alice-shop")
    await jobs.claim("w")
    await jobs.finish(failed.id, "w", "failed", "The build failed at step 2/3.")
    with pytest.raises(ValidationError, match="never went live"):
        await panel.deployments.rollback(as_user(alice), "alice-shop", failed.id)
    assert (await panel.deployments.status(as_user(alice), "alice-shop")).state == "failed"


async def test_the_build_log_is_read_from_an_offset_as_it_grows(panel: Panel) -> None:
    alice = await owner_with_versions(panel)
    jobs = queue(panel)
    deployment = await panel.deployments.deploy(as_user(alice), "alice-shop")
    await jobs.append_log(deployment.id, "Step 1/2 : FROM busybox\n")
    text, offset = await panel.deployments.build_log(as_user(alice), "alice-shop", deployment.id)
    assert text == "Step 1/2 : FROM busybox\n"
    await jobs.append_log(deployment.id, "Step 2/2 : RUN make ✓\n")
    more, offset2 = await panel.deployments.build_log(
        as_user(alice), "alice-shop", deployment.id, offset
    )
    assert more == "Step 2/2 : RUN make ✓\n"
    assert await panel.deployments.build_log(
        as_user(alice), "alice-shop", deployment.id, offset2
    ) == (
        "",
        offset2,
    )


def bind_below_ephemeral(sock: socket.socket) -> int:
    """Bind `sock` to a free port with four free ports after it, below the ephemeral range."""
    low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    for base in random.sample(range(20000, low - 5, 5), 200):
        probes = [socket.socket() for _ in range(4)]
        try:
            for offset, probe in enumerate(probes, start=1):
                probe.bind(("127.0.0.1", base + offset))
            sock.bind(("127.0.0.1", base))
            return base
        except OSError:
            continue
        finally:
            for probe in probes:
                probe.close()
    raise RuntimeError("no five free ports below the ephemeral range")


async def test_ports_are_unique_under_concurrency_skip_busy_ones_and_are_freed(
    panel: Panel,
) -> None:
    alice = await owner_with_versions(panel)
    project = await panel.projects.get(acting(alice), "alice-shop")
    deployments = [await panel.deployments.deploy(as_user(alice), "alice-shop") for _ in range(6)]
    with socket.socket() as busy:
        # Below the kernel's ephemeral ports, so no other program's connection takes one of the
        # five while the test runs: only `busy` holds one.
        taken = bind_below_ephemeral(busy)
        busy.listen()
        allocator = PortAllocator(panel.pool, taken, taken + 4)
        ports = await asyncio.gather(
            *(allocator.allocate(project.id, d.id) for d in deployments[:4]),
            return_exceptions=True,
        )
        granted = [p for p in ports if isinstance(p, int)]
        # Five ports in the range, one held by another program: four for us, all different.
        assert taken not in granted
        assert len(set(granted)) == len(granted) == 4
        with pytest.raises(UnavailableError, match="No free port"):
            await allocator.allocate(project.id, deployments[4].id)
    await allocator.release(deployments[0].id)
    assert sorted(await allocator.held(project.id)) == sorted(granted[1:])


async def live_project(panel: Panel, owner: int, project: str = "alice-shop") -> int:
    """Deploy and take the newest version live, as a worker would; the live deployment's id."""
    jobs = queue(panel)
    deployment = await panel.deployments.deploy(as_user(owner), project)
    assert (await jobs.claim("w")) is not None
    await jobs.go_live(deployment.id, "w")
    return deployment.id


async def test_the_actor_needs_the_scope_of_each_call(panel: Panel) -> None:
    alice = await owner_with_versions(panel)
    await live_project(panel, alice)
    reader = Actor("token", alice, "token r of alice", scopes=frozenset({"read"}))
    assert (await panel.deployments.status(reader, "alice-shop")).state == "running"
    assert len(await panel.deployments.list(reader, "alice-shop")) == 1
    deployment = (await panel.deployments.list(reader, "alice-shop"))[0]
    for attempt in (
        panel.deployments.deploy(reader, "alice-shop"),
        panel.deployments.redeploy(reader, "alice-shop"),
        panel.deployments.restart(reader, "alice-shop"),
        panel.deployments.cancel(reader, "alice-shop", deployment.id),
        panel.deployments.rollback(reader, "alice-shop", deployment.id),
        panel.deployments.stop(reader, "alice-shop"),
        panel.deployments.start(reader, "alice-shop"),
        panel.deployments.delete_project(reader, "alice-shop", "alice-shop"),
    ):
        with pytest.raises(PermissionDenied, match="'deploy' scope"):
            await attempt
    with pytest.raises(PermissionDenied, match="'logs' scope"):
        await panel.deployments.build_log(reader, "alice-shop", deployment.id)
    deployer = Actor("token", alice, "token d of alice", scopes=frozenset({"deploy"}))
    with pytest.raises(PermissionDenied, match="'read' scope"):
        await panel.deployments.status(deployer, "alice-shop")
    # A token limited to other projects of the same owner reaches none of this one.
    elsewhere = Actor("token", alice, "token e of alice", projects=frozenset({"alice-blog"}))
    with pytest.raises(PermissionDenied, match="not allowed to act on project 'alice-shop'"):
        await panel.deployments.status(elsewhere, "alice-shop")
    assert await panel.deployments.statuses(elsewhere) == {}


async def test_an_operator_reads_any_tenants_project_and_a_tenant_only_their_own(
    panel: Panel,
) -> None:
    alice = await owner_with_versions(panel)
    bob = await owner_with_versions(panel, "bob")
    live = await live_project(panel, alice)
    operator = Actor("admin", bob, "bob")
    status = await panel.deployments.status(operator, "alice-shop")
    assert (status.state, status.live and status.live.id) == ("running", live)
    with pytest.raises(NotFoundError):
        await panel.deployments.status(as_user(bob), "alice-shop")
    with pytest.raises(NotFoundError):
        await panel.deployments.status(operator, "nobody-shop")


async def test_a_deploy_joins_the_callers_transaction(panel: Panel) -> None:
    alice = await owner_with_versions(panel)
    async with panel.pool.acquire() as conn:
        transaction = conn.transaction()
        await transaction.start()
        queued = await panel.deployments.deploy(as_user(alice), "alice-shop", conn=conn)
        assert queued.state == "queued"
        await transaction.rollback()
    assert await panel.deployments.list(as_user(alice), "alice-shop") == []
    async with panel.pool.acquire() as conn, conn.transaction():
        kept = await panel.deployments.deploy(as_user(alice), "alice-shop", conn=conn)
        # Queued in the caller's transaction: no worker sees it before the commit.
        assert await queue(panel).claim("w") is None
    assert [d.id for d in await panel.deployments.list(as_user(alice), "alice-shop")] == [kept.id]


async def test_a_stop_or_delete_no_worker_takes_is_withdrawn_and_changes_nothing(
    panel: Panel,
) -> None:
    alice = await owner_with_versions(panel)
    live = await live_project(panel, alice)
    panel.deployments.claim_wait = 0.3
    with pytest.raises(UnavailableError, match="No deployment worker took the stop of alice-shop"):
        await panel.deployments.stop(as_user(alice), "alice-shop")
    with pytest.raises(UnavailableError, match="No deployment worker took the delete"):
        await panel.deployments.delete_project(as_user(alice), "alice-shop", "alice-shop")
    status = await panel.deployments.status(as_user(alice), "alice-shop")
    assert (status.state, status.live and status.live.id) == ("running", live)
    assert [d.id for d in await panel.deployments.list(as_user(alice), "alice-shop")] == [live]
    # Nothing is left queued for a worker that starts later.
    assert await queue(panel).claim("late") is None


async def test_a_stop_is_refused_while_a_deployment_of_the_project_is_in_progress(
    panel: Panel,
) -> None:
    alice = await owner_with_versions(panel)
    await live_project(panel, alice)
    building = await panel.deployments.deploy(as_user(alice), "alice-shop")
    await queue(panel).claim("w")
    with pytest.raises(ConflictError, match=f"#{building.id} of alice-shop is in progress"):
        await panel.deployments.stop(as_user(alice), "alice-shop")


async def test_a_stop_is_claimed_before_queued_builds_and_beside_a_full_build_capacity(
    panel: Panel,
) -> None:
    alice = await owner_with_versions(panel)
    bob = await owner_with_versions(panel, "bob")
    await live_project(panel, alice)
    jobs = queue(panel)
    building = await panel.deployments.deploy(as_user(bob), "bob-shop")
    claimed_build = await jobs.claim("w1")
    assert claimed_build is not None and claimed_build.id == building.id
    waiting = await panel.deployments.deploy(as_user(bob), "bob-shop")
    async with panel.pool.acquire() as conn:  # queued only: no worker runs in this test
        stop = await panel.deployments.stop(as_user(alice), "alice-shop", conn=conn)
    assert (stop.operation, stop.state) == ("stop", "queued")
    # A worker whose builds fill its capacity still takes the stop, and only that.
    claimed = await jobs.claim("w1", operations_only=True)
    assert claimed is not None and (claimed.id, claimed.state) == (stop.id, "working")
    assert await jobs.claim("w1", operations_only=True) is None
    assert await jobs.finish(stop.id, "w1", State.DONE, "")
    assert [d.id for d in await panel.deployments.list(as_user(bob), "bob-shop")] == [
        waiting.id,
        building.id,
    ]


async def test_the_database_refuses_a_move_the_state_machine_does_not_allow(panel: Panel) -> None:
    alice = await owner_with_versions(panel)
    live = await live_project(panel, alice)
    jobs = queue(panel)
    # running -> failed is no legal move: the worker's write changes nothing.
    assert not await jobs.finish(live, "w", State.FAILED, "too late")
    # A build job cannot be marked done (that end is for stop, start and delete jobs).
    building = await panel.deployments.deploy(as_user(alice), "alice-shop")
    await jobs.claim("w")
    assert not await jobs.finish(building.id, "w", State.DONE, "")
    history = await panel.deployments.list(as_user(alice), "alice-shop")
    assert [(d.id, d.state) for d in history] == [(building.id, "building"), (live, "running")]
