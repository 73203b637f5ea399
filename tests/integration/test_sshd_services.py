"""The SSH server and the dashboards it hosts hold domain services, never the infrastructure.

A dashboard reached over a real SSH connection gets the services (each called in a context of
its own), and nothing through which a screen could reach the pool, Redis, Docker or nginx.
"""

from __future__ import annotations

from core.panel import Panel
from sshd.isolation import ContextFree
from tests.e2e.helpers import PASSWORD, create_user, running_server
from tests.e2e.terminal import AsyncsshTerminal

INFRASTRUCTURE = ("pool", "redis", "engine", "router", "queue", "deployer", "storage", "compose")
SERVICES = ("accounts", "keys", "sessions", "projects", "archives", "env", "deployments")


async def test_a_dashboard_over_ssh_holds_services_only(panel: Panel) -> None:
    await create_user(panel, "alice")
    async with running_server(panel) as server:
        for held in (server.services, server.app_services):
            assert [name for name in INFRASTRUCTURE if hasattr(held, name)] == []
        terminal = await AsyncsshTerminal.connect(
            server.port, "alice", password=PASSWORD, preferred_auth="password"
        )
        try:
            await terminal.wait_for("Signed in as alice")
            [session] = server.sessions
            assert session.app is not None
            services = session.app.panel
            assert [name for name in INFRASTRUCTURE if hasattr(services, name)] == []
            for name in SERVICES:
                assert isinstance(getattr(services, name), ContextFree), name
            assert services.settings is panel.settings
        finally:
            await terminal.close()
