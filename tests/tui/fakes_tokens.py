"""Fixed access tokens for the dashboard's snapshots (see tests/tui/fakes.py)."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta

from core.actor import Actor
from core.errors import ConflictError, NotFoundError
from core.identity.access_tokens import (
    DEFAULT_LIFETIME,
    SECRET_LENGTH,
    SECRET_PREFIX,
    AccessToken,
    CreatedToken,
    check_scopes,
)

CREATED = datetime(2025, 1, 10, 9, 0, tzinfo=UTC)
# Made up, and the same on every run: snapshots never change by themselves.
FIXED_SECRET = SECRET_PREFIX + ("Zx81Qm" * 8)[:SECRET_LENGTH]


def stored_token(
    token_id: int,
    name: str,
    scopes: str,
    projects: Collection[str] | None,
    expires_at: datetime,
    last_used_at: datetime | None,
) -> AccessToken:
    return AccessToken(
        id=token_id,
        user_id=1,
        name=name,
        prefix=f"ghst_{name[:3].upper()}{token_id:03d}",
        scopes=frozenset(scopes.split(",")),
        projects=None if projects is None else frozenset(projects),
        created_at=CREATED,
        expires_at=expires_at,
        last_used_at=last_used_at,
        revoked_at=None,
    )


ALICE_TOKENS = [
    stored_token(
        2,
        "github-actions",
        "deploy,logs,read",
        ["shop"],
        datetime(2030, 4, 10, 9, 0, tzinfo=UTC),
        datetime(2025, 2, 3, 17, 20, tzinfo=UTC),
    ),
    stored_token(1, "old-script", "read", None, datetime(2025, 4, 10, 9, 0, tzinfo=UTC), None),
]


@dataclass
class FakeAccessTokens:
    tokens: list[AccessToken] = field(default_factory=list)

    async def list(self, actor: Actor) -> list[AccessToken]:
        return list(self.tokens)

    async def create(
        self,
        actor: Actor,
        name: str,
        scopes: Collection[str],
        *,
        projects: Collection[str] | None = None,
        lifetime: timedelta | None = None,
    ) -> CreatedToken:
        check_scopes(scopes)
        if any(token.name == name for token in self.tokens):
            raise ConflictError(f"You already have a token named {name!r}.")
        if projects and "nothing" in projects:
            raise NotFoundError("No project named 'nothing'.")
        token = replace(
            stored_token(
                len(self.tokens) + 10,
                name,
                ",".join(sorted(scopes)),
                projects,
                CREATED + (lifetime or DEFAULT_LIFETIME),
                None,
            ),
            prefix=FIXED_SECRET[:11],
        )
        self.tokens.insert(0, token)
        return CreatedToken(token, FIXED_SECRET)

    async def revoke(self, actor: Actor, name: str) -> AccessToken:
        for token in self.tokens:
            if token.name == name:
                self.tokens.remove(token)
                return token
        raise NotFoundError(f"No live token named {name!r} on your account.")
