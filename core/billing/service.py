"""Billing's services together, as the composition root builds them."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from core.archives.service import ArchiveService
from core.billing.balances import BalanceService
from core.billing.charges import DailyCharge
from core.billing.invoices import InvoiceRun, InvoiceService
from core.billing.payments import ManualProvider, PaymentProvider, PaymentService
from core.billing.plans import PlanService
from core.billing.promised import PromisedPayments
from core.billing.subscriptions import SubscriptionService
from core.billing.suspension import Suspensions
from core.db.pool import Pool
from core.deploy.limits import ProjectRuntime, default_limits
from core.deploy.service import DeploymentService
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
    suspensions: Suspensions
    promised: PromisedPayments
    invoices: InvoiceService
    invoice_run: InvoiceRun

    @classmethod
    def build(
        cls,
        pool: Pool,
        projects: ProjectService,
        deployments: DeploymentService,
        settings: Settings,
        providers: list[PaymentProvider] | None = None,
        runtime: ProjectRuntime | None = None,
        archives: ArchiveService | None = None,
    ) -> Billing:
        """`archives` and `runtime`: what a project's usage is measured with (its stored
        versions; its containers and volumes). Without them usage counts nothing."""
        try:
            ZoneInfo(settings.billing_time_zone)
        except (ZoneInfoNotFoundError, ValueError) as error:
            raise ValidationError(
                f"GHST_BILLING_TIME_ZONE {settings.billing_time_zone!r} is not a time zone."
            ) from error
        if settings.suspension_grace_days < 0 or settings.suspended_keep_days < 0:
            raise ValidationError(
                "GHST_SUSPENSION_GRACE_DAYS and GHST_SUSPENDED_KEEP_DAYS are days."
            )
        suspensions = Suspensions(
            pool,
            projects,
            deployments,
            grace=timedelta(days=settings.suspension_grace_days),
            keep_days=settings.suspended_keep_days,
        )
        # A suspended project refuses deploys, starts and uploads, and shows its own page.
        projects.holds.attach(suspensions)
        return cls(
            PlanService(pool),
            SubscriptionService(
                pool,
                projects,
                settings.billing_time_zone,
                defaults=default_limits(settings),
                archives=archives,
                runtime=runtime,
                jobs=deployments,
            ),
            BalanceService(pool, after_credit=suspensions.after_credit),
            PaymentService(
                pool,
                providers or [ManualProvider(settings.billing_manual_instructions)],
                settings.currency,
                after_payment=suspensions.after_payment,
            ),
            DailyCharge(pool, settings.billing_time_zone),
            suspensions,
            PromisedPayments(
                pool, settings.billing_time_zone, settings.currency, suspensions.after_credit
            ),
            InvoiceService(pool),
            InvoiceRun(pool, projects, settings.billing_time_zone, settings.currency),
        )

    async def daily(self) -> None:
        """The workers' billing chore: charge the days due, take back expired promised
        payments, then suspend the accounts whose grace period is over (a worker runs it
        when it starts, then every GHST_CHARGE_EVERY_SECONDS)."""
        await self.charges.run_logged()
        await self.promised.settle_expired_logged()
        await self.suspensions.run_logged()
