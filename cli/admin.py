"""`ghst admin`: the operators' app in this terminal, on the panel's services."""

from __future__ import annotations

import asyncio
import gc

from core.panel import Panel
from core.settings import Settings


def run_admin_app() -> int:
    return asyncio.run(_run())


async def _run() -> int:
    # Imported here: the other `ghst` commands need no Textual.
    from tui.admin.app import AdminApp

    panel = await Panel.open(Settings.load())
    try:
        # What is loaded by now (modules, Textual's classes, the pool) lives as long as the
        # process: kept out of the collector's full passes, which took up to 95 ms over it,
        # in the middle of a page or a keystroke.
        gc.freeze()
        await AdminApp(panel.services).run_async()
    finally:
        await panel.close()
    return 0
