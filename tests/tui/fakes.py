"""A stand-in Panel for snapshot tests only.

`snap_compare` runs the app in an event loop of its own, where the real Panel of the `panel`
fixture (its asyncpg pool is bound to the test session's loop) cannot be used. The snapshots only
need fixed data to draw; everything these screens do is tested against the real PostgreSQL and
Redis in the Pilot tests.
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, cast

from core.actor import Actor
from core.archives.service import Archive
from core.audit.entries import AuditEvent, Outcome
from core.deploy.service import Deployment, ProjectState, ProjectStatus, Reason, State
from core.errors import AuthenticationError, ConflictError, NotFoundError, ValidationError
from core.events import EventHub
from core.identity.accounts import BAD_CREDENTIALS, User
from core.identity.keys import PublicKey, SSHKey, parse_public_key
from core.identity.sessions import Session
from core.panel import Panel
from core.projects.env_vars import EnvVar
from core.projects.service import Project, validate_app_port, validate_project_name
from core.settings import Settings
from tests.tui.fakes_billing import (
    FakeBalances,
    FakeInvoices,
    FakePayments,
    FakePlans,
    FakePromised,
    FakeSubscriptions,
)
from tests.tui.fakes_tokens import ALICE_TOKENS, FakeAccessTokens
from tui.app import GhstApp
from tui.visitor import Visitor

KEYS_DIR = Path(__file__).parent / "keys"
SIGNED_UP = datetime(2024, 11, 5, 14, 30, tzinfo=UTC)
REMOTE_ADDR = "203.0.113.7"


def public_key(name: str) -> PublicKey:
    """One of the committed test keys (public halves only) in tests/tui/keys/."""
    return parse_public_key((KEYS_DIR / f"{name}.pub").read_text())


def key_line(name: str) -> str:
    return (KEYS_DIR / f"{name}.pub").read_text().strip()


ALICE = User(
    id=1,
    username="alice",
    email="alice@example.com",
    is_admin=False,
    created_at=SIGNED_UP,
    blocked_at=None,
)


def stored_key(key_id: int, name: str, file: str, added: datetime, used: datetime | None) -> SSHKey:
    key = public_key(file)
    return SSHKey(
        id=key_id,
        user_id=ALICE.id,
        name=name,
        algorithm=key.algorithm,
        fingerprint=key.fingerprint,
        created_at=added,
        last_used_at=used,
    )


ALICE_KEYS = [
    stored_key(1, "alice@laptop", "laptop", SIGNED_UP, datetime(2025, 2, 1, 8, 0, tzinfo=UTC)),
    stored_key(2, "ci-runner", "ci", datetime(2024, 12, 2, 10, 0, tzinfo=UTC), None),
    stored_key(
        3,
        "old-workstation",
        "workstation",
        datetime(2025, 1, 20, 16, 45, tzinfo=UTC),
        datetime(2025, 1, 21, 9, 15, tzinfo=UTC),
    ),
]


MIB = 1 << 20
GIB = 1 << 30
# As a server listening on every address would be configured: the commands show the domain.
SETTINGS = Settings(domain="ghst.example", ssh_host="0.0.0.0", ssh_port=2222)


def project(
    name: str,
    versions: int,
    last_upload: datetime | None,
    project_id: int,
    app_port: int | None = None,
) -> Project:
    return Project(
        id=project_id,
        user_id=ALICE.id,
        name=name,
        created_at=SIGNED_UP,
        versions=versions,
        last_upload_at=last_upload,
        app_port=app_port,
    )


ALICE_PROJECTS = [  # by name, as core lists them
    project("landing-page", 0, None, 3),
    project("portfolio", 1, datetime(2025, 1, 12, 17, 5, tzinfo=UTC), 2),
    project("shop", 2, datetime(2025, 2, 3, 9, 12, tzinfo=UTC), 1, app_port=3000),
]


def archive(
    archive_id: int,
    version: int | None,
    filename: str,
    size: int,
    uploaded: datetime,
    message: str = "",
    project_id: int = 1,
) -> Archive:
    return Archive(
        id=archive_id,
        project_id=project_id,
        version=version,
        filename=filename,
        size=size,
        status="ready" if version else "rejected",
        message=message,
        kind="zip" if version else None,
        storage_key=f"projects/{project_id}/{archive_id}" if version else None,
        created_at=uploaded,
    )


SHOP_HISTORY = [  # newest first
    archive(4, 2, "shop.zip", 68 * MIB + 400 * 1024, datetime(2025, 2, 3, 9, 12, tzinfo=UTC)),
    archive(
        3,
        None,
        "shop-debug.tar.gz",
        2 * MIB + 310 * 1024,
        datetime(2025, 2, 2, 18, 40, tzinfo=UTC),
        "There is no Dockerfile at the top level of the archive: put it next to your app's "
        "files, not in a folder.",
    ),
    archive(1, 1, "shop.zip", 52 * MIB, datetime(2025, 1, 30, 11, 2, tzinfo=UTC)),
]
PORTFOLIO_HISTORY = [
    archive(2, 1, "site.tar.gz", 100 * 1024, datetime(2025, 1, 12, 17, 5, tzinfo=UTC), "", 2)
]
ALICE_ARCHIVES = {"shop": SHOP_HISTORY, "portfolio": PORTFOLIO_HISTORY, "landing-page": []}


@dataclass
class FakeProjects:
    projects: list[Project] = field(default_factory=list)

    async def list(self, actor: Actor) -> list[Project]:
        return list(self.projects)

    async def get(self, actor: Actor, name: str) -> Project:
        for item in self.projects:
            if item.name == name:
                return item
        raise NotFoundError(f"You have no project named {name[:40]!r}.")

    async def create(self, actor: Actor, name: str) -> Project:
        name = validate_project_name(name.strip())  # the real rules and their messages
        raise ConflictError(f"The name {name!r} is taken. Please choose another one.")

    async def set_app_port(self, actor: Actor, name: str, port: int | None) -> Project:
        validate_app_port(port)  # the real rules and their message
        return dataclasses.replace(await self.get(actor, name), app_port=port)


@dataclass
class FakeArchives:
    histories: dict[str, list[Archive]] = field(default_factory=dict)
    quota: int = GIB

    async def list(self, actor: Actor, project_name: str) -> list[Archive]:
        if project_name not in self.histories:
            raise NotFoundError(f"You have no project named {project_name[:40]!r}.")
        return list(self.histories[project_name])

    async def usage(self, actor: Actor) -> tuple[int, int]:
        used = sum(
            item.size
            for history in self.histories.values()
            for item in history
            if item.status == "ready"
        )
        return used, self.quota

    async def delete_project(self, actor: Actor, project_name: str, confirmation: str) -> Project:
        if confirmation.strip() != project_name:
            raise ValidationError(
                f"Type the project's name, {project_name!r}, to confirm deleting it."
            )
        raise NotFoundError(f"You have no project named {project_name[:40]!r}.")


def deployment(
    deployment_id: int,
    archive_name: str,
    state: State,
    started: datetime | None,
    seconds: int | None = None,
    *,
    reason: Reason = "deploy",
    error: str = "",
    image: bool = True,
    project_id: int = 1,
    project_name: str = "shop",
) -> Deployment:
    finished = started + timedelta(seconds=seconds) if started and seconds is not None else None
    return Deployment(
        id=deployment_id,
        project_id=project_id,
        project=project_name,
        user_id=ALICE.id,
        archive_id=None,
        archive_name=archive_name,
        reason=reason,
        source_id=3 if reason == "rollback" else None,
        kind="dockerfile",
        state=State(state),
        error=error,
        image=f"ghst/{project_name}:{deployment_id}" if image else None,
        stack=None,
        port=20000 + deployment_id if state == "running" else None,
        app_port=8080,
        created_at=started or SIGNED_UP,
        started_at=started,
        finished_at=finished,
    )


SHOP_DEPLOYMENTS = [  # newest first: the live one is #4, the latest attempt failed
    deployment(
        5,
        "v2-shop.zip",
        "failed",
        datetime(2025, 2, 3, 9, 14, tzinfo=UTC),
        71,
        error="The app did not answer on port 8080 within 60 s. Its last log line: "
        "Error: Cannot find module 'express'.",
        image=False,
    ),
    deployment(4, "v1-shop.zip", "running", datetime(2025, 2, 1, 8, 30, tzinfo=UTC), 6,
               reason="restart"),
    deployment(3, "v1-shop.zip", "superseded", datetime(2025, 1, 30, 11, 5, tzinfo=UTC), 48),
    deployment(2, "v1-shop.zip", "cancelled", datetime(2025, 1, 30, 11, 3, tzinfo=UTC), 12,
               error="Cancelled by its owner."),
    deployment(1, "v1-shop.zip", "failed", datetime(2025, 1, 30, 11, 2, tzinfo=UTC), 3,
               error="The Dockerfile has no FROM line.", image=False),
]  # fmt: skip
SHOP_BUILD_LOG = (
    "Step 1/4 : FROM node:20-alpine\n"
    " ---> 3f1a2b4c5d6e\n"
    "Step 2/4 : COPY . /app\n"
    " ---> 7a8b9c0d1e2f\n"
    "Step 3/4 : RUN npm ci --omit=dev\n"
    "added 57 packages in 4s\n"
    " ---> 1b2c3d4e5f60\n"
    'Step 4/4 : CMD ["node", "server.js"]\n'
    "Successfully built 1b2c3d4e5f60\n"
    "Successfully tagged ghst/shop:5\n"
    "Started container ghst-shop-5 on 127.0.0.1:20005\n"
    "Waiting for http://127.0.0.1:20005/ to answer (1, 2, 4, 8 s)…\n"
    "Error: Cannot find module 'express'\n"
    "The app did not answer on port 8080 within 60 s.\n"
)
SHOP_APP_LOG = [
    "> shop@1.0.0 start",
    "> node server.js",
    "Listening on port 8080",
    'GET / 200 12ms "Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0"',
    "GET /cart 200 4ms",
]
ALICE_DEPLOYMENTS = {"shop": SHOP_DEPLOYMENTS}
SHOP_ENV = [
    EnvVar("DATABASE_URL", "postgres://shop:hunter2hunter2@db.internal:5432/shop"),
    EnvVar("DEBUG", "0"),
    EnvVar("EMPTY_ONE", ""),
    EnvVar("SECRET_KEY", "6b1f0c2e9d8a7b6c5d4e3f2a1b0c9d8e"),
    EnvVar("STRIPE_KEY", "sk_live_51HxYzABCDEFGHIJKLMNOP"),
]
ALICE_ENV = {"shop": SHOP_ENV}


@dataclass
class FakeDeployments:
    """Fixed deployments; the status is derived from them like core derives it."""

    histories: dict[str, list[Deployment]] = field(default_factory=dict)
    build_logs: dict[int, str] = field(default_factory=dict)
    domain: str = "ghst.example"

    def _history(self, project: str) -> list[Deployment]:
        if project not in self.histories:
            raise NotFoundError(f"You have no project named {project[:40]!r}.")
        return self.histories[project]

    async def list(self, actor: Actor, project: str, limit: int = 50) -> list[Deployment]:
        return list(self._history(project)[:limit])

    async def get(self, actor: Actor, project: str, deployment_id: int) -> Deployment:
        for item in self._history(project):
            if item.id == deployment_id:
                return item
        raise NotFoundError(f"{project} has no deployment #{deployment_id}.")

    async def status(self, actor: Actor, project: str) -> ProjectStatus:
        history = self._history(project)
        latest = history[0] if history else None
        live = next((d for d in history if d.state == "running"), None)
        state: ProjectState = "new"
        if latest is not None and latest.active:
            state = "deploying"
        elif live is not None:
            state = "running"
        elif latest is not None and latest.state == "failed":
            state = "failed"
        return ProjectStatus(state, live, latest, f"http://{project}.{self.domain}/")

    async def build_log(
        self, actor: Actor, project: str, deployment_id: int, offset: int = 0
    ) -> tuple[str, int]:
        await self.get(actor, project, deployment_id)
        log = self.build_logs.get(deployment_id, "")
        return log[offset:], len(log)

    async def runtime_logs(self, actor: Actor, project: str, tail: int = 200) -> AsyncIterator[str]:
        """The live app's output: a few fixed lines, then the stream ends (the app stopped)."""
        self._history(project)
        for line in SHOP_APP_LOG[-tail:]:
            yield line

    async def delete_project(self, actor: Actor, project: str, confirmation: str) -> Project:
        self._history(project)
        if confirmation.strip() != project:
            raise ValidationError(f"Type the project's name, {project!r}, to confirm deleting it.")
        raise NotFoundError(f"You have no project named {project[:40]!r}.")


