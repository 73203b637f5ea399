"""The host key: created once, private to its owner, the same across restarts."""

from __future__ import annotations

import stat

import asyncssh

from core.panel import Panel
from sshd.hostkeys import host_key_path
from tests.e2e.helpers import running_server


async def host_key_of(port: int) -> str:
    key = await asyncssh.get_server_host_key("127.0.0.1", port)
    assert key is not None
    return key.get_fingerprint("sha256")


async def test_host_key_persists_across_restarts(panel: Panel) -> None:
    path = host_key_path(panel.settings.data_dir)
    assert not path.exists()

    async with running_server(panel) as server:
        first = await host_key_of(server.port or 0)
    assert path.exists()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert asyncssh.import_private_key(path.read_bytes()).algorithm == b"ssh-ed25519"

    async with running_server(panel) as server:
        second = await host_key_of(server.port or 0)
    assert second == first
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
