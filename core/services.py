"""What the front ends (the dashboard, the SSH server) get from the panel: domain services only.

`Services` names them; `ServiceSet` is the object the front ends hold. It carries no pool,
Redis client, Docker engine, nginx router, queue or deployer, so a screen or an SFTP handler
can only do what a service method offers, with that method's checks. The composition root
(`core.panel.Panel`) has every one of these attributes too, so a `Panel` can be handed
wherever `Services` is expected; `ServiceSet.of` keeps only the services.

The operators' `ghst` command (cli/) runs on the host and may use the `Panel` itself.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Protocol

from core.admin.service import AdminService
from core.archives.service import ArchiveService
from core.audit.service import AuditService
from core.billing.balances import BalanceService
from core.billing.invoices import InvoiceService
from core.billing.payments import PaymentService
from core.billing.plans import PlanService
from core.billing.promised import PromisedPayments
from core.billing.subscriptions import SubscriptionService
from core.deploy.service import DeploymentService
from core.events import EventHub
from core.identity.access_tokens import AccessTokenService
from core.identity.accounts import AccountService
from core.identity.keys import KeyService
from core.identity.sessions import SessionService
from core.projects.env_vars import EnvService
from core.projects.service import ProjectService
from core.settings import Settings


class Services(Protocol):
    """The domain services a front end may call (read-only attributes)."""

    @property
    def settings(self) -> Settings: ...
    @property
    def accounts(self) -> AccountService: ...
    @property
    def keys(self) -> KeyService: ...
    @property
    def sessions(self) -> SessionService: ...
    @property
    def projects(self) -> ProjectService: ...
    @property
    def archives(self) -> ArchiveService: ...
    @property
    def env(self) -> EnvService: ...
    @property
    def deployments(self) -> DeploymentService: ...
    @property
    def events(self) -> EventHub: ...
    @property
    def plans(self) -> PlanService: ...
    @property
    def subscriptions(self) -> SubscriptionService: ...
    @property
    def balances(self) -> BalanceService: ...
    @property
    def payments(self) -> PaymentService: ...
    @property
    def promised(self) -> PromisedPayments: ...
    @property
    def invoices(self) -> InvoiceService: ...
    @property
    def access_tokens(self) -> AccessTokenService: ...
    # The audit log: a user's own entries, everyone's for operators.
    @property
    def audit(self) -> AuditService: ...
    # The operators' app (admins and operators only; each method checks its actor).
    @property
    def admin(self) -> AdminService: ...


@dataclass(frozen=True)
class ServiceSet:
    """The services and nothing else: what the front ends hold at run time."""

    settings: Settings
    accounts: AccountService
    keys: KeyService
    sessions: SessionService
    projects: ProjectService
    archives: ArchiveService
    env: EnvService
    deployments: DeploymentService
    events: EventHub
    # Billing's user-facing services (the daily charge is the workers' and stays out).
    plans: PlanService
    subscriptions: SubscriptionService
    balances: BalanceService
    payments: PaymentService
    promised: PromisedPayments
    invoices: InvoiceService
    # Access tokens: created, listed and revoked by the person; checked at SSH logins.
    access_tokens: AccessTokenService
    audit: AuditService
    admin: AdminService

    @classmethod
    def of(cls, source: Services) -> ServiceSet:
        """The services of `source` (a `Panel`, another set, a stand-in), without the rest."""
        return cls(**{field.name: getattr(source, field.name) for field in dataclasses.fields(cls)})