@dataclass
class FakeEnv:
    vars: dict[str, list[EnvVar]] = field(default_factory=dict)

    async def list(self, actor: Actor, project: str) -> list[EnvVar]:
        if project not in self.vars:
            raise NotFoundError(f"You have no project named {project[:40]!r}.")
        return list(self.vars[project])


@dataclass
class FakeAccounts:
    user: User

    async def get(self, user_id: int) -> User:
        return self.user

    async def authenticate(
        self, username: str, password: str, remote_addr: str, *, origin: str = "ssh"
    ) -> User:
        raise AuthenticationError(BAD_CREDENTIALS)


@dataclass
class FakeKeys:
    keys: list[SSHKey] = field(default_factory=list)

    async def list(self, actor: Actor) -> list[SSHKey]:
        return list(self.keys)

    async def count(self, actor: Actor) -> int:
        return len(self.keys)

    async def add(self, actor: Actor, line: str, name: str | None = None) -> SSHKey:
        parse_public_key(line)  # the real parser: the real messages for bad lines
        raise ConflictError("The key is already registered to an account.")


@dataclass
class FakeSessions:
    active: int = 2

    async def active_count(self, actor: Actor) -> int:
        return self.active


def audit_event(
    event_id: int,
    minutes: int,
    action: str,
    target: str | None,
    outcome: Outcome = "ok",
    *,
    by: str = "alice",
    origin: str = "dashboard",
    metadata: dict[str, Any] | None = None,
) -> AuditEvent:
    return AuditEvent(
        id=event_id,
        at=SIGNED_UP + timedelta(minutes=minutes),
        actor_kind="user" if by == "alice" else "system",
        actor_user_id=ALICE.id if by == "alice" else None,
        actor_label=by,
        token_id=None,
        origin=origin,
        action=action,
        target_kind="project" if target else None,
        target_id=None,
        target_name=target,
        owner_id=ALICE.id,
        outcome=outcome,
        source_address=REMOTE_ADDR if origin in ("dashboard", "sftp", "ssh") else None,
        request_id="0123456789abcdef",
        metadata=metadata or {},
    )


