"""An invoice as plain text and as an HTML page (the files SFTP serves, the screen shows).

Project names and reasons are tenant or operator input: the HTML escapes every one of them,
and the page loads nothing (no script, no style sheet, no image) from anywhere.
"""

from __future__ import annotations

from html import escape

from core.billing.invoices import Invoice, InvoiceLine
from core.billing.money import format_amount


def _what(line: InvoiceLine) -> str:
    parts = [line.description]
    if line.project_name:
        parts.append(line.project_name)
    if line.plan_name:
        parts.append(f"plan {line.plan_name}")
    return ", ".join(parts)


def _days(line: InvoiceLine) -> str:
    if line.days is None:
        return ""
    return f"{line.days} day" + ("" if line.days == 1 else "s")


def as_text(invoice: Invoice, username: str) -> str:
    money = invoice.currency
    rows = [(_what(line), _days(line), format_amount(line.amount, money)) for line in invoice.lines]
    total = format_amount(invoice.total, money)
    what_width = max([len("Item"), *(len(row[0]) for row in rows)])
    days_width = max([len("Days"), *(len(row[1]) for row in rows)])
    amount_width = max([len("Amount"), len(total), *(len(row[2]) for row in rows)])

    def row(what: str, days: str, amount: str) -> str:
        return f"{what:<{what_width}}  {days:>{days_width}}  {amount:>{amount_width}}".rstrip()

    rule = "-" * (what_width + days_width + amount_width + 4)
    out = [
        f"Invoice No. {invoice.number}",
        f"Month:     {invoice.month_name}",
        f"Account:   {username}",
        f"Issued:    {invoice.issued_at:%Y-%m-%d %H:%M} UTC",
        "",
        row("Item", "Days", "Amount"),
        rule,
        *(row(*cells) for cells in rows),
        rule,
        row("Total", "", total),
        "",
    ]
    return "\n".join(out)


def as_html(invoice: Invoice, username: str) -> str:
    money = invoice.currency
    cells = "\n".join(
        "<tr><td>{}</td><td>{}</td><td>{}</td><td class=num>{}</td><td class=num>{}</td></tr>".format(
            escape(line.description),
            escape(line.project_name or ""),
            escape(line.plan_name or ""),
            escape(_days(line)),
            escape(format_amount(line.amount, money)),
        )
        for line in invoice.lines
    )
    title = escape(f"Invoice No. {invoice.number}, {invoice.month_name}")
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline'">
<title>{title}</title>
<style>
body {{ font-family: sans-serif; margin: 2em; }}
table {{ border-collapse: collapse; }}
th, td {{ border-bottom: 1px solid #ccc; padding: 0.3em 0.8em; text-align: left; }}
.num {{ text-align: right; white-space: nowrap; }}
</style>
</head>
<body>
<h1>{title}</h1>
<p>Account: {escape(username)}<br>Issued: {invoice.issued_at:%Y-%m-%d %H:%M} UTC</p>
<table>
<tr><th>Item</th><th>Project</th><th>Plan</th><th>Days</th><th class=num>Amount</th></tr>
{cells}
<tr><th colspan=4>Total</th><th class=num>{escape(format_amount(invoice.total, money))}</th></tr>
</table>
</body>
</html>
"""
