"""Amounts: integer kopecks (hundredths of the installation's currency), never floats."""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation

from core.errors import ValidationError

# An operator types whole units with at most two decimals: "500", "499.90", "1 000,50".
AMOUNT = re.compile(r"^\d+(?:[.,]\d{1,2})?$")
MAX_KOPECKS = 10**12  # far above any real payment; keeps sums far from bigint's end


def parse_amount(text: str) -> int:
    """Kopecks from a positive amount in units ("500.50" -> 50050)."""
    return positive(parse_price(text))


def parse_price(text: str) -> int:
    """Kopecks from an amount in units that may be zero (a free plan's price)."""
    cleaned = text.strip().replace(" ", "").replace("\u00a0", "")
    if not AMOUNT.match(cleaned):
        raise ValidationError(f"{text!r} is not a positive amount such as 500 or 499.90.")
    try:
        kopecks = int(Decimal(cleaned.replace(",", ".")) * 100)
    except InvalidOperation as error:
        raise ValidationError(f"{text!r} is not an amount.") from error
    if kopecks > MAX_KOPECKS:
        raise ValidationError("The amount is absurdly large.")
    return kopecks


def positive(kopecks: int) -> int:
    if not 0 < kopecks <= MAX_KOPECKS:
        raise ValidationError("The amount must be above zero (and not absurdly large).")
    return kopecks


def format_amount(kopecks: int, currency: str) -> str:
    """ "-1 234.50 RUB": a space between thousands, always two decimals."""
    sign = "-" if kopecks < 0 else ""
    units, cents = divmod(abs(kopecks), 100)
    return f"{sign}{units:,}.{cents:02d} {currency}".replace(",", " ")
