"""Home: who is signed in, the account at a glance, and what to do next."""

from __future__ import annotations

import asyncio
from typing import ClassVar

from textual import events, on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Grid, Horizontal, Vertical, VerticalScroll
from textual.content import Content
from textual.widgets import OptionList, Static
from textual.widgets.option_list import Option

from core.billing.money import format_amount
from core.billing.outlook import Outlook, warning_text
from tui.formatting import day, plural
from tui.layout import WIDE_FROM
from tui.screens.base import GhstScreen
from tui.screens.confirm import ConfirmDialog
from tui.widgets.header import AppHeader
from tui.widgets.keybar import KeyBar
from tui.widgets.option_list import SteadyOptionList

LOGOUT_FAREWELL = "Logged out. Bye!"

# (action, key, label, description) for the "What next" list; the keys are the screen bindings.
NEXT_STEPS = (
    ("projects", "j", "Projects", "your sites: create one, upload versions"),
    ("keys", "k", "Manage SSH keys", "the keys ssh logs you in with"),
    ("password", "p", "Change password", "for logins without a key"),
    ("logout", "l", "Log out", "end this session"),
    ("logout_everywhere", "o", "Log out everywhere", "end all your sessions"),
)


def next_step_prompt(key: str, label: str, description: str, *, one_line: bool) -> Content:
    """ " j  Projects" with its description under it, or after it on the same line."""
    return Content.assemble(
        (f" {key} ", "bold $text-accent"),
        " ",
        (label, "bold"),
        "  " if one_line else "\n    ",
        (description, "italic $text-muted"),
    )


def logout_everywhere_farewell(count: int) -> str:
    return f"Logged out everywhere: {plural(count, 'session')} closed. Bye!"


