"""The daily share of a monthly price: `price // days` each day, the remainder on the last day,
so the days of any month add up to the price exactly."""

from __future__ import annotations

import calendar
from dataclasses import dataclass
from datetime import date, datetime
from zoneinfo import ZoneInfo


@dataclass(frozen=True)
class DayOfMonth:
    """What the charge SQL needs to know about a day: the month's length, is it the last."""

    days: int
    last: bool

    @classmethod
    def of(cls, day: date) -> DayOfMonth:
        days = calendar.monthrange(day.year, day.month)[1]
        return cls(days, day.day == days)


def daily_share(monthly_kopecks: int, day: date) -> int:
    """What one day costs on a plan of `monthly_kopecks` (the same formula as the charge SQL)."""
    month = DayOfMonth.of(day)
    base = monthly_kopecks // month.days
    if month.last:
        return monthly_kopecks - base * (month.days - 1)
    return base


def upgrade_difference(old_monthly: int, new_monthly: int, day: date) -> int:
    """What an upgrade made on `day` costs for that day, when the day was already charged at the
    old price: the difference of the two daily shares (nothing for a downgrade)."""
    return max(0, daily_share(new_monthly, day) - daily_share(old_monthly, day))


def billing_day(now: datetime, time_zone: str) -> date:
    """The calendar day `now` falls on in the installation's billing time zone."""
    return now.astimezone(ZoneInfo(time_zone)).date()
