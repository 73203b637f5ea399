"""`ghst admin`: the operators' app in this terminal, on the panel's services."""

from __future__ import annotations

import asyncio

from core.panel import Panel
from core.settings import Settings


def run_admin_app() -> int:
    return asyncio.run(_run())


async def _run() -> int:
    # Imported here: the other `ghst` commands need no Textual.
    from tui.admin.app import AdminApp

    panel = await Panel.open(Settings.load())
    try:
        await AdminApp(panel.services).run_async()
    finally:
        await panel.close()
    return 0