class HomeScreen(GhstScreen[None]):
    TITLE = "Home"
    CSS_PATH = "home.tcss"
    BINDINGS: ClassVar[list[BindingType]] = [
        # j, as in proJects: p was already the password's.
        Binding("j", "projects", "Projects"),
        Binding("k", "keys", "SSH keys"),
        Binding("p", "password", "Password"),
        Binding("l", "logout", "Log out"),
        Binding("o,L", "logout_everywhere", "Log out everywhere"),
        Binding("b", "billing", "Billing"),
        Binding("t", "tokens", "Tokens"),
        Binding("a", "audit", "Audit log"),
        Binding("q", "quit", "Quit", show=False),
        # Only while an admin views this user's dashboard: back to the admin's screens.
        Binding("escape", "stop_viewing", "Back to admin"),
        # Only admins and operators have it (check_action hides it from everyone else).
        Binding("colon", "admin", "Admin"),
    ]
    # At 80 columns the bar keeps b (the banner says to press it): these are in "What next".
    KEY_BAR_DROP_ORDER: ClassVar[tuple[str, ...]] = (
        "tokens",
        "audit",
        "logout_everywhere",
        "password",
    )

    def __init__(self) -> None:
        super().__init__()
        self._one_line_steps = False  # as composed

    def compose(self) -> ComposeResult:
        user = self.user
        yield AppHeader("Home")
        with VerticalScroll(id="home", can_focus=False):
            yield Static(
                Content.assemble(
                    "Viewing the dashboard of " if self.visitor.viewing else "Signed in as ",
                    (user.username, "bold $text-primary"),
                    ": read-only, esc goes back" if self.visitor.viewing else "",
                ),
                id="signed-in",
            )
            yield Static(
                "Your account at a glance, and what you can do next.",
                id="intro",
                classes="muted",
            )
            # The balance, or the warning when it runs low (3 days, 1 day, run out).
            yield Static("Balance: …", id="balance", markup=False)
            with Horizontal(id="panels"):
                with Vertical(id="account", classes="box") as account:
                    account.border_title = "Account"
                    with Grid(id="facts"):
                        yield Static("Username", classes="fact-label")
                        yield Static(user.username, id="username", markup=False)
                        yield Static("Email", classes="fact-label")
                        yield Static(user.email, id="email", markup=False)
                        yield Static("Member since", classes="fact-label")
                        yield Static(day(user.created_at), id="member-since")
                        yield Static("SSH keys", classes="fact-label")
                        yield Static("…", id="key-count")
                        yield Static("Sessions", classes="fact-label")
                        yield Static("…", id="session-count")
                with Vertical(id="next", classes="box") as next_steps:
                    next_steps.border_title = "What next"
                    options: list[Option | None] = []
                    for action, *step in NEXT_STEPS:
                        if options:
                            options.append(None)  # a separator line
                        options.append(Option(next_step_prompt(*step, one_line=False), id=action))
                    yield SteadyOptionList(*options, id="actions")
        yield KeyBar()

    def on_resize(self, event: events.Resize) -> None:
        # Below WIDE_FROM columns each step takes one line, so that 80x24 shows all of them.
        one_line = event.size.width < WIDE_FROM
        if one_line == self._one_line_steps:
            return
        self._one_line_steps = one_line
        actions = self.query_one("#actions", OptionList)
        for action, *step in NEXT_STEPS:
            actions.replace_option_prompt(action, next_step_prompt(*step, one_line=one_line))

    def on_screen_resume(self) -> None:
        # On first show and on coming back from the keys or password screen.
        self.load_account()

    @work(exclusive=True, exit_on_error=False, group="load")
    async def load_account(self) -> None:
        panel, user_id = self.panel, self.user.id
        user, keys, active, outlook = await asyncio.gather(
            panel.accounts.get(user_id),
            panel.keys.count(self.actor),
            panel.sessions.active_count(self.actor),
            panel.subscriptions.outlook(self.actor),
        )
        self.show_outlook(outlook)
        self.visitor.user = user
        self.query_one("#email", Static).update(Content(user.email))
        self.query_one("#key-count", Static).update(
            plural(keys, "key") if keys else "none yet: press k to add one"
        )
        self.query_one("#session-count", Static).update(
            f"{active} active" + (" (this one)" if active == 1 else "")
        )

    def show_outlook(self, outlook: Outlook) -> None:
        balance = self.query_one("#balance", Static)
        amount = format_amount(outlook.balance, self.panel.settings.currency)
        warning = warning_text(outlook, amount)
        balance.set_class(bool(warning), "-warning")
        balance.set_class(outlook.warning in ("1 day", "out"), "-urgent")
        if warning:
            balance.update(warning)
        elif outlook.days_left is None:
            balance.update(f"Balance: {amount} (press b for billing)")
        else:
            balance.update(
                f"Balance: {amount}, about {plural(outlook.days_left, 'day')} at today's spend"
                " (press b for billing)"
            )

    @on(OptionList.OptionSelected, "#actions")
    async def run_next_step(self, event: OptionList.OptionSelected) -> None:
        if event.option.id is not None:
            await self.run_action(event.option.id)

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "admin":
            return self.visitor.is_staff
        if action == "stop_viewing":
            return self.visitor.viewing is not None
        return True

    async def action_quit(self) -> None:
        if self.visitor.viewing is not None:
            await self.ghst.stop_viewing()
        else:
            await self.app.action_quit()

    async def action_stop_viewing(self) -> None:
        await self.ghst.stop_viewing()

    def action_admin(self) -> None:
        if not self.visitor.is_staff:
            return
        from tui.admin.users import AdminUsersScreen

        self.app.push_screen(AdminUsersScreen())

    def action_projects(self) -> None:
        from tui.screens.projects import ProjectsScreen

        self.app.push_screen(ProjectsScreen())

    def action_billing(self) -> None:
        from tui.screens.billing import BillingScreen

        self.app.push_screen(BillingScreen())

    def action_audit(self) -> None:
        from tui.screens.audit import AuditScreen

        self.app.push_screen(AuditScreen())

    def action_keys(self) -> None:
        from tui.screens.keys import KeysScreen

        self.app.push_screen(KeysScreen())

    def action_tokens(self) -> None:
        from tui.screens.tokens import TokensScreen

        self.app.push_screen(TokensScreen())

    def action_password(self) -> None:
        from tui.screens.password import PasswordScreen

        self.app.push_screen(PasswordScreen())

    def action_logout(self) -> None:
        self.log_out()

    @work(exclusive=True, exit_on_error=False, group="logout")
    async def log_out(self) -> None:
        session = self.visitor.session
        if session is not None:
            await self.panel.sessions.revoke(self.actor, session.jti)
        self.ghst.leave(LOGOUT_FAREWELL)

    def action_logout_everywhere(self) -> None:
        self.app.push_screen(
            ConfirmDialog(
                "Log out everywhere?",
                "This ends every session of your account, this one included: every device "
                "will have to log in again.",
                confirm_label="Log out everywhere",
                danger=True,
            ),
            self._logout_everywhere_answered,
        )

    def _logout_everywhere_answered(self, confirmed: bool | None) -> None:
        if confirmed:
            self.log_out_everywhere()

    @work(exclusive=True, exit_on_error=False, group="logout")
    async def log_out_everywhere(self) -> None:
        closed = await self.panel.sessions.revoke_all(self.actor)
        self.ghst.leave(logout_everywhere_farewell(closed))
