"""Billing's arithmetic without services: daily shares, upgrades, amounts, days, signatures."""

from __future__ import annotations

import calendar
from datetime import UTC, date, datetime, timedelta

import pytest

from core.billing.money import format_amount, parse_amount, parse_price
from core.billing.payments import WebhookTestProvider as SigningProvider
from core.billing.plans import PlanSpec
from core.billing.proration import billing_day, daily_share, upgrade_difference
from core.errors import PermissionDenied, ValidationError


@pytest.mark.parametrize(
    ("year", "month", "days"), [(2026, 2, 28), (2028, 2, 29), (2026, 4, 30), (2026, 12, 31)]
)
@pytest.mark.parametrize("price", [0, 1, 27, 50_000, 100_000, 150_000, 99_999])
def test_a_months_daily_shares_add_up_to_the_price(
    year: int, month: int, days: int, price: int
) -> None:
    assert calendar.monthrange(year, month)[1] == days
    shares = [daily_share(price, date(year, month, day)) for day in range(1, days + 1)]
    assert sum(shares) == price
    assert len(set(shares[:-1])) <= 1  # every day but the last pays the same
    assert shares[-1] >= shares[0]


def test_the_remainder_goes_on_the_last_day() -> None:
    # 500 RUB over 31 days: 1612 kopecks a day, 1640 on the 31st.
    assert daily_share(50_000, date(2026, 12, 1)) == 1612
    assert daily_share(50_000, date(2026, 12, 31)) == 50_000 - 1612 * 30


def test_an_upgrade_pays_the_days_difference_and_a_downgrade_nothing() -> None:
    day = date(2026, 12, 10)
    assert upgrade_difference(50_000, 100_000, day) == 3225 - 1612
    assert upgrade_difference(100_000, 50_000, day) == 0
    assert upgrade_difference(0, 150_000, day) == daily_share(150_000, day)


def test_days_are_counted_in_the_billing_time_zone() -> None:
    late_utc = datetime(2026, 12, 31, 21, 30, tzinfo=UTC)  # 00:30 on 1 January in Moscow
    assert billing_day(late_utc, "Europe/Moscow") == date(2027, 1, 1)
    assert billing_day(late_utc, "UTC") == date(2026, 12, 31)
    assert billing_day(late_utc - timedelta(minutes=31), "Europe/Moscow") == date(2026, 12, 31)


def test_amounts_are_parsed_to_kopecks_and_shown_with_two_decimals() -> None:
    assert parse_amount("500") == 50_000
    assert parse_amount("499.9") == 49_990
    assert parse_amount("1 000,50") == 100_050
    assert parse_price("0") == 0
    for bad in ("-5", "0", "1.234", "1e3", "", "abc", "nan"):
        with pytest.raises(ValidationError):
            parse_amount(bad)
    assert format_amount(-123_456, "RUB") == "-1 234.56 RUB"


def test_the_test_providers_webhook_needs_its_signature() -> None:
    provider = SigningProvider(b"secret")
    body = provider.webhook("test-1", 100)
    assert provider.read_webhook(body, provider.sign(body)).amount == 100
    with pytest.raises(PermissionDenied):
        provider.read_webhook(body, SigningProvider(b"other").sign(body))
    forged = body.replace(b"100", b"100000")
    with pytest.raises(PermissionDenied):
        provider.read_webhook(forged, provider.sign(body))


@pytest.mark.parametrize("code", ["", "-x", "Host-1", "хост", "a" * 32, "a b"])
def test_a_plan_code_is_checked_before_the_database_sees_it(code: str) -> None:
    with pytest.raises(ValidationError):
        PlanSpec(code, "Name", 100, 1000, 256, 256, 1).checked()
    assert PlanSpec("host-9", "Name", 0, 1, 1, 1, 1).checked().code == "host-9"