ALICE_AUDIT = [  # newest first
    audit_event(9, 95, "env.set", "shop", metadata={"name": "API_TOKEN", "change": "added"}),
    audit_event(8, 90, "project.delete", "portfolio", "refused", metadata={"reason": "x"}),
    audit_event(7, 80, "deployment.deploy", "shop", metadata={"archive": "v3-app.zip"}),
    audit_event(6, 70, "archive.upload", "shop", origin="sftp", metadata={"archive": "v3-app.zip"}),
    audit_event(5, 60, "archive.upload", "shop", "failed", origin="sftp"),
    audit_event(4, 50, "balance.adjustment", None, by="system:cli", origin="cli"),
    audit_event(3, 40, "project.create", "shop"),
    audit_event(2, 30, "key.add", "laptop"),
    audit_event(1, 0, "login", "alice", origin="ssh", metadata={"method": "password"}),
]


@dataclass
class FakeAudit:
    entries: list[AuditEvent] = field(default_factory=list)

    async def list(
        self, actor: Actor, *, before_id: int | None = None, limit: int = 50, **_: object
    ) -> list[AuditEvent]:
        older = [e for e in self.entries if before_id is None or e.id < before_id]
        return older[:limit]


@dataclass
class FakePanel:
    accounts: FakeAccounts = field(default_factory=lambda: FakeAccounts(ALICE))
    keys: FakeKeys = field(default_factory=FakeKeys)
    sessions: FakeSessions = field(default_factory=FakeSessions)
    projects: FakeProjects = field(default_factory=FakeProjects)
    archives: FakeArchives = field(default_factory=FakeArchives)
    deployments: FakeDeployments = field(default_factory=FakeDeployments)
    env: FakeEnv = field(default_factory=FakeEnv)
    settings: Settings = SETTINGS
    events: EventHub = field(default_factory=EventHub.offline)
    # Billing (tests/tui/fakes_billing.py): fixed plans, balance, ledger and invoices.
    plans: FakePlans = field(default_factory=FakePlans)
    subscriptions: FakeSubscriptions = field(default_factory=FakeSubscriptions)
    balances: FakeBalances = field(default_factory=FakeBalances)
    payments: FakePayments = field(default_factory=FakePayments)
    invoices: FakeInvoices = field(default_factory=FakeInvoices)
    promised: FakePromised = field(default_factory=FakePromised)
    # Access tokens (tests/tui/fakes_tokens.py).
    access_tokens: FakeAccessTokens = field(
        default_factory=lambda: FakeAccessTokens(list(ALICE_TOKENS))
    )
    audit: FakeAudit = field(default_factory=lambda: FakeAudit(ALICE_AUDIT))
    admin: object | None = None


