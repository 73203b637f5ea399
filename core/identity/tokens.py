"""Signed session tokens: HS256 JWTs with sub, jti, iat and exp."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import jwt

from core.errors import AuthenticationError

ALGORITHM = "HS256"


@dataclass(frozen=True)
class TokenClaims:
    user_id: int
    jti: uuid.UUID
    issued_at: datetime
    expires_at: datetime


class TokenSigner:
    def __init__(self, secret: bytes, ttl_seconds: int) -> None:
        if len(secret) < 32:
            raise ValueError("the JWT signing key must be at least 32 bytes")
        self._secret = secret
        self.ttl = timedelta(seconds=ttl_seconds)

    def issue(self, user_id: int, jti: uuid.UUID | None = None) -> tuple[str, TokenClaims]:
        now = datetime.now(UTC).replace(microsecond=0)
        claims = TokenClaims(user_id, jti or uuid.uuid4(), now, now + self.ttl)
        token = jwt.encode(
            {
                "sub": str(user_id),
                "jti": str(claims.jti),
                "iat": int(now.timestamp()),
                "exp": int(claims.expires_at.timestamp()),
            },
            self._secret,
            algorithm=ALGORITHM,
        )
        return token, claims

    def decode(self, token: str) -> TokenClaims:
        try:
            payload = jwt.decode(
                token,
                self._secret,
                algorithms=[ALGORITHM],
                options={"require": ["sub", "jti", "iat", "exp"]},
            )
            return TokenClaims(
                user_id=int(payload["sub"]),
                jti=uuid.UUID(payload["jti"]),
                issued_at=datetime.fromtimestamp(payload["iat"], UTC),
                expires_at=datetime.fromtimestamp(payload["exp"], UTC),
            )
        except (jwt.InvalidTokenError, ValueError) as error:
            raise AuthenticationError("Your session is not valid. Please log in again.") from error
