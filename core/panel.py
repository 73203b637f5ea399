"""The composition root: builds every core service from one Settings object."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass, field

from redis.asyncio import Redis

from core import secrets
from core.admin.holds import AdminHolds
from core.admin.processes import PanelProcesses
from core.admin.service import AdminService
from core.admin.system import SystemChecks
from core.archives import records as archive_records
from core.archives.service import ArchiveService
from core.archives.storage import ObjectStorage, storage_from_settings
from core.audit.service import AuditService
from core.billing.balances import BalanceService
from core.billing.invoices import InvoiceService
from core.billing.payments import (
    ManualProvider,
    PaymentProvider,
    PaymentService,
    WebhookTestProvider,
)
from core.billing.plans import PlanService
from core.billing.promised import PromisedPayments
from core.billing.service import Billing
from core.billing.subscriptions import SubscriptionService
from core.db.migrations import migrate
from core.db.pool import Pool, create_pool
from core.deploy.operations import Operations
from core.deploy.pipeline import Deployer
from core.deploy.queue import DeploymentQueue
from core.deploy.service import DeploymentService
from core.deploy.store import DeploymentStore
from core.deploy.worker import DeploymentWorker
from core.events import Event, EventHub
from core.identity.access_tokens import AccessTokenService
from core.identity.accounts import AccountService
from core.identity.keys import KeyService
from core.identity.passwords import PasswordHasher
from core.identity.sessions import SessionService
from core.identity.throttle import LoginThrottle, ThrottleLimits
from core.identity.tokens import TokenSigner
from core.installation import Installation, load_installation
from core.projects.cache import JsonCache
from core.projects.env_vars import EnvService
from core.projects.service import ProjectService
from core.routing.nginx import NginxRouter
from core.routing.ports import PortAllocator
from core.runtime.compose.runner import ComposeRunner
from core.runtime.compose.stacks import ComposeStacks
from core.runtime.engine import DockerEngine
from core.services import ServiceSet
from core.settings import Settings

log = logging.getLogger(__name__)


@dataclass
class Panel:
    """Every service and adapter of one panel process, opened by `open`, closed by `close`.

    For the host's side: `ghst` commands, the deployment worker, tests. Front ends get
    `services` (core.services), which carries none of the infrastructure below.
    """

    settings: Settings
    pool: Pool
    redis: Redis
    hasher: PasswordHasher
    accounts: AccountService
    keys: KeyService
    sessions: SessionService
    throttle: LoginThrottle
    projects: ProjectService
    storage: ObjectStorage
    archives: ArchiveService
    env: EnvService
    deployments: DeploymentService
    engine: DockerEngine
    compose: ComposeRunner
    router: NginxRouter
    ports: PortAllocator
    queue: DeploymentQueue
    deployer: Deployer
    installation: Installation
    # One LISTEN connection per process, opened when the first screen subscribes.
    events: EventHub
    # Plans, project plans, balances, payments, the daily charge (screens come later).
    billing: Billing
    access_tokens: AccessTokenService
    # The audit log's reading and retention (entries are written by each service).
    audit: AuditService = field(init=False)

    # What `close` undoes, last opened first; filled by `open`.
    _resources: AsyncExitStack = field(
        default_factory=AsyncExitStack, kw_only=True, repr=False, compare=False
    )

    @classmethod
    async def open(cls, settings: Settings, *, run_migrations: bool = True) -> Panel:
        """Open every service. A step that fails closes what the steps before it opened."""
        async with AsyncExitStack() as resources:
            panel = await cls._build(settings, resources, run_migrations=run_migrations)
            panel._resources = resources.pop_all()
            return panel
        raise AssertionError("unreachable: the block returns or raises")

    @classmethod
    async def _build(
        cls, settings: Settings, resources: AsyncExitStack, *, run_migrations: bool
    ) -> Panel:
        """The steps of `open`: each registers on `resources` how to undo what it opened."""
        pool = await create_pool(settings.database_url)
        resources.push_async_callback(pool.close)
        if run_migrations:
            async with pool.acquire() as conn:
                applied = await migrate(conn)
            for migration in applied:
                log.info("applied migration %04d_%s", migration.version, migration.name)
        installation = await load_installation(pool, DeploymentStore(pool).made_up_to)
        redis = Redis.from_url(settings.redis_url, socket_timeout=2, socket_connect_timeout=2)
        resources.push_async_callback(redis.aclose)
        hasher = PasswordHasher(settings.bcrypt_rounds)
        resources.callback(hasher.close)
        signer = TokenSigner(await asyncio.to_thread(jwt_secret, settings), settings.session_ttl)
        throttle = LoginThrottle(
            redis,
            ThrottleLimits(
                max_failures_per_user=settings.login_max_failures,
                max_failures_per_ip=settings.login_max_failures_per_ip,
                window_seconds=settings.login_window,
                max_signups_per_ip=settings.signup_max_per_ip,
                signup_window_seconds=settings.signup_window,
            ),
        )
        keys = KeyService(pool)
        sessions = SessionService(pool, signer)
        accounts = AccountService(pool, hasher, throttle, sessions, keys)
        projects = ProjectService(
            pool,
            JsonCache(redis, "projects", max_misses=settings.cache_max_misses),
            archive_records.version_counts,
        )
        storage = storage_from_settings(
            s3_endpoint=settings.s3_endpoint,
            s3_bucket=settings.s3_bucket,
            s3_access_key=settings.s3_access_key,
            s3_secret_key=settings.s3_secret_key,
            s3_region=settings.s3_region,
            s3_ca_bundle=settings.s3_ca_bundle,
            storage_dir=settings.archives_dir,
        )
        resources.push_async_callback(storage.close)
        await storage.prepare()
        archives = ArchiveService(pool, storage, projects)
        env = EnvService(pool, projects)
        router = nginx_router(settings)
        deployments = DeploymentService(pool, projects, archives, router.url)
        engine = DockerEngine(
            settings.docker_url, instance=settings.instance, installation=installation
        )
        resources.push_async_callback(engine.close)
        compose = ComposeRunner(
            settings.compose_command,
            settings.docker_url,
            allow_pull=settings.docker_pull,
            owns=engine.owns,
        )
        ports = PortAllocator(pool, settings.port_min, settings.port_max)
        queue = DeploymentQueue(
            pool,
            settings.lease_seconds,
            log_max_bytes=settings.build_log_max_bytes,
            per_user=settings.builds_per_user,
            projects=projects,
        )
        store = DeploymentStore(pool)
        deployer = Deployer(
            settings, store, projects, archives, queue, ports, storage, env, engine, compose,
            ComposeStacks(pool), router, installation,
        )  # fmt: skip
        resources.push_async_callback(deployer.close)
        deployments.attach_runtime(deployer)
        providers: list[PaymentProvider] = [ManualProvider(settings.billing_manual_instructions)]
        if settings.payments_test_provider:
            secret = await asyncio.to_thread(webhook_secret, settings)
            providers.append(WebhookTestProvider(secret))
        # An admin's suspension refuses a project's work like billing's; attached first, so a
        # project held by both says the operators hold it (money alone will not start it).
        projects.holds.attach(AdminHolds(pool, projects, deployments))
        billing = Billing.build(
            pool, projects, deployments, settings, providers, runtime=deployer, archives=archives
        )
        await billing.plans.seed()
        # Each project runs with its plan's limits, and its uploads fit its plan's disk.
        deployer.attach_limits(billing.subscriptions.limits_of)
        archives.attach_disk_room(
            billing.subscriptions.disk_room, billing.subscriptions.disk_limit_in
        )
        events = EventHub(settings.database_url, prepare=fresh_projects(projects))
        resources.push_async_callback(events.close)  # last opened: closed first
        return cls(
            settings, pool, redis, hasher, accounts, keys, sessions, throttle, projects,
            storage, archives, env, deployments, engine, compose, router, ports, queue, deployer,
            installation, events, billing,
            AccessTokenService(pool, throttle, sessions, projects),
        )  # fmt: skip

    # Billing's services by name, as `Services` names them for the front ends.
    @property
    def plans(self) -> PlanService:
        return self.billing.plans

    @property
    def subscriptions(self) -> SubscriptionService:
        return self.billing.subscriptions

    @property
    def balances(self) -> BalanceService:
        return self.billing.balances

    @property
    def payments(self) -> PaymentService:
        return self.billing.payments

    @property
    def promised(self) -> PromisedPayments:
        return self.billing.promised

    @property
    def invoices(self) -> InvoiceService:
        return self.billing.invoices

    def __post_init__(self) -> None:
        self.audit = AuditService(
            self.pool,
            export_dir=self.settings.data_dir / "audit",
            retention_days=self.settings.audit_retention_days,
        )

    @property
    def admin(self) -> AdminService:
        """The operators' app's reads and changes (it holds no state: built on demand)."""
        return AdminService(
            self.pool,
            accounts=self.accounts,
            subscriptions=self.subscriptions,
            balances=self.balances,
            promised=self.promised,
            deployments=self.deployments,
            plans=self.plans,
            holds=AdminHolds(self.pool, self.projects, self.deployments),
            processes=self.processes,
            system=SystemChecks(
                self.settings, self.pool, self.redis, self.storage, self.engine, self.router,
                self.sessions,
            ),
        )  # fmt: skip

    @property
    def processes(self) -> PanelProcesses:
        """The serving processes' heartbeats (`ghst serve` writes its own), for `:system`."""
        return PanelProcesses(self.pool)

    @property
    def services(self) -> ServiceSet:
        """The domain services alone: what the dashboard and the SSH server get."""
        return ServiceSet.of(self)

    def worker(self, **options: object) -> DeploymentWorker:
        """A deployment worker for this panel (run it with `await worker.run(stop_event)`)."""
        settings = self.settings
        defaults: dict[str, object] = {
            "concurrency": settings.builds_at_once,
            "lease_seconds": settings.lease_seconds,
            "live_check_seconds": settings.live_check_seconds,
            "deploy_timeout": settings.deploy_timeout,
            "keep_deployments": settings.keep_deployments,
            "operations": Operations(
                DeploymentStore(self.pool), self.projects, self.archives, self.deployer
            ),
            # The daily charge rides on the worker's loop; its lock makes it one per panel.
            # Suspensions follow the charge in the same chore (their own lock, the same rule).
            "chores": [
                (settings.charge_every_seconds, self.billing.daily),
                # Each month's invoices, once its days are charged (idempotent, one runner).
                (settings.charge_every_seconds, self.billing.invoice_run.run_logged),
                # Audit entries past retention: exported to JSON lines, then pruned.
                (settings.audit_every_seconds, self.audit.retain_logged),
            ],
        }
        return DeploymentWorker(
            self.pool,
            settings.database_url,
            self.queue,
            self.deployer,
            **{**defaults, **options},  # type: ignore[arg-type]
        )

    async def close(self) -> None:
        """Close what `open` opened, last opened first (the deployer before the engine it
        drives, the pool last). Closing twice is harmless."""
        await self._resources.aclose()


