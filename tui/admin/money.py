"""The money actions of `:users` and `:billing`: credit or debit with a reason (one ledger
entry each), grant a promised payment; on the marked accounts, else the one under the cursor
(each view's row key is the username)."""

from __future__ import annotations

from typing import Any

from core.billing.money import parse_amount
from core.errors import ValidationError
from tui.admin.base import AdminListScreen
from tui.admin.prompt import PromptDialog


def signed_kopecks(text: str) -> int:
    """ "-150.50" -> -15050: a debit; "150" a credit."""
    cleaned = text.strip()
    if cleaned.startswith("-"):
        return -parse_amount(cleaned[1:])
    return parse_amount(cleaned.lstrip("+"))


def names_text(names: list[str]) -> str:
    return f"{', '.join(names[:3])}{' …' if len(names) > 3 else ''}"


def ask_adjustment(screen: AdminListScreen[Any]) -> None:
    names = screen.targets()
    if not names:
        return

    def answered(values: list[str] | None) -> None:
        if not values:
            return
        try:
            amount = signed_kopecks(values[0])
        except ValidationError as error:
            screen.ghst.show_error(error)
            return
        reason = values[1]
        screen.run_each(
            names,
            "adjust",
            lambda name: screen.panel.admin.adjust_balance(screen.staff, name, amount, reason),
        )

    screen.app.push_screen(
        PromptDialog(
            "Credit or debit",
            f"{names_text(names)}: one ledger entry each, with your reason. A minus debits.",
            [(f"Amount ({screen.panel.settings.currency})", "500 · -120.50"), ("Reason", "why")],
        ),
        answered,
    )


def grant_promise(screen: AdminListScreen[Any]) -> None:
    screen.run_each(
        screen.targets(),
        "promised payment",
        lambda name: screen.panel.admin.grant_promised_payment(screen.staff, name),
    )
