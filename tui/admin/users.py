"""`:users`: every account, searched by name, email, key fingerprint or project; block,
unblock, set a role, credit or debit the balance with a reason, grant a promised payment.

The filter (`/`) takes a username's first letters, an email's (anything with an `@`), a key's
`SHA256:` fingerprint, or `p:` and a project name's first letters (their owners).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

from rich.text import Text
from textual import work
from textual.binding import Binding, BindingType

from core.admin.read_models import UserRow
from core.billing.money import format_amount
from tui.admin.base import AdminListScreen
from tui.admin.money import ask_adjustment, grant_promise
from tui.admin.prompt import PromptDialog
from tui.formatting import day
from tui.screens.confirm import ConfirmDialog


class AdminUsersScreen(AdminListScreen[UserRow]):
    VIEW = "users"
    CSS_PATH = "users.tcss"
    COLUMNS = (
        "User", "Email", "Role", "State", "Balance", "Projects", "Keys", "Tokens", "Sessions", "Since",
    )  # fmt: skip
    OPENS = "the user's details (then j: their projects)"
    WATCHED = ("session", "project")
    # view_as: admins only (core refuses operators), dimmed for them like the changes.
    CHANGES = frozenset({"block", "unblock", "role", "adjust", "promise", "view_as"})
    FILTER_HINT = "name · email (with @) · SHA256:fingerprint · p:project"
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("b", "block", "Block"),
        Binding("u", "unblock", "Unblock"),
        Binding("r", "role", "Role"),
        Binding("c", "adjust", "Credit/debit"),
        Binding("g", "promise", "Promise"),
        Binding("v", "view_as", "View as"),
        Binding("i", "details", "Details", show=False),
    ]
    KEY_BAR_DROP_ORDER = ("pause", "promise", "role", "jump", "filter")

    async def fetch(self, search: str, after: str | None, limit: int) -> list[UserRow]:
        return await self.panel.admin.users(self.staff, search, after=after, limit=limit)

    def key_of(self, row: UserRow) -> str:
        return row.username

    def cells(self, row: UserRow) -> Sequence[str | Text]:
        currency = self.panel.settings.currency
        balance = Text(format_amount(row.balance_kopecks, currency), justify="right")
        if row.balance_kopecks < 0:
            balance.stylize("red")
        state = (
            Text("blocked", "bold red", justify="left")
            if row.blocked
            else Text("active", justify="left")
        )
        return (
            Text(row.username, "bold", justify="left"),
            row.email,
            row.role,
            state,
            balance,
            Text(str(row.projects), justify="right"),
            Text(str(row.keys), justify="right"),
            Text(str(row.tokens), justify="right"),
            Text(str(row.sessions), justify="right"),
            day(row.created_at),
        )

    def open_row(self) -> None:
        from tui.admin.user_detail import AdminUserDetailScreen

        key = self.current_key()
        if key is not None:
            self.app.push_screen(AdminUserDetailScreen(key))

    def action_details(self) -> None:
        self.open_row()

    def action_block(self) -> None:
        names = self.targets()
        if not names:
            return
        message = (
            f"Block {', '.join(names[:5])}{' …' if len(names) > 5 else ''}? Their logins are "
            "refused and their open sessions end within seconds."
        )

        def answered(yes: bool | None) -> None:
            if yes:
                self.run_each(names, "block", lambda name: self.panel.admin.block(self.staff, name))

        self.app.push_screen(
            ConfirmDialog("Block", message, confirm_label="Block", danger=True), answered
        )

    def action_unblock(self) -> None:
        names = self.targets()
        self.run_each(names, "unblock", lambda name: self.panel.admin.unblock(self.staff, name))

    def action_role(self) -> None:
        names = self.targets()
        if not names:
            return

        def answered(values: list[str] | None) -> None:
            if values:
                role = values[0].strip().lower()
                self.run_each(
                    names,
                    f"role {role}",
                    lambda name: self.panel.admin.set_role(self.staff, name, role),
                )

        self.app.push_screen(
            PromptDialog(
                f"Role of {', '.join(names[:3])}{' …' if len(names) > 3 else ''}",
                "admin, operator (looks, changes nothing) or user. Their sessions end.",
                [("Role", "admin · operator · user")],
            ),
            answered,
        )

    def action_view_as(self) -> None:
        key = self.current_key()
        if key is not None:
            self.start_viewing(key)

    @work(exclusive=True, exit_on_error=False, group="view")
    async def start_viewing(self, username: str) -> None:
        """The user's own dashboard, read-only; core audits the start and refuses non-admins."""
        viewing = await self.panel.admin.view_as(self.staff, username)
        self.ghst.start_viewing(viewing.user, viewing.actor)

    def action_adjust(self) -> None:
        ask_adjustment(self)

    def action_promise(self) -> None:
        grant_promise(self)
