"""Issue 11: a downgrade racing an upload. The fit check of a downgrade and the disk check of an
upload each used to read the other's side before the other committed: an upload that began on
the larger plan was recorded against its disk after the downgrade, and a downgrade measured
before an upload landed took the smaller plan anyway. Either way the project ended over its
plan. Now the downgrade decides under the project's row lock, the one an upload records its
version under, and the upload reads its plan's disk again there: exactly one of the two wins,
and the end state fits the plan, whichever comes first. A deployment a worker holds may have
read the larger plan's limits: a downgrade waits until it has ended.

Each interleaving is forced (a hook holds one side at its worst moment), so each test shows its
race every run."""

from __future__ import annotations

import asyncio
import os

import pytest

from core.archives.quota import DiskRoom
from core.billing.plans import PlanSpec
from core.db.pool import Connection
from core.errors import ConflictError, QuotaExceededError
from core.panel import Panel
from tests.actors import SYSTEM, acting
from tests.fixtures_deploy import app_tar
from tests.tui.test_deployments import insert_deployment, set_state

pytestmark = pytest.mark.timeout(120)
MiB = 1 << 20
PASSWORD = "correct horse battery"
ROOMY = PlanSpec("roomy", "Roomy", 2_000, 100, 64, 2, 1)  # 2 MiB of disk
MINI = PlanSpec("mini", "Mini", 1_000, 100, 64, 1, 1)  # 1 MiB: one 600 KiB version fits, two not
VERSION = 600 * 1024


def app_of(size: int) -> bytes:
    """An app archive of about `size` bytes that does not compress."""
    return app_tar({"Dockerfile": "FROM scratch\n", "blob.bin": os.urandom(size)})


async def roomy_project_with_one_version(panel: Panel) -> int:
    alice = await panel.accounts.sign_up("alice", "alice@example.com", PASSWORD)
    await panel.plans.add_version(SYSTEM, ROOMY)
    await panel.plans.add_version(SYSTEM, MINI)
    await panel.subscriptions.create_project(acting(alice.id), "site", "roomy")
    transfer = await panel.archives.begin_upload(acting(alice.id), "site", "app.tar")
    await transfer.write(app_of(VERSION))
    await transfer.finish()
    return alice.id


async def fits_its_plan(panel: Panel, user_id: int) -> tuple[str, bool]:
    usage = await panel.subscriptions.usage(acting(user_id), "site")
    assert usage.disk.limit is not None
    return usage.plan, usage.disk.used <= usage.disk.limit


async def test_an_upload_begun_on_the_larger_plan_is_refused_after_the_downgrade(
    panel: Panel,
) -> None:
    alice = await roomy_project_with_one_version(panel)
    # The upload reads its room on Roomy, then waits there while the downgrade commits.
    room_read, go_on = asyncio.Event(), asyncio.Event()
    real = panel.subscriptions.disk_room

    async def held(project_id: int) -> DiskRoom | None:
        room = await real(project_id)
        if armed:
            room_read.set()
            await go_on.wait()
        return room

    armed = False
    panel.archives.attach_disk_room(held, panel.subscriptions.disk_limit_in)
    transfer = await panel.archives.begin_upload(acting(alice), "site", "app.tar")
    await transfer.write(app_of(VERSION))
    armed = True
    finishing = asyncio.create_task(transfer.finish())
    await asyncio.wait_for(room_read.wait(), 30)
    changed = await panel.subscriptions.change_plan(acting(alice), "site", "mini")
    assert changed.plan.code == "mini"  # one 600 KiB version fits 1 MiB
    go_on.set()
    with pytest.raises(QuotaExceededError) as refused:
        await finishing
    assert "does not fit in the project's disk on the Mini plan (1.0 MiB)" in refused.value.message
    assert await fits_its_plan(panel, alice) == ("Mini", True)
    versions = await panel.archives.list(acting(alice), "site")
    assert [v.version for v in versions if v.status == "ready"] == [1]


