"""Access tokens: the account's tokens in a table; create one (a dialog, then its secret shown
once) or revoke the selected one.

Tokens are the password of ssh commands and file transfers for scripts and CI; they never open
this dashboard, and a token's own login cannot reach this screen.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import ClassVar

from rich.text import Text
from textual import events, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.widgets import DataTable, Static

from core.identity.access_tokens import AccessToken, CreatedToken
from tui.formatting import day
from tui.screens.base import GhstScreen
from tui.screens.confirm import ConfirmDialog
from tui.screens.new_token import NewTokenDialog, TokenSecretDialog
from tui.widgets.header import AppHeader
from tui.widgets.keybar import KeyBar
from tui.widgets.width_columns import ColumnsByWidth

COLUMNS = (
    ("Name · prefix", "name"),
    ("Scopes · projects", "rights"),
    ("Created", "created"),
    ("Expires", "expires"),
    ("Last used", "last-used"),
)
NARROW_COLUMNS = (
    ("Name · prefix / scopes · projects", "token"),
    ("Expires / last used", "dates"),
)


def rights_text(token: AccessToken) -> str:
    projects = "all projects" if token.projects is None else ", ".join(sorted(token.projects))
    return f"{', '.join(sorted(token.scopes))} · {projects}"


def expiry_text(token: AccessToken, now: datetime) -> Text:
    if token.expires_at <= now:
        return Text(f"expired {day(token.expires_at)}", "bold red")
    return Text(day(token.expires_at))


def token_cells(token: AccessToken, narrow: bool, now: datetime) -> tuple[Text, ...]:
    used = "never used" if token.last_used_at is None else f"used {day(token.last_used_at)}"
    if narrow:
        return (
            Text.assemble(
                (token.name, "bold"), (f" · {token.prefix}…", "dim"), "\n", rights_text(token)
            ),
            Text.assemble(expiry_text(token, now), "\n", (used, "dim")),
        )
    return (
        Text.assemble((token.name, "bold"), "\n", (f"{token.prefix}…", "dim")),
        Text(rights_text(token)),
        Text(day(token.created_at)),
        expiry_text(token, now),
        Text(day(token.last_used_at)),
    )


class TokensScreen(GhstScreen[None]):
    TITLE = "Access tokens"
    CSS_PATH = "tokens.tcss"
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("c", "create", "New token"),
        Binding("d,delete", "revoke", "Revoke token"),
        Binding("escape", "back", "Back"),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.tokens: list[AccessToken] = []
        self.columns = ColumnsByWidth(COLUMNS, NARROW_COLUMNS)
        self._shown = False

    def compose(self) -> ComposeResult:
        yield AppHeader("Home", "Access tokens")
        with Vertical(id="tokens-page"):
            yield Static("Access tokens", id="title", classes="card-title")
            yield Static(
                "A token is the ssh password for commands and file transfers (CI, scripts), "
                "within its scopes and projects. Never for this dashboard.",
                classes="muted",
            )
            with Vertical(id="tokens-box"):
                yield DataTable(id="tokens", cursor_type="row", zebra_stripes=True)
                yield Static("Loading your tokens…", id="empty")
        yield KeyBar()

    def on_mount(self) -> None:
        self.query_one("#tokens-box").border_title = "Tokens"
        self.load_tokens()

    def on_resize(self, event: events.Resize) -> None:
        if not self.columns.resized(event.size.width):
            return
        if self._shown:
            self.show_tokens(self.tokens)
        else:
            self.columns.apply(self.query_one("#tokens", DataTable), self.app.size.width)

    @work(exclusive=True, exit_on_error=False, group="load")
    async def load_tokens(self, select: int | None = None) -> None:
        self.show_tokens(await self.panel.access_tokens.list(self.actor), select)

    def show_tokens(self, tokens: list[AccessToken], select: int | None = None) -> None:
        self.tokens = tokens
        self._shown = True
        table = self.query_one("#tokens", DataTable)
        previous = self.selected_token()
        self.columns.apply(table, self.app.size.width)
        now = datetime.now(UTC)
        for token in tokens:
            cells = token_cells(token, bool(self.columns.narrow), now)
            table.add_row(*cells, key=str(token.id), height=2)
        self.query_one("#tokens-box").border_title = f"Tokens · {len(tokens)}"
        empty = self.query_one("#empty", Static)
        empty.update("No access tokens yet. Press c to create one for a script or CI.")
        empty.display = not tokens
        table.display = bool(tokens)
        wanted = select if select is not None else (previous.id if previous else None)
        for row, token in enumerate(tokens):
            if token.id == wanted:
                table.move_cursor(row=row)
        if tokens:
            table.focus()
        elif table.has_focus:
            self.set_focus(None)
        self.refresh_bindings()

    def selected_token(self) -> AccessToken | None:
        table = self.query_one("#tokens", DataTable)
        if not self.tokens or table.row_count == 0:
            return None
        row = table.cursor_row
        return self.tokens[row] if 0 <= row < len(self.tokens) else None

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "revoke" and not self.tokens:
            return None
        return True

    def action_back(self) -> None:
        self.dismiss()

    def action_create(self) -> None:
        self.app.push_screen(NewTokenDialog(), self._created)

    def _created(self, created: CreatedToken | None) -> None:
        if created is not None:
            self.load_tokens(select=created.token.id)
            self.app.push_screen(TokenSecretDialog(created))

    def action_revoke(self) -> None:
        token = self.selected_token()
        if token is None:
            self.notify("There is no token to revoke.", severity="warning")
            return
        self.app.push_screen(
            ConfirmDialog(
                f"Revoke the token {token.name}?",
                f"{token.prefix}… · {rights_text(token)}\n\n"
                "Scripts and CI using it stop working, and its open connections close.",
                confirm_label="Revoke token",
                danger=True,
            ),
            lambda confirmed: self._revoke_answered(token, confirmed),
        )

    def _revoke_answered(self, token: AccessToken, confirmed: bool | None) -> None:
        if confirmed:
            self.revoke_token(token)

    @work(exclusive=True, exit_on_error=False, group="revoke")
    async def revoke_token(self, token: AccessToken) -> None:
        await self.panel.access_tokens.revoke(self.actor, token.name)
        self.notify(f"{token.name} ({token.prefix}…)", title="Token revoked")
        self.show_tokens(await self.panel.access_tokens.list(self.actor))
