"""How the dashboard writes dates, sizes, key types and counts: one place, so every screen agrees.

Dates are shown as calendar days in UTC, upload times to the minute in UTC: what a user needs to
recognise a key, an account or a version, and stable enough for snapshot tests built from fixed
data. Sizes are binary units (KiB, MiB, GiB), like the storage quota.
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


def moment(when: datetime | None, never: str = "never") -> str:
    """A point in time to the minute, in UTC: when an archive was uploaded."""
    if when is None:
        return never
    if when.tzinfo is not None:
        when = when.astimezone(UTC)
    return when.strftime("%Y-%m-%d %H:%M")


SIZE_UNITS = ("KiB", "MiB", "GiB", "TiB")


def size(count: int) -> str:
    """A byte count for people: "532 B", "48.0 KiB", "120.5 MiB", "1.0 GiB"."""
    if count < 1024:
        return f"{count} B"
    value = float(count)
    for unit in SIZE_UNITS:
        value /= 1024
        if value < 1024 or unit == SIZE_UNITS[-1]:
            break
    return f"{value:.1f} {unit}"
