"""Issue 11, the billing screen against a hostile tenant: another tenant's uploads and plan
changes never reach my billing screen (no event, no measurement, never their project's name),
and promised payments asked for from two dashboards at once credit once."""

from __future__ import annotations

import asyncio
from typing import Any

from core.panel import Panel
from tests.actors import acting
from tests.tui.helpers import settle, sign_up
from tests.tui.test_billing import rows, zip_of
from tests.tui.test_deployments import upload, wait_for
from tests.tui.test_events import IDLE_SECONDS, Calls
from tui.app import GhstApp
from tui.screens.billing import BillingScreen, PromiseDialog
from tui.watch import Changed


async def test_another_tenants_uploads_and_plan_changes_never_reach_my_billing_screen(
    panel: Panel,
) -> None:
    visitor = await sign_up(panel, "alice")
    assert visitor.user is not None
    await panel.subscriptions.create_project(acting(visitor.user.id), "shop", "host-0")
    bob = await sign_up(panel, "bob")
    assert bob.user is not None
    await panel.subscriptions.create_project(acting(bob.user.id), "bobs-shop", "host-0")
    app = GhstApp(panel, visitor)
    async with app.run_test(size=(200, 50)) as pilot:
        await settle(pilot)
        await pilot.press("b")
        await wait_for(pilot, lambda: panel.events.listening.is_set())
        await settle(pilot)
        screen = app.screen
        assert isinstance(screen, BillingScreen)
        delivered: list[Changed] = []
        post = screen.post_message

        def recorded(message: Any) -> bool:
            if isinstance(message, Changed):
                delivered.append(message)
            return post(message)

        screen.post_message = recorded  # type: ignore[method-assign]
        measures = Calls(panel.subscriptions, "usage")
        await upload(panel, bob.user.id, "bobs-shop", zip_of(10_000))
        await panel.subscriptions.change_plan(acting(bob.user.id), "bobs-shop", "host-2")
        await pilot.pause(IDLE_SECONDS)
        assert delivered == [] and measures.count == 0
        assert [row[0] for row in rows(app, "#plans")] == ["shop"]
        assert list(screen.bars) == ["shop"]
        # The screen still hears its own projects: the recording above can see an event.
        await upload(panel, visitor.user.id, "shop", zip_of(10_000))
        await wait_for(pilot, lambda: bool(delivered) and measures.count == 1)


async def test_two_dashboards_taking_a_promised_payment_at_once_credit_once(
    panel: Panel,
) -> None:
    visitor = await sign_up(panel, "alice")
    assert visitor.user is not None
    alice = acting(visitor.user.id)
    await panel.subscriptions.create_project(alice, "shop", "host-1")
    apps = [GhstApp(panel, visitor), GhstApp(panel, visitor)]
    async with apps[0].run_test(size=(200, 50)) as one, apps[1].run_test(size=(200, 50)) as two:
        for pilot in (one, two):
            await settle(pilot)
            await pilot.press("b")
            await settle(pilot)
            await pilot.press("p")
            await settle(pilot)
            assert isinstance(pilot.app.screen, PromiseDialog)
        await asyncio.gather(one.press("y"), two.press("y"))
        for pilot in (one, two):
            await settle(pilot)
        refused = [app for app in apps if isinstance(app.screen, PromiseDialog)]
        assert len(refused) == 1  # the other took it and is back on the billing screen
        error = str(refused[0].screen.query_one("#promise-error").render())
        assert "already have a promised payment open" in error
    history = await panel.promised.history(alice)
    assert len(history) == 1
    balance = (await panel.subscriptions.outlook(alice)).balance
    assert balance == history[0].amount
