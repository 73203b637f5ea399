"""An invoice's files: plain text that adds up, HTML that escapes whatever a tenant typed, and
the low-balance outlook the home screen warns with."""

from __future__ import annotations

from datetime import UTC, date, datetime
from html.parser import HTMLParser

import pytest

from core.billing.invoice_render import as_html, as_text
from core.billing.invoices import Invoice, InvoiceLine, parse_label
from core.billing.outlook import Outlook, Warning

HOSTILE = '<script>alert("x")</script><img src=x onerror=alert(1)>&amp;'


def invoice(project: str = "shop", reason: str = "goodwill") -> Invoice:
    return Invoice(
        id=7,
        number=42,
        user_id=1,
        month=date(2026, 12, 1),
        currency="RUB",
        total=50_000 + 25_000 - 1_000,
        issued_at=datetime(2027, 1, 1, 0, 5, tzinfo=UTC),
        lines=(
            InvoiceLine(1, "Hosting", project, "Host-0", 31, 50_000),
            InvoiceLine(2, "Hosting", "blog", "Host-1", 8, 25_000),
            InvoiceLine(3, f"Adjustment: {reason}", None, None, None, -1_000),
        ),
    )


class Tags(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[str] = []
        self.attributes: list[str] = []
        self.text = ""

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        self.attributes += [name for name, _ in attrs]

    def handle_data(self, data: str) -> None:
        self.text += data


def test_the_text_invoice_lists_each_line_and_the_total() -> None:
    text = as_text(invoice(), "alice")
    assert "Invoice No. 42" in text and "December 2026" in text and "alice" in text
    [shop] = [line for line in text.splitlines() if "shop" in line]
    assert shop.split() == ["Hosting,", "shop,", "plan", "Host-0", "31", "days", "500.00", "RUB"]
    assert "Adjustment: goodwill" in text and "-10.00 RUB" in text
    assert text.rstrip().splitlines()[-1].split() == ["Total", "740.00", "RUB"]


def test_html_escapes_a_hostile_project_name_reason_and_username() -> None:
    page = as_html(invoice(project=HOSTILE, reason=HOSTILE), HOSTILE)
    parser = Tags()
    parser.feed(page)
    assert "script" not in parser.tags and "img" not in parser.tags
    assert "onerror" not in parser.attributes and "src" not in parser.attributes
    # Shown as the text it is, not as markup.
    assert parser.text.count(HOSTILE) == 3
    assert "default-src 'none'" in page


@pytest.mark.parametrize(
    ("label", "month"),
    [("2026-12", date(2026, 12, 1)), ("2026-1", None), ("2026-13", None), ("../2026-12", None)],
)
def test_month_labels(label: str, month: date | None) -> None:
    assert parse_label(label) == month


@pytest.mark.parametrize(
    ("balance", "spend", "days", "warning"),
    [
        (10_000, 0, None, "none"),  # nothing spent: no warning, whatever the balance
        (0, 0, None, "none"),
        (-500, 0, None, "out"),
        (10_000, 1_000, 10, "none"),
        (4_000, 1_000, 4, "none"),
        (3_999, 1_000, 3, "3 days"),
        (2_000, 1_000, 2, "3 days"),
        (1_999, 1_000, 1, "1 day"),
        (999, 1_000, 0, "out"),
        (0, 1_000, 0, "out"),
        (-1_000, 1_000, 0, "out"),
    ],
)
def test_days_of_spend_left_and_the_warning(
    balance: int, spend: int, days: int | None, warning: Warning
) -> None:
    outlook = Outlook(balance, spend)
    assert (outlook.days_left, outlook.warning) == (days, warning)
