"""`ghst plan list|add` and `ghst billing credit|balance|charge|promise|suspend`: the operator's
billing."""

from __future__ import annotations

import argparse
from decimal import Decimal, InvalidOperation

from core.actor import Actor
from core.billing.money import format_amount, parse_amount, parse_price
from core.billing.plans import Plan, PlanSpec
from core.errors import NotFoundError, ValidationError
from core.panel import Panel
from core.settings import Settings


def millicores(text: str) -> int:
    try:
        cores = Decimal(text)
    except InvalidOperation as error:
        raise ValidationError(f"--cpu {text!r} is not a number of CPUs such as 0.25.") from error
    return int(cores * 1000)


def plan_line(plan: Plan, currency: str) -> str:
    state = " (retired)" if plan.retired else ""
    price = format_amount(plan.price_kopecks, currency)
    cpu = f"{plan.cpu_millicores / 1000:g}"
    return (
        f"{plan.code:<12} v{plan.version:<3} {plan.name:<16} {price:>16}  {cpu:>5} CPU"
        f" {plan.ram_mb:>6} MB RAM {plan.disk_mb:>6} MB disk {plan.max_services:>3} services"
        f" {plan.pids:>5} pids"
        f"{state}"
    )


async def run_billing_command(args: argparse.Namespace, operator: Actor) -> int:
    settings = Settings.load()
    panel = await Panel.open(settings)
    try:
        billing = panel.billing
        currency = settings.currency
        if args.command == "plan" and args.action == "list":
            for plan in await billing.plans.list(with_old=args.all):
                print(plan_line(plan, currency))
        elif args.command == "plan" and args.action == "add":
            spec = PlanSpec(
                args.code, args.name, parse_price(args.price_rub),
                millicores(args.cpu), args.ram_mb, args.disk_mb, args.services, args.pids,
            )  # fmt: skip
            print("added " + plan_line(await billing.plans.add_version(operator, spec), currency))
        elif args.command == "billing" and args.action == "charge":
            run = await billing.charges.run()
            if run is None:
                print("another worker is charging right now")
            else:
                days = ", ".join(day.isoformat() for day in run.days)
                print(f"charged {run.posted} project-days over {days}")
        elif args.command == "billing" and args.action == "suspend":
            suspended = await billing.suspensions.run()
            if suspended is None:
                print("another worker is checking suspensions right now")
            else:
                print(
                    f"suspended {len(suspended.projects)} projects of"
                    f" {len(suspended.accounts)} accounts"
                )
        else:
            user = await panel.accounts.find_by_username(args.username)
            if user is None:
                raise NotFoundError(f"No user {args.username!r}.")
            if args.action == "credit":
                payment, new = await billing.payments.record_manual(
                    operator, user.id, parse_amount(args.amount), args.reason,
                    reference=args.reference,
                )  # fmt: skip
                what = "credited" if new else "already recorded, nothing more credited:"
                print(f"{what} {format_amount(payment.amount, currency)} to {user.username}")
            if args.action == "promise":
                promise = await billing.promised.take(operator, owner_id=user.id)
                until = promise.expires_at.strftime("%Y-%m-%d %H:%M UTC")
                print(
                    f"promised {format_amount(promise.amount, currency)} to {user.username}"
                    f" until {until}"
                )
            balance = await billing.balances.balance(operator, owner_id=user.id)
            print(f"{user.username}: balance {format_amount(balance, currency)}")
            if args.action == "balance":
                for entry in await billing.balances.history(operator, owner_id=user.id, limit=20):
                    when = entry.created_at.strftime("%Y-%m-%d %H:%M")
                    amount = format_amount(entry.amount, currency)
                    print(f"  {when} {entry.kind:<10} {amount:>16}  {entry.reason}")
    finally:
        await panel.close()
    return 0