def signed_in_visitor(user: User = ALICE) -> Visitor:
    session = Session(
        jti=uuid.UUID(int=1),
        user_id=user.id,
        token="not-a-real-token",
        auth_method="password",
        remote_addr=REMOTE_ADDR,
        expires_at=datetime(2030, 1, 1, tzinfo=UTC),
    )
    return Visitor(REMOTE_ADDR, user.username, user=user, session=session)


def fake_app(
    visitor: Visitor,
    keys: list[SSHKey] | None = None,
    *,
    projects: list[Project] | None = None,
    archives: dict[str, list[Archive]] | None = None,
    deployments: dict[str, list[Deployment]] | None = None,
    env: dict[str, list[EnvVar]] | None = None,
) -> GhstApp:
    """The app over fixed data: projects default to ALICE_PROJECTS with their histories,
    deployments and env vars."""
    if projects is None:
        projects = ALICE_PROJECTS
    if archives is None:
        archives = ALICE_ARCHIVES
    if deployments is None:
        deployments = ALICE_DEPLOYMENTS
    if env is None:
        env = ALICE_ENV
    panel = FakePanel(
        keys=FakeKeys(list(keys or [])),
        projects=FakeProjects(list(projects)),
        archives=FakeArchives({p.name: archives.get(p.name, []) for p in projects}),
        deployments=FakeDeployments(
            {p.name: deployments.get(p.name, []) for p in projects}, {5: SHOP_BUILD_LOG}
        ),
        env=FakeEnv({p.name: env.get(p.name, []) for p in projects}),
    )
    return GhstApp(cast(Panel, panel), visitor)
