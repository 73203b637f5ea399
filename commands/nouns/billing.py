"""`billing balance|plans|invoices`: money, in the installation's currency."""

from __future__ import annotations

import argparse

from commands.base import Context, Noun, Verb
from core.billing.money import format_amount

PLAN_COLUMNS = [
    ("CODE", "code"),
    ("NAME", "name"),
    ("PRICE", "price"),
    ("CPU", "cpu_millicores"),
    ("RAM MB", "ram_mb"),
    ("DISK MB", "disk_mb"),
    ("SERVICES", "max_services"),
]
INVOICE_COLUMNS = [("MONTH", "month"), ("NUMBER", "number"), ("TOTAL", "total_text")]


async def balance(ctx: Context, args: argparse.Namespace) -> None:
    kopecks = await ctx.services.balances.balance(ctx.actor)
    currency = ctx.services.settings.currency
    text = format_amount(kopecks, currency)
    ctx.out.result({"balance": kopecks, "currency": currency, "text": text}, text)


async def plans(ctx: Context, args: argparse.Namespace) -> None:
    currency = ctx.services.settings.currency
    records = [
        {
            "code": plan.code,
            "name": plan.name,
            "price": format_amount(plan.price_kopecks, currency),
            "price_kopecks": plan.price_kopecks,
            "cpu_millicores": plan.cpu_millicores,
            "ram_mb": plan.ram_mb,
            "disk_mb": plan.disk_mb,
            "max_services": plan.max_services,
        }
        for plan in await ctx.services.plans.list()
    ]
    ctx.out.records(records, PLAN_COLUMNS)


async def invoices(ctx: Context, args: argparse.Namespace) -> None:
    records = [
        {
            "month": invoice.label,
            "number": invoice.number,
            "total": invoice.total,
            "currency": invoice.currency,
            "total_text": format_amount(invoice.total, invoice.currency),
            "issued_at": invoice.issued_at,
        }
        for invoice in await ctx.services.invoices.list(ctx.actor)
    ]
    ctx.out.records(records, INVOICE_COLUMNS, empty="No invoices yet.")


NOUNS: tuple[Noun, ...] = (
    Noun(
        "billing",
        "your balance, the plans, your invoices",
        (
            Verb("balance", "your balance", "read", balance, project=False),
            Verb("plans", "the plans a project can be on", "read", plans, project=False),
            Verb("invoices", "your monthly invoices", "read", invoices, project=False),
        ),
        default="balance",
    ),
)
