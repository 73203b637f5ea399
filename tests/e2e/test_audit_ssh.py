"""The audit log through OpenSSH's sftp: one transfer session's entries share a request id and
carry origin sftp and the client's address; the connection's login is recorded beside them."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from core.panel import Panel
from sshd.server import GhstServer
from tests.actors import acting
from tests.e2e.transfers import account, app_zip, sftp_batch, write

pytestmark = pytest.mark.e2e


async def test_one_sftp_sessions_entries_share_a_request_id(
    ssh_server: GhstServer, panel: Panel, tmp_path: Path
) -> None:
    alice = await account(panel, tmp_path, "alice", projects=("shop",))
    await asyncio.to_thread(write, tmp_path / "app.zip", app_zip())
    batch = "mkdir diary\nput app.zip diary/\nput app.zip shop/\n"
    result = await sftp_batch(ssh_server, alice, batch, tmp_path)
    assert result.status == 0, result.output
    second = await sftp_batch(ssh_server, alice, "put app.zip shop/\n", tmp_path)
    assert second.status == 0, second.output
    events = await panel.audit.list(acting(alice.id))
    transfers = [event for event in events if event.origin == "sftp"]
    assert [(event.action, event.target_name) for event in reversed(transfers)] == [
        ("project.create", "diary"),
        ("archive.upload", "diary"),
        ("archive.upload", "shop"),
        ("archive.upload", "shop"),
    ]
    first_session = {event.request_id for event in transfers[1:]}
    assert len(first_session) == 1 and None not in first_session
    assert transfers[0].request_id not in first_session
    assert {event.source_address for event in transfers} == {"127.0.0.1"}
    logins = [event for event in events if event.action == "login"]
    assert len(logins) == 2 and {event.origin for event in logins} == {"ssh"}
    assert all(event.metadata["method"] == "publickey" for event in logins)
