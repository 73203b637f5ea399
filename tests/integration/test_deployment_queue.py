"""The deployments queue and records against real PostgreSQL: what front ends and workers rely on.

No Docker here: these tests drive the queue the way a worker does (claim, renew, go live,
finish) and check what users see through DeploymentService.
"""

from __future__ import annotations

import asyncio
import socket

import pytest

from core.deploy.queue import WORKER_DIED, DeploymentQueue, LeaseLost
from core.errors import ConflictError, NotFoundError, UnavailableError, ValidationError
from core.panel import Panel
from core.routing.ports import PortAllocator
from tests.actors import acting
from tests.integration.test_archives import PASSWORD, app_zip, upload


async def owner_with_versions(panel: Panel, name: str = "alice", versions: int = 2) -> int:
    user = await panel.accounts.sign_up(name, f"{name}@example.com", PASSWORD)
    await panel.projects.create(acting(user.id), f"{name}-shop")
    for _ in range(versions):
        await upload(panel, user.id, f"{name}-shop", "app.zip", app_zip())
    return user.id


def queue(panel: Panel, lease: float = 30.0) -> DeploymentQueue:
    return DeploymentQueue(panel.pool, lease)


async def test_deploy_queues_the_newest_version_and_a_newer_request_replaces_a_queued_one(
    panel: Panel,
) -> None:
    alice = await owner_with_versions(panel)
    first = await panel.deployments.deploy(alice, "alice-shop")
    assert (first.state, first.archive_name, first.reason) == ("queued", "v2-app.zip", "deploy")
    second = await panel.deployments.deploy(alice, "alice-shop", "v1")
    history = await panel.deployments.list(alice, "alice-shop")
    assert [(d.id, d.state, d.archive_name) for d in history] == [
        (second.id, "queued", "v1-app.zip"),
        (first.id, "superseded", "v2-app.zip"),
    ]
    assert "newer deployment" in history[1].error
    status = await panel.deployments.status(alice, "alice-shop")
    assert status.state == "deploying"
    assert status.url == "http://alice-shop.localhost:8080/"


async def test_deploying_needs_an_uploaded_version_of_ones_own_project(panel: Panel) -> None:
    alice = await owner_with_versions(panel, versions=0)
    with pytest.raises(ValidationError, match="no uploaded version"):
        await panel.deployments.deploy(alice, "alice-shop")
    bob = await owner_with_versions(panel, "bob")
    with pytest.raises(NotFoundError):
        await panel.deployments.deploy(alice, "bob-shop")
    with pytest.raises(NotFoundError):
        await panel.deployments.deploy(bob, "bob-shop", "v9")


async def test_another_user_cannot_see_cancel_roll_back_or_read_logs_of_a_deployment(
    panel: Panel,
) -> None:
    alice = await owner_with_versions(panel)
    bob = await owner_with_versions(panel, "bob")
    deployment = await panel.deployments.deploy(alice, "alice-shop")
    for attempt in (
        panel.deployments.get(bob, "alice-shop", deployment.id),
        panel.deployments.list(bob, "alice-shop"),
        panel.deployments.cancel(bob, "alice-shop", deployment.id),
        panel.deployments.rollback(bob, "alice-shop", deployment.id),
        panel.deployments.build_log(bob, "alice-shop", deployment.id),
        panel.deployments.status(bob, "alice-shop"),
        panel.deployments.stop(bob, "alice-shop"),
        panel.deployments.restart(bob, "alice-shop"),
    ):
        with pytest.raises(NotFoundError):
            await attempt
    # Asking through one's own project for someone else's deployment number: not found either.
    with pytest.raises(NotFoundError):
        await panel.deployments.get(bob, "bob-shop", deployment.id)
    assert (await panel.deployments.get(alice, "alice-shop", deployment.id)).state == "queued"


async def test_workers_claim_distinct_jobs_and_one_project_builds_one_at_a_time(
    panel: Panel,
) -> None:
    alice = await owner_with_versions(panel)
    bob = await owner_with_versions(panel, "bob")
    a = await panel.deployments.deploy(alice, "alice-shop")
    b = await panel.deployments.deploy(bob, "bob-shop")
    jobs = queue(panel)
    claimed = await asyncio.gather(*(jobs.claim(f"w{i}") for i in range(4)))
    got = sorted(job.id for job in claimed if job is not None)
    assert got == sorted([a.id, b.id])
    assert {job.state for job in claimed if job is not None} == {"building"}
    # A new deploy of alice's project waits while her build runs.
    again = await panel.deployments.deploy(alice, "alice-shop")
    assert await jobs.claim("w9") is None
    alice_worker = next(f"w{i}" for i, job in enumerate(claimed) if job and job.id == a.id)
    assert await jobs.finish(a.id, alice_worker, "failed", "boom")
    nxt = await jobs.claim("w9")
    assert nxt is not None and nxt.id == again.id


