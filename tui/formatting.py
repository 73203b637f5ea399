"""How the dashboard writes dates, key types and counts: one place, so every screen agrees.

Dates are shown as calendar days in UTC: what a user needs to recognise a key or an account,
and stable enough for snapshot tests built from fixed data.
"""

from __future__ import annotations

from datetime import UTC, datetime

KEY_TYPES = {
    "ssh-ed25519": "ed25519",
    "ssh-rsa": "rsa",
    "ecdsa-sha2-nistp256": "ecdsa-256",
    "ecdsa-sha2-nistp384": "ecdsa-384",
    "ecdsa-sha2-nistp521": "ecdsa-521",
}


def day(moment: datetime | None, never: str = "never") -> str:
    if moment is None:
        return never
    if moment.tzinfo is not None:
        moment = moment.astimezone(UTC)
    return moment.strftime("%Y-%m-%d")


def key_type(algorithm: str) -> str:
    return KEY_TYPES.get(algorithm, algorithm)


def plural(count: int, singular: str, plural_form: str | None = None) -> str:
    word = singular if count == 1 else (plural_form or f"{singular}s")
    return f"{count} {word}"
