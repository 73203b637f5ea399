"""Issue 11, "each limit at its door", without Docker: a plan's disk at the upload door (what
uses the space and what to do), uploads racing for its last bytes, projects made before billing
(no plan: the settings' defaults, nothing to pay), the plans a user is offered."""

from __future__ import annotations

import asyncio
import os

import pytest

from core.archives.checks import ArchiveRejected
from core.billing.plans import PlanSpec, pids_for
from core.errors import QuotaExceededError
from core.panel import Panel
from tests.actors import SYSTEM, acting
from tests.fixtures_deploy import app_tar

MiB = 1 << 20
PASSWORD = "correct horse battery"
MINI = PlanSpec("mini", "Mini", 1_000, 100, 64, 1, 1)


async def upload(panel: Panel, user_id: int, project: str, payload: bytes) -> str:
    transfer = await panel.archives.begin_upload(acting(user_id), project, "app.tar")
    await transfer.write(payload)
    return (await transfer.finish()).name


def app_of(size: int) -> bytes:
    """An app archive of about `size` bytes that does not compress."""
    return app_tar({"Dockerfile": "FROM scratch\n", "blob.bin": os.urandom(size)})


async def test_an_upload_past_the_plans_disk_is_refused_saying_what_uses_it(panel: Panel) -> None:
    alice = await panel.accounts.sign_up("alice", "alice@example.com", PASSWORD)
    await panel.plans.add_version(SYSTEM, MINI)
    await panel.subscriptions.create_project(acting(alice.id), "small", "mini")
    first = await upload(panel, alice.id, "small", app_of(600 * 1024))
    assert first == "v1-app.tar"
    with pytest.raises(QuotaExceededError) as refused:
        await upload(panel, alice.id, "small", app_of(600 * 1024))
    message = refused.value.message
    assert "does not fit in the project's disk on the Mini plan (1.0 MiB)" in message
    assert "its uploaded versions use 0.6 MiB and its apps' volumes 0.0 MiB" in message
    assert "Delete old versions" in message and "a plan with more disk" in message
    usage = await panel.subscriptions.usage(acting(alice.id), "small")
    assert usage.plan == "Mini" and usage.disk.limit == MiB
    assert usage.disk.used == usage.archive_bytes < MiB
    # Once a version is deleted, there is room again.
    await panel.archives.delete(acting(alice.id), "small", first)
    assert (await upload(panel, alice.id, "small", app_of(600 * 1024))).endswith("-app.tar")


async def test_uploads_racing_for_the_plans_last_bytes_do_not_both_get_them(panel: Panel) -> None:
    alice = await panel.accounts.sign_up("alice", "alice@example.com", PASSWORD)
    await panel.plans.add_version(SYSTEM, MINI)
    await panel.subscriptions.create_project(acting(alice.id), "small", "mini")
    outcomes = await asyncio.gather(
        *(upload(panel, alice.id, "small", app_of(400 * 1024)) for _ in range(4)),
        return_exceptions=True,
    )
    accepted = [outcome for outcome in outcomes if isinstance(outcome, str)]
    # Refused at the door (QuotaExceededError) or by the check of the finished archive.
    refused = [o for o in outcomes if isinstance(o, QuotaExceededError | ArchiveRejected)]
    assert len(accepted) + len(refused) == 4, outcomes
    assert len(accepted) == 2  # 2 x 400 KiB fit in 1 MiB, a third does not
    usage = await panel.subscriptions.usage(acting(alice.id), "small")
    assert usage.disk.used <= MiB


async def test_a_project_made_before_billing_keeps_the_defaults_and_pays_nothing(
    panel: Panel,
) -> None:
    alice = await panel.accounts.sign_up("alice", "alice@example.com", PASSWORD)
    old = await panel.projects.create(acting(alice.id), "legacy")  # no plan, as before 0011
    assert await panel.subscriptions.plan_of(acting(alice.id), "legacy") is None
    limits = await panel.deployer.limits(old.id)
    settings = panel.settings
    assert (limits.ram_mb, limits.cpus, limits.pids, limits.max_services, limits.disk_mb) == (
        settings.app_memory_mb, settings.app_cpus, settings.app_pids,
        settings.compose_max_services, None,
    )  # fmt: skip
    usage = await panel.subscriptions.usage(acting(alice.id), "legacy")
    assert usage.plan == "" and usage.disk.limit is None
    assert usage.ram.limit == settings.app_memory_mb * MiB
    # Its uploads are bounded by the account's quota alone.
    assert await upload(panel, alice.id, "legacy", app_of(2 * MiB)) == "v1-app.tar"
    # Nothing is charged for it: the daily charge reads project_plans alone.
    run = await panel.billing.charges.run()
    assert run is not None and run.posted == 0


async def test_plans_have_a_pids_limit_from_their_ram_unless_named(panel: Panel) -> None:
    offered = {plan.code: plan for plan in await panel.plans.list()}
    assert {code: plan.pids for code, plan in offered.items()} == {
        "free": 256, "host-0": 512, "host-1": 1024, "host-2": 2048,
    }  # fmt: skip
    named = await panel.plans.add_version(SYSTEM, PlanSpec("x", "X", 1, 100, 64, 1, 1, pids=77))
    assert named.pids == 77
    assert pids_for(64) == 256 and pids_for(8192) == 1024


async def test_the_free_plan_is_known_to_be_taken(panel: Panel) -> None:
    alice = await panel.accounts.sign_up("alice", "alice@example.com", PASSWORD)
    assert not await panel.subscriptions.has_free_project(acting(alice.id))
    await panel.subscriptions.create_project(acting(alice.id), "first")
    assert await panel.subscriptions.has_free_project(acting(alice.id))