async def test_a_worker_that_stops_renewing_is_reaped_and_cannot_write_afterwards(
    panel: Panel,
) -> None:
    alice = await owner_with_versions(panel)
    deployment = await panel.deployments.deploy(alice, "alice-shop")
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
    seen = await panel.deployments.get(alice, "alice-shop", deployment.id)
    assert (seen.state, seen.error) == ("failed", WORKER_DIED)
    assert (await panel.deployments.status(alice, "alice-shop")).state == "failed"


async def test_cancel_ends_a_queued_deployment_and_asks_a_building_one_to_stop(
    panel: Panel,
) -> None:
    alice = await owner_with_versions(panel)
    jobs = queue(panel)
    building = await panel.deployments.deploy(alice, "alice-shop")
    assert await jobs.claim("w1") is not None
    assert not (await jobs.renew(building.id, "w1")).cancel_requested
    await panel.deployments.cancel(alice, "alice-shop", building.id)
    assert (await jobs.renew(building.id, "w1")).cancel_requested
    queued = await panel.deployments.deploy(alice, "alice-shop")
    cancelled = await panel.deployments.cancel(alice, "alice-shop", queued.id)
    assert cancelled.state == "cancelled"
    with pytest.raises(ConflictError, match="already finished"):
        await panel.deployments.cancel(alice, "alice-shop", queued.id)


async def test_going_live_replaces_the_previous_version_which_stays_available_for_rollback(
    panel: Panel,
) -> None:
    alice = await owner_with_versions(panel)
    jobs = queue(panel)
    first = await panel.deployments.deploy(alice, "alice-shop", "v1")
    await jobs.claim("w")
    await jobs.record(first.id, "w", kind="dockerfile", image="ghst/alice-shop:1", port=20001)
    assert await jobs.go_live(first.id, "w") is None
    second = await panel.deployments.deploy(alice, "alice-shop", "v2")
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
    status = await panel.deployments.status(alice, "alice-shop")
    assert (status.state, status.live and status.live.id) == ("running", second.id)
    history = {d.id: d for d in await panel.deployments.list(alice, "alice-shop")}
    assert history[first.id].state == "superseded" and history[first.id].can_roll_back_to
    assert await panel.deployments.statuses(alice) == {"alice-shop": "running"}

    with pytest.raises(ValidationError, match="running now"):
        await panel.deployments.rollback(alice, "alice-shop", second.id)
    rollback = await panel.deployments.rollback(alice, "alice-shop", first.id)
    assert (rollback.reason, rollback.source_id, rollback.archive_name) == (
        "rollback",
        first.id,
        "v1-app.zip",
    )
    restart = await panel.deployments.restart(alice, "alice-shop")
    assert (restart.reason, restart.source_id) == ("restart", second.id)
    await jobs.forget_image(first.id)
    with pytest.raises(ValidationError, match="pruned"):
        await panel.deployments.rollback(alice, "alice-shop", first.id)


async def test_a_failed_deployment_cannot_be_rolled_back_to(panel: Panel) -> None:
    alice = await owner_with_versions(panel)
    jobs = queue(panel)
    failed = await panel.deployments.deploy(alice, "alice-shop")
    await jobs.claim("w")
    await jobs.finish(failed.id, "w", "failed", "The build failed at step 2/3.")
    with pytest.raises(ValidationError, match="never went live"):
        await panel.deployments.rollback(alice, "alice-shop", failed.id)
    assert (await panel.deployments.status(alice, "alice-shop")).state == "failed"


async def test_the_build_log_is_read_from_an_offset_as_it_grows(panel: Panel) -> None:
    alice = await owner_with_versions(panel)
    jobs = queue(panel)
    deployment = await panel.deployments.deploy(alice, "alice-shop")
    await jobs.append_log(deployment.id, "Step 1/2 : FROM busybox\n")
    text, offset = await panel.deployments.build_log(alice, "alice-shop", deployment.id)
    assert text == "Step 1/2 : FROM busybox\n"
    await jobs.append_log(deployment.id, "Step 2/2 : RUN make ✓\n")
    more, offset2 = await panel.deployments.build_log(alice, "alice-shop", deployment.id, offset)
    assert more == "Step 2/2 : RUN make ✓\n"
    assert await panel.deployments.build_log(alice, "alice-shop", deployment.id, offset2) == (
        "",
        offset2,
    )


async def test_ports_are_unique_under_concurrency_skip_busy_ones_and_are_freed(
    panel: Panel,
) -> None:
    alice = await owner_with_versions(panel)
    project = await panel.projects.get(acting(alice), "alice-shop")
    deployments = [await panel.deployments.deploy(alice, "alice-shop") for _ in range(6)]
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        taken = busy.getsockname()[1]
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
