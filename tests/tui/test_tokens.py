"""The access tokens screen and its dialogs against the real PostgreSQL: the secret shown once
logs in, the table never shows it, revoking asks first."""

from __future__ import annotations

import pytest
from textual.widgets import DataTable, Static

from core.errors import AuthenticationError
from core.identity.access_tokens import looks_like_token, parse_scopes
from core.panel import Panel
from tests.actors import acting
from tests.tui.helpers import SIZE, error_text, fill, record_notifications, settle, sign_up
from tui.app import GhstApp
from tui.screens.confirm import ConfirmDialog
from tui.screens.home import HomeScreen
from tui.screens.new_token import COPY_IT_NOW, NewTokenDialog, TokenSecretDialog
from tui.screens.tokens import TokensScreen


def table_text(app: GhstApp) -> str:
    table = app.screen.query_one("#tokens", DataTable)
    return "\n".join(
        " | ".join(str(cell) for cell in table.get_row_at(row)) for row in range(table.row_count)
    )


async def test_create_a_token_shows_its_secret_once(panel: Panel) -> None:
    visitor = await sign_up(panel)
    assert visitor.user is not None
    await panel.projects.create(acting(visitor.user.id), "shop")
    app = GhstApp(panel, visitor)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await pilot.press("t")
        await settle(pilot)
        assert isinstance(app.screen, TokensScreen)
        assert "No access tokens yet" in str(app.screen.query_one("#empty", Static).render())
        await pilot.press("c")
        await pilot.pause()
        assert isinstance(app.screen, NewTokenDialog)
        await fill(pilot, name="ci", scopes="deploy, logs", projects="shop", lifetime="30d")
        await pilot.press("enter")
        await settle(pilot)
        assert isinstance(app.screen, TokenSecretDialog)
        secret = app.screen.created.secret
        assert looks_like_token(secret)
        assert str(app.screen.query_one("#secret", Static).render()) == secret
        assert COPY_IT_NOW in str(app.screen.query_one("#copy-now", Static).render())
        await pilot.press("enter")
        await settle(pilot)
        assert isinstance(app.screen, TokensScreen)
        shown = table_text(app)
        assert "ci" in shown and "deploy, logs · shop" in shown
        assert secret not in shown and secret[11:] not in shown
        await pilot.press("escape")
        await pilot.pause()
        assert isinstance(app.screen, HomeScreen)
    login = await panel.access_tokens.authenticate("alice", secret, "10.0.0.1")
    assert login.actor.scopes == parse_scopes("deploy,logs")
    assert login.actor.projects == {"shop"}


async def test_a_refused_token_is_explained_and_kept(panel: Panel) -> None:
    visitor = await sign_up(panel)
    app = GhstApp(panel, visitor)
    async with app.run_test(size=SIZE) as pilot:
        await app.push_screen(TokensScreen())
        await settle(pilot)
        await pilot.press("c")
        await pilot.pause()
        await fill(pilot, name="ci", lifetime="400d")
        await pilot.press("enter")
        await settle(pilot)
        assert isinstance(app.screen, NewTokenDialog)
        assert "at most 365 days" in error_text(pilot)
        await fill(pilot, lifetime="90d", projects="someone-elses")
        await pilot.press("enter")
        await settle(pilot)
        assert isinstance(app.screen, NewTokenDialog)
        assert "someone-elses" in error_text(pilot)
        await fill(pilot, scopes="read,root", projects="")
        await pilot.press("enter")
        await settle(pilot)
        assert "Unknown scope 'root'" in error_text(pilot)
        await pilot.press("escape")
        await pilot.pause()
        assert isinstance(app.screen, TokensScreen)
    assert visitor.user is not None
    assert await panel.access_tokens.list(acting(visitor.user.id)) == []


async def test_revoke_a_token_after_confirming(panel: Panel) -> None:
    visitor = await sign_up(panel)
    assert visitor.user is not None
    owner = acting(visitor.user.id)
    kept = await panel.access_tokens.create(owner, "kept", {"read"})
    doomed = await panel.access_tokens.create(owner, "doomed", {"read"})
    app = GhstApp(panel, visitor)
    notes = record_notifications(app)
    async with app.run_test(size=SIZE) as pilot:
        await app.push_screen(TokensScreen())
        await settle(pilot)
        await pilot.press("d")  # the newest first: doomed
        await pilot.pause()
        assert isinstance(app.screen, ConfirmDialog)
        assert app.screen.question_title == "Revoke the token doomed?"
        await pilot.press("n")
        await pilot.pause()
        assert "doomed" in table_text(app)
        await pilot.press("d", "y")
        await settle(pilot)
        assert isinstance(app.screen, TokensScreen)
        assert "doomed" not in table_text(app) and "kept" in table_text(app)
    assert [(n.title, n.message) for n in notes] == [
        ("Token revoked", f"doomed ({doomed.token.prefix}…)")
    ]
    with pytest.raises(AuthenticationError):
        await panel.access_tokens.authenticate("alice", doomed.secret, "10.0.0.1")
    assert (await panel.access_tokens.authenticate("alice", kept.secret, "10.0.0.1")).user.id
