"""Parallel uploads against one storage quota, through OpenSSH's scp.

Attack: four `scp` uploads of 8 MB each, started at once against a 10 MiB quota. Each used to
see the whole quota free and all four were stored ("30.6 MiB of 10.0 MiB used (305%)"). Now
the uploads reserve quota atomically as bytes arrive: at most one is stored, the others are
refused with the quota's message, nothing of them stays in storage, and stored plus reserved
bytes never exceed the quota, not even for a moment.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from core.archives.quota import QuotaLedger
from core.archives.service import UPLOAD_PREFIX, ArchiveService
from core.panel import Panel
from sshd.server import GhstServer
from tests.actors import acting
from tests.conftest import panel_on_s3
from tests.e2e.helpers import running_server
from tests.e2e.transfers import (
    Account,
    Result,
    account,
    big_zip,
    eventually,
    nothing_left,
    remote,
    run,
    scp_command,
    versions,
    write,
)

QUOTA = 10 << 20
UPLOAD_SIZE = 8_000_000
PARALLEL = 4
QUOTA_MESSAGE = "This upload does not fit in your storage quota"
MODES = [pytest.param((), id="sftp-mode"), pytest.param(("-O",), id="legacy")]


@pytest.fixture(params=["local", "s3"])
async def storage_panel(panel: Panel, request: pytest.FixtureRequest) -> AsyncIterator[Panel]:
    """The panel with its archives in a local directory, or in S3 (moto)."""
    if request.param == "local":
        yield panel
        return
    async with panel_on_s3(panel, request.getfixturevalue("s3_server")) as on_s3:
        yield on_s3


async def set_quota(panel: Panel, who: Account, quota: int) -> None:
    async with panel.pool.acquire() as conn:
        await conn.execute("UPDATE users SET storage_quota_bytes = $2 WHERE id = $1", who.id, quota)


async def held(panel: Panel, who: Account) -> int:
    """Stored versions plus live reservations: what the quota must always cover."""
    standing = await QuotaLedger(panel.pool).standing(who.id)
    return standing.stored + standing.reserved


async def reservation_rows(panel: Panel) -> int:
    async with panel.pool.acquire() as conn:
        count: int = await conn.fetchval("SELECT count(*) FROM quota_reservations")
    return count


async def parallel_scp(
    server: GhstServer, panel: Panel, who: Account, tmp_path: Path, mode: tuple[str, ...]
) -> tuple[list[Result], int]:
    """Four scp uploads at once; (their results, the most stored + reserved seen meanwhile)."""
    names = [f"app{n}.zip" for n in range(PARALLEL)]
    for name in names:
        write(tmp_path / name, big_zip(UPLOAD_SIZE))
    peak = 0
    done = asyncio.Event()

    async def watch() -> None:
        nonlocal peak
        while not done.is_set():
            peak = max(
                peak, await held(panel, who), (await panel.archives.usage(acting(who.id)))[0]
            )
            await asyncio.sleep(0.01)

    watcher = asyncio.create_task(watch())
    try:
        results = await asyncio.gather(
            *(
                run(scp_command(server, who, *mode, name, remote(who, "shop/")), cwd=tmp_path)
                for name in names
            )
        )
    finally:
        done.set()
        await watcher
    return list(results), peak


@pytest.mark.parametrize("mode", MODES)
async def test_parallel_uploads_cannot_exceed_the_quota(
    storage_panel: Panel, tmp_path: Path, mode: tuple[str, ...]
) -> None:
    panel = storage_panel
    alice = await account(panel, tmp_path, "alice", projects=("shop",))
    await set_quota(panel, alice, QUOTA)
    async with running_server(panel) as server:
        results, peak = await parallel_scp(server, panel, alice, tmp_path, mode)
        history = await versions(panel, alice, "shop")
        stored = [archive for archive in history if archive.status == "ready"]
        assert len(stored) <= 1, [archive.name for archive in stored]
        # Refusals are the quota's, whether while the bytes arrived or at the check.
        for refused in history:
            if refused.status != "ready":
                assert "storage" in refused.message, refused.message
        succeeded = [result for result in results if result.status == 0]
        assert len(succeeded) == len(stored)
        for result in results:
            if result.status != 0:
                assert QUOTA_MESSAGE in result.stderr or "of storage left" in result.stderr, (
                    result.output
                )
        assert peak <= QUOTA
        used, quota = await panel.archives.usage(acting(alice.id))
        assert used <= quota == QUOTA
        # Nothing of the refused uploads stays: no pending upload, no stored object, no
        # reservation holding the quota.
        await eventually(lambda: nothing_left(panel, server), "the refused uploads to be dropped")
        keys = [listed.key for listed in await panel.storage.list_objects(UPLOAD_PREFIX)]
        assert keys == [archive.storage_key for archive in stored]
        assert await reservation_rows(panel) == 0


async def test_a_crashed_uploads_reservation_does_not_hold_the_quota_for_good(
    panel: Panel, tmp_path: Path
) -> None:
    # A short lease, as if the panel that held it had crashed long ago.
    ledger = QuotaLedger(panel.pool, lease_seconds=1.0)
    archives = ArchiveService(panel.pool, panel.storage, panel.projects, quota=ledger)
    crashed_panel = dataclasses.replace(panel, archives=archives)
    alice = await account(panel, tmp_path, "alice", projects=("shop",))
    await set_quota(panel, alice, QUOTA)
    # An upload that got 8 MB in and was then never finished nor aborted (its panel died).
    crashed = await archives.begin_upload(acting(alice.id), "shop", "lost.zip")
    await crashed.write(b"x" * UPLOAD_SIZE)
    write(tmp_path / "app.zip", big_zip(UPLOAD_SIZE))
    async with running_server(crashed_panel) as server:
        refused = await run(
            scp_command(server, alice, "app.zip", remote(alice, "shop/")), cwd=tmp_path
        )
        assert refused.status != 0
        assert "uploads in progress hold" in refused.stderr, refused.output

        async def lease_ran_out() -> bool:
            return (await ledger.standing(alice.id)).reserved == 0

        await eventually(lease_ran_out, "the crashed upload's lease to run out")
        result = await run(
            scp_command(server, alice, "app.zip", remote(alice, "shop/")), cwd=tmp_path
        )
        assert result.status == 0, result.output
        assert [archive.name for archive in await versions(panel, alice, "shop")] == ["v1-app.zip"]
    # The start-up clean-up removes the expired row (the storage side is its own concern).
    await archives.recover()
    assert await reservation_rows(panel) == 0
    await crashed.abort()
