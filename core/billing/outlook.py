"""How long the balance lasts at today's spend, and when to warn (3 days, 1 day, run out)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Warning = Literal["none", "3 days", "1 day", "out"]


@dataclass(frozen=True)
class Outlook:
    balance: int  # kopecks
    daily_spend: int  # kopecks a day, today's shares of the active paid projects

    @property
    def days_left(self) -> int | None:
        """Whole days the balance pays for (None when nothing is spent)."""
        if self.daily_spend <= 0:
            return None
        return max(0, self.balance // self.daily_spend)

    @property
    def warning(self) -> Warning:
        if self.balance <= 0 and (self.daily_spend > 0 or self.balance < 0):
            return "out"
        days = self.days_left
        if days is None:
            return "none"
        if days < 1:
            return "out"
        if days <= 1:
            return "1 day"
        if days <= 3:
            return "3 days"
        return "none"


def warning_text(outlook: Outlook, balance_text: str) -> str:
    """The banner's words for `outlook.warning` ("" for none)."""
    match outlook.warning:
        case "out":
            return (
                f"Your balance is {balance_text}: it no longer pays for your projects."
                " Top it up (press b) before they are suspended."
            )
        case "1 day":
            return (
                f"Your balance ({balance_text}) pays for 1 more day."
                " Top it up (press b) to keep your projects running."
            )
        case "3 days":
            days = outlook.days_left
            return (
                f"Your balance ({balance_text}) pays for {days} more days at today's spend."
                " Top it up soon (press b)."
            )
    return ""
