"""A stand-in Panel for snapshot tests only.

`snap_compare` runs the app in an event loop of its own, where the real Panel of the `panel`
fixture (its asyncpg pool is bound to the test session's loop) cannot be used. The snapshots only
need fixed data to draw; everything these screens do is tested against the real PostgreSQL and
Redis in the Pilot tests.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import cast

from core.accounts import BAD_CREDENTIALS, User
from core.errors import AuthenticationError, ConflictError
from core.keys import PublicKey, SSHKey, parse_public_key
from core.panel import Panel
from core.sessions import Session
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


@dataclass
class FakeAccounts:
    user: User

    async def get(self, user_id: int) -> User:
        return self.user

    async def authenticate(self, username: str, password: str, remote_addr: str) -> User:
        raise AuthenticationError(BAD_CREDENTIALS)


@dataclass
class FakeKeys:
    keys: list[SSHKey] = field(default_factory=list)

    async def list(self, user_id: int) -> list[SSHKey]:
        return list(self.keys)

    async def count(self, user_id: int) -> int:
        return len(self.keys)

    async def add(self, user_id: int, line: str, name: str | None = None) -> SSHKey:
        parse_public_key(line)  # the real parser: the real messages for bad lines
        raise ConflictError("The key is already registered to an account.")


@dataclass
class FakeSessions:
    active: int = 2

    async def active_count(self, user_id: int) -> int:
        return self.active


@dataclass
class FakePanel:
    accounts: FakeAccounts = field(default_factory=lambda: FakeAccounts(ALICE))
    keys: FakeKeys = field(default_factory=FakeKeys)
    sessions: FakeSessions = field(default_factory=FakeSessions)


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


def fake_app(visitor: Visitor, keys: list[SSHKey] | None = None) -> GhstApp:
    panel = FakePanel(keys=FakeKeys(list(keys or [])))
    return GhstApp(cast(Panel, panel), visitor)
