"""Which cipher an OpenSSH client with its default settings ends up using with ghst: AES, whose
instructions the CPU has, rather than chacha20-poly1305, which asyncssh runs far slower."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from core.panel import Panel
from tests.e2e.helpers import running_server
from tests.e2e.transfers import OPENSSH_OPTIONS, account, run

pytestmark = pytest.mark.e2e


async def test_a_default_openssh_client_negotiates_aes_and_chacha20_alone_is_refused(
    panel: Panel, tmp_path: Path
) -> None:
    alice = await account(panel, tmp_path, "alice")
    async with running_server(panel) as server:
        base = [
            "/usr/bin/ssh",
            *OPENSSH_OPTIONS,
            *("-i", str(alice.identity), "-p", str(server.port)),
        ]
        default = await run([*base, "-v", "alice@127.0.0.1", "help"])
        chacha = await run(
            [*base, "-v", "-c", "chacha20-poly1305@openssh.com", "alice@127.0.0.1", "help"]
        )
    ciphers = re.findall(r"kex: (?:server->client|client->server) cipher: (\S+)", default.stderr)
    assert ciphers and all(cipher.startswith("aes") for cipher in ciphers), default.stderr
    assert chacha.status == 255 and "no matching cipher" in chacha.stderr.lower()
