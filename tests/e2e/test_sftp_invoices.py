"""Invoices over SFTP: `/billing/2026-11.txt` and `.html`, read-only, each user's own only,
whatever the path says."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import asyncssh
import pytest

from core.billing import invoices
from core.billing.charges import charge_day
from core.billing.invoice_render import as_html, as_text
from core.panel import Panel
from sshd.server import GhstServer
from tests.actors import SYSTEM, acting
from tests.e2e.transfers import Account, account, sftp_batch, sftp_client, visitor

pytestmark = pytest.mark.e2e

NOVEMBER = date(2026, 11, 1)


async def invoiced(panel: Panel, who: Account, project: str) -> invoices.Invoice:
    """`who` pays for three days of November on Host-0 and gets that month's invoice."""
    await panel.billing.subscriptions.create_project(acting(who.id), project, "host-0")
    async with panel.pool.acquire() as conn:
        await conn.execute(
            "UPDATE project_plans SET billed_from = $2 WHERE user_id = $1", who.id, NOVEMBER
        )
        for day in (1, 2, 3):
            async with conn.transaction():
                await charge_day(conn, date(2026, 11, day), SYSTEM)
        async with conn.transaction():
            made = await invoices.issue(
                conn, panel.projects, who.id, NOVEMBER, "Europe/Moscow", "RUB"
            )
    assert made is not None
    return made


@pytest.fixture
async def alice(panel: Panel, tmp_path: Path) -> Account:
    return await account(panel, tmp_path, "alice")


@pytest.fixture
async def bob(panel: Panel, tmp_path: Path) -> Account:
    return await account(panel, tmp_path, "bob")


async def test_invoices_are_files_under_billing(
    ssh_server: GhstServer, panel: Panel, alice: Account, tmp_path: Path
) -> None:
    async with sftp_client(ssh_server, alice) as (_, sftp):
        assert await sftp.listdir("/billing") == [".", ".."]  # reachable before any invoice
        assert "billing" not in await sftp.listdir("/")
    invoice = await invoiced(panel, alice, "shop")
    async with sftp_client(ssh_server, alice) as (_, sftp):
        assert "billing" in await sftp.listdir("/")
        assert sorted(await sftp.listdir("/billing")) == [
            ".",
            "..",
            "2026-11.html",
            "2026-11.txt",
        ]
        async with sftp.open("/billing/2026-11.txt", "rb") as file:
            text = (await file.read()).decode()
        assert text == as_text(invoice, "alice")
        assert (await sftp.stat("/billing/2026-11.html")).size == len(
            as_html(invoice, "alice").encode()
        )
        # Read-only: no writes, removals, renames or new folders.
        with pytest.raises(asyncssh.SFTPPermissionDenied):
            await sftp.open("/billing/2026-11.txt", "wb")
        with pytest.raises(asyncssh.SFTPPermissionDenied):
            await sftp.open("/billing/2026-12.txt", "wb")
        with pytest.raises(asyncssh.SFTPPermissionDenied):
            await sftp.remove("/billing/2026-11.txt")
        with pytest.raises(asyncssh.SFTPPermissionDenied):
            await sftp.rename("/billing/2026-11.txt", "/billing/x.txt")
        with pytest.raises(asyncssh.SFTPPermissionDenied):
            await sftp.mkdir("/billing")
    # OpenSSH's sftp saves it as a file.
    result = await sftp_batch(ssh_server, alice, "get /billing/2026-11.html", tmp_path)
    assert result.status == 0, result.output
    assert (tmp_path / "2026-11.html").read_text() == as_html(invoice, "alice")


@pytest.mark.parametrize(
    "path",
    [
        "/billing/2026-11.txt",
        "/billing/../billing/2026-11.txt",
        "billing/2026-11.html",
        "/billing/./2026-11.html",
        "/billing/2026-11",
        "/billing/2026-11.TXT",
        "/billing/2026-11.txt.html",
        "/billing/1.txt",  # the invoice's number
    ],
)
async def test_another_users_invoice_is_not_found_by_any_path(
    ssh_server: GhstServer, panel: Panel, alice: Account, bob: Account, path: str
) -> None:
    await invoiced(panel, alice, "shop")
    async with sftp_client(ssh_server, bob) as (_, sftp):
        with pytest.raises(asyncssh.SFTPNoSuchFile):
            await sftp.stat(path)
        with pytest.raises(asyncssh.SFTPNoSuchFile):
            await sftp.open(path, "rb")
        assert await sftp.listdir("/billing") == [".", ".."]


@pytest.mark.parametrize(
    "path", ["/../billing/2026-11.txt", "/billing/2026-11.txt/..", "//billing/2026-11.txt"]
)
async def test_climbing_around_billing_is_refused(
    ssh_server: GhstServer, panel: Panel, alice: Account, path: str
) -> None:
    await invoiced(panel, alice, "shop")
    async with sftp_client(ssh_server, alice) as (_, sftp):
        with pytest.raises(asyncssh.SFTPPermissionDenied):
            await sftp.open(path, "rb")


async def test_visitors_read_no_invoice(
    ssh_server: GhstServer, panel: Panel, alice: Account, tmp_path: Path
) -> None:
    await invoiced(panel, alice, "shop")
    stranger = visitor(tmp_path, "stranger")
    async with sftp_client(ssh_server, stranger) as (_, sftp):
        for attempt in (
            sftp.stat("/billing"),
            sftp.listdir("/billing"),
            sftp.open("/billing/2026-11.txt", "rb"),
        ):
            with pytest.raises(asyncssh.SFTPPermissionDenied):
                await attempt
