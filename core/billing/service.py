"""Billing's services together, as the composition root builds them."""

from __future__ import annotations

from dataclasses import dataclass
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from core.billing.balances import BalanceService
from core.billing.charges import DailyCharge
from core.billing.invoices import InvoiceRun, InvoiceService
from core.billing.payments import ManualProvider, PaymentProvider, PaymentService
from core.billing.plans import PlanService
from core.billing.subscriptions import SubscriptionService
from core.db.pool import Pool
from core.errors import ValidationError
from core.projects.service import ProjectService
from core.settings import Settings


@dataclass(frozen=True)
class Billing:
    plans: PlanService
    subscriptions: SubscriptionService
    balances: BalanceService
    payments: PaymentService
    charges: DailyCharge
    invoices: InvoiceService
    invoice_run: InvoiceRun

    @classmethod
    def build(
        cls,
        pool: Pool,
        projects: ProjectService,
        settings: Settings,
        providers: list[PaymentProvider] | None = None,
    ) -> Billing:
        try:
            ZoneInfo(settings.billing_time_zone)
        except (ZoneInfoNotFoundError, ValueError) as error:
            raise ValidationError(
                f"GHST_BILLING_TIME_ZONE {settings.billing_time_zone!r} is not a time zone."
            ) from error
        return cls(
            PlanService(pool),
            SubscriptionService(pool, projects, settings.billing_time_zone),
            BalanceService(pool),
            PaymentService(
                pool,
                providers or [ManualProvider(settings.billing_manual_instructions)],
                settings.currency,
            ),
            DailyCharge(pool, settings.billing_time_zone),
            InvoiceService(pool),
            InvoiceRun(pool, projects, settings.billing_time_zone, settings.currency),
        )