async def test_an_upload_landing_after_the_downgrade_measured_makes_it_refused(
    panel: Panel, monkeypatch: pytest.MonkeyPatch
) -> None:
    alice = await roomy_project_with_one_version(panel)
    # The downgrade measures (one version: it fits), then waits while a second one lands.
    measured, go_on = asyncio.Event(), asyncio.Event()
    real = panel.archives.stored_bytes
    calls = 0

    async def held(project_id: int, conn: Connection | None = None) -> int:
        nonlocal calls
        calls += 1
        stored = await real(project_id, conn)
        if calls == 1:  # the downgrade's first measurement; the upload's pass through
            measured.set()
            await go_on.wait()
        return stored

    monkeypatch.setattr(panel.archives, "stored_bytes", held)
    downgrading = asyncio.create_task(
        panel.subscriptions.change_plan(acting(alice), "site", "mini")
    )
    await asyncio.wait_for(measured.wait(), 30)
    transfer = await panel.archives.begin_upload(acting(alice), "site", "app.tar")
    await transfer.write(app_of(VERSION))
    assert (await transfer.finish()).version == 2  # still on Roomy: it fits
    go_on.set()
    with pytest.raises(ConflictError) as refused:
        await downgrading
    assert "site does not fit the Mini plan now" in refused.value.message
    assert "Disk: the project uses 1.2 MiB" in refused.value.message
    assert await fits_its_plan(panel, alice) == ("Roomy", True)


async def test_downgrades_and_uploads_at_once_leave_the_project_within_its_plan(
    panel: Panel,
) -> None:
    alice = await roomy_project_with_one_version(panel)

    async def upload() -> int:
        transfer = await panel.archives.begin_upload(acting(alice), "site", "app.tar")
        await transfer.write(app_of(VERSION))
        return (await transfer.finish()).version

    for _ in range(3):
        outcomes = await asyncio.gather(
            upload(),
            panel.subscriptions.change_plan(acting(alice), "site", "mini"),
            return_exceptions=True,
        )
        uploaded, downgraded = (not isinstance(o, BaseException) for o in outcomes)
        assert uploaded != downgraded, outcomes  # exactly one of the two wins
        assert await fits_its_plan(panel, alice) in (("Mini", True), ("Roomy", True))
        # Back to one version on Roomy for the next round.
        for archive in (await panel.archives.list(acting(alice), "site"))[:-1]:
            if archive.status == "ready":
                await panel.archives.delete(acting(alice), "site", archive.name)
        await panel.subscriptions.change_plan(acting(alice), "site", "roomy")


async def test_a_downgrade_waits_for_the_deployment_a_worker_holds(panel: Panel) -> None:
    """A worker's job may have read the larger plan's limits and start containers with them
    after the change: the downgrade is refused, saying so, until the job has ended."""
    alice = await panel.accounts.sign_up("alice", "alice@example.com", PASSWORD)
    project, _ = await panel.subscriptions.create_project(acting(alice.id), "site", "host-1")
    building = await insert_deployment(panel, project, "v1-app.zip", "building", seconds=None)
    with pytest.raises(ConflictError) as refused:
        await panel.subscriptions.change_plan(acting(alice.id), "site", "host-0")
    assert refused.value.message == (
        f"Deployment #{building} of site is in progress: change to a smaller plan once it has"
        " finished (or cancel it)."
    )
    plan = await panel.subscriptions.plan_of(acting(alice.id), "site")
    assert plan is not None and plan.plan.code == "host-1"
    # An upgrade gives more of everything: nothing to wait for.
    upgraded = await panel.subscriptions.change_plan(acting(alice.id), "site", "host-2")
    assert upgraded.plan.code == "host-2"
    await set_state(panel, building, "failed", "The app never answered.")
    changed = await panel.subscriptions.change_plan(acting(alice.id), "site", "host-0")
    assert changed.plan.code == "host-0"