def fresh_projects(projects: ProjectService) -> Callable[[Event], Awaitable[None]]:
    """Before an event about a user's projects or uploads reaches a screen here, drop that
    user's cached project list: the writer drops it only after its commit, maybe too late."""

    async def prepare(event: Event) -> None:
        if event.kind in ("project", "archive") and event.user_id is not None:
            await projects.invalidate(event.user_id)

    return prepare


def nginx_router(settings: Settings) -> NginxRouter:
    return NginxRouter(
        prefix=settings.nginx_dir,
        domain=settings.domain,
        listen=settings.nginx_listen,
        port=settings.nginx_port,
        body_limit_mb=settings.nginx_body_limit_mb,
        binary=settings.nginx_binary,
        log_max_mb=settings.nginx_log_max_mb,
        webhook_port=settings.payment_webhook_port,
    )


def webhook_secret(settings: Settings) -> bytes:
    """The test payment provider's signing secret (blocking: made on first run)."""
    if settings.payment_webhook_secret:
        return settings.payment_webhook_secret.encode()
    return secrets.load_or_create(settings.data_dir / "webhook.key", secrets.random_key)


def jwt_secret(settings: Settings) -> bytes:
    if settings.jwt_secret:
        return settings.jwt_secret.encode()
    return secrets.load_or_create(settings.data_dir / "jwt.key", secrets.random_key)
