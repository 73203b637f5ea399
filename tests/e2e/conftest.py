"""The SSH server of the `panel` fixture, started on 127.0.0.1 on a free port."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from core.panel import Panel
from sshd.server import GhstServer
from tests.e2e.helpers import running_server


@pytest.fixture
async def ssh_server(panel: Panel) -> AsyncIterator[GhstServer]:
    async with running_server(panel) as server:
        yield server
