"""SSH public keys: parsing OpenSSH one-line keys, fingerprints, and the per-account key list.

Parsed here rather than with asyncssh so that core stays free of the SSH server library; the
server hands us the key blob it saw and we look its owner up by that.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
import struct
from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime

import asyncpg

from core.actor import SCOPES, Actor
from core.audit import entries as audit
from core.audit.service import records_refusals
from core.db.pool import Connection, Pool
from core.db.unit import reading, transaction
from core.errors import ConflictError, NotFoundError, ValidationError

MIN_RSA_BITS = 2048
MAX_KEYS_PER_USER = 50
KEY_NAME_PATTERN = re.compile(r"^[\w.@+-][\w .@+:-]{0,63}$")
ECDSA_CURVES = {
    "ecdsa-sha2-nistp256": b"nistp256",
    "ecdsa-sha2-nistp384": b"nistp384",
    "ecdsa-sha2-nistp521": b"nistp521",
}
SUPPORTED = "ssh-ed25519, ecdsa-sha2-nistp256/384/521 or ssh-rsa of at least 2048 bits"


@dataclass(frozen=True)
class PublicKey:
    algorithm: str
    blob: bytes
    comment: str = ""

    @property
    def fingerprint(self) -> str:
        digest = base64.b64encode(hashlib.sha256(self.blob).digest()).decode().rstrip("=")
        return f"SHA256:{digest}"

    @property
    def encoded(self) -> str:
        return base64.b64encode(self.blob).decode()

    def openssh_line(self) -> str:
        line = f"{self.algorithm} {self.encoded}"
        return f"{line} {self.comment}" if self.comment else line


@dataclass(frozen=True)
class SSHKey:
    id: int
    user_id: int
    name: str
    algorithm: str
    fingerprint: str
    created_at: datetime
    last_used_at: datetime | None
    # A deploy key: what it may do, and on which projects (None: every project). An ordinary
    # key has no scopes and logs its account in for everything.
    scopes: frozenset[str] | None = None
    projects: frozenset[str] | None = None

    @property
    def is_deploy_key(self) -> bool:
        return self.scopes is not None


def _read_string(blob: bytes, offset: int) -> tuple[bytes, int]:
    if offset + 4 > len(blob):
        raise ValueError("truncated")
    (length,) = struct.unpack(">I", blob[offset : offset + 4])
    end = offset + 4 + length
    if end > len(blob):
        raise ValueError("truncated")
    return blob[offset + 4 : end], end


def _check_blob(algorithm: str, blob: bytes) -> None:
    """Check the blob really is a key of `algorithm` that we accept; raise ValueError if not."""
    declared, offset = _read_string(blob, 0)
    if declared.decode("ascii", "replace") != algorithm:
        raise ValueError(f"the key data says {declared.decode('ascii', 'replace')!r}")
    if algorithm == "ssh-ed25519":
        point, offset = _read_string(blob, offset)
        if len(point) != 32:
            raise ValueError("an ed25519 key is 32 bytes")
    elif algorithm in ECDSA_CURVES:
        curve, offset = _read_string(blob, offset)
        if curve != ECDSA_CURVES[algorithm]:
            raise ValueError("the curve does not match the key type")
        point, offset = _read_string(blob, offset)
        if not point or point[0] != 4:
            raise ValueError("the curve point is malformed")
    elif algorithm == "ssh-rsa":
        _exponent, offset = _read_string(blob, offset)
        modulus, offset = _read_string(blob, offset)
        bits = int.from_bytes(modulus, "big").bit_length()
        if bits < MIN_RSA_BITS:
            raise RSAKeyTooShort(bits)
    if offset != len(blob):
        raise ValueError("trailing bytes after the key")


class RSAKeyTooShort(ValueError):
    def __init__(self, bits: int) -> None:
        super().__init__(f"{bits} bits")
        self.bits = bits


def parse_public_key(line: str) -> PublicKey:
    """Parse one OpenSSH public key line (`type base64 [comment]`)."""
    text = line.strip()
    if not text:
        raise ValidationError(
            "Paste a public key line, e.g. the contents of ~/.ssh/id_ed25519.pub."
        )
    if "PRIVATE KEY" in text:
        raise ValidationError("That is a private key. Never share it: paste the .pub file instead.")
    if "\n" in text:
        raise ValidationError("Paste a single key: one line in OpenSSH format.")
    parts = text.split(maxsplit=2)
    algorithm = parts[0]
    if algorithm not in {"ssh-ed25519", "ssh-rsa", *ECDSA_CURVES}:
        raise ValidationError(f"Unsupported key type {algorithm[:40]!r}: use {SUPPORTED}.")
    if len(parts) < 2:
        raise ValidationError("The key line has no key data after its type.")
    try:
        blob = base64.b64decode(parts[1], validate=True)
    except (binascii.Error, ValueError) as error:
        raise ValidationError("The key data is not valid base64.") from error
    try:
        _check_blob(algorithm, blob)
    except RSAKeyTooShort as error:
        raise ValidationError(
            f"This RSA key has {error.bits} bits; RSA keys need at least {MIN_RSA_BITS}."
        ) from error
    except ValueError as error:
        raise ValidationError(f"The key data is not a valid {algorithm} key ({error}).") from error
    comment = parts[2].strip() if len(parts) > 2 else ""
    return PublicKey(algorithm, blob, comment)


def public_key_from_blob(blob: bytes, comment: str = "") -> PublicKey:
    """Build a PublicKey from the wire blob an SSH server received."""
    try:
        algorithm = _read_string(blob, 0)[0].decode("ascii")
    except (ValueError, UnicodeDecodeError) as error:
        raise ValidationError("Malformed public key.") from error
    return parse_public_key(f"{algorithm} {base64.b64encode(blob).decode()} {comment}")


def _row_to_key(row: asyncpg.Record) -> SSHKey:
    scopes, projects = row["scopes"], row["projects"]
    return SSHKey(
        id=row["id"],
        user_id=row["user_id"],
        name=row["name"],
        algorithm=row["algorithm"],
        fingerprint=row["fingerprint"],
        created_at=row["created_at"],
        last_used_at=row["last_used_at"],
        scopes=None if scopes is None else frozenset(scopes),
        projects=None if projects is None else frozenset(projects),
    )


KEY_COLUMNS = (
    "id, user_id, name, algorithm, fingerprint, created_at, last_used_at, scopes, projects"
)
# What a deploy key may be granted: a token's scopes but `admin`.
DEPLOY_KEY_SCOPES = SCOPES - {"admin"}


def deploy_key_limits(
    scopes: Collection[str] | None, projects: Collection[str] | None
) -> tuple[list[str] | None, list[str] | None]:
    """The scopes and projects of a deploy key as stored; (None, None) for an ordinary key.
    Projects without scopes make a key for reading and deploying them."""
    if scopes is None and projects is None:
        return None, None
    wanted = sorted(set(scopes) if scopes is not None else {"read", "deploy"})
    if not wanted:
        raise ValidationError(
            "Give a deploy key at least one scope: read, logs, deploy, env:write."
        )
    refused = [scope for scope in wanted if scope not in DEPLOY_KEY_SCOPES]
    if refused:
        raise ValidationError(
            f"A deploy key cannot have the scope {refused[0][:40]!r}: "
            "use read, logs, deploy or env:write."
        )
    if projects is None:
        return wanted, None
    names = sorted({name.strip() for name in projects if name.strip()})
    if not names:
        raise ValidationError("Name at least one project, or none to allow every project.")
    return wanted, names


async def owners_of_fingerprint(conn: Connection, fingerprint: str) -> list[int]:
    """The accounts holding a key with this SHA256 fingerprint (the admin app's search)."""
    rows = await conn.fetch("SELECT user_id FROM ssh_keys WHERE fingerprint = $1", fingerprint)
    return [row["user_id"] for row in rows]


async def keys_of(conn: Connection, user_id: int) -> list[SSHKey]:
    """An account's keys, oldest first (the admin app's user details; no secret in them)."""
    rows = await conn.fetch(
        f"SELECT {KEY_COLUMNS} FROM ssh_keys WHERE user_id = $1 ORDER BY created_at, id", user_id
    )
    return [_row_to_key(row) for row in rows]


class KeyService:
    """The SSH keys of each account. A key belongs to at most one account.

    A token never manages keys: one leaked would otherwise let its holder log in for good.
    Operators may name the account (`owner_id`); anyone else works on their own keys.
    """

    def __init__(self, pool: Pool) -> None:
        self._pool = pool

    async def add(
        self,
        actor: Actor,
        line: str,
        name: str | None = None,
        *,
        scopes: Collection[str] | None = None,
        projects: Collection[str] | None = None,
        owner_id: int | None = None,
        conn: Connection | None = None,
    ) -> SSHKey:
        """Add a key; with `scopes` or `projects`, a deploy key limited to them."""
        key = parse_public_key(line)
        return await self.add_parsed(
            actor, key, name, scopes=scopes, projects=projects, owner_id=owner_id, conn=conn
        )

    @records_refusals("key.add", "key")
    async def add_parsed(
        self,
        actor: Actor,
        key: PublicKey,
        name: str | None = None,
        *,
        scopes: Collection[str] | None = None,
        projects: Collection[str] | None = None,
        owner_id: int | None = None,
        conn: Connection | None = None,
    ) -> SSHKey:
        actor.require_change()
        actor.refuse_token("add SSH keys")
        user_id = actor.on_behalf_of(owner_id)
        limited_scopes, limited_projects = deploy_key_limits(scopes, projects)
        label = (name or key.comment or key.algorithm).strip()[:64]
        if not KEY_NAME_PATTERN.match(label):
            raise ValidationError(
                "A key name is 1-64 letters, digits, spaces or . @ + : - _ characters."
            )
        try:
            async with transaction(self._pool, conn) as tx:
                count = await tx.fetchval(
                    "SELECT count(*) FROM ssh_keys WHERE user_id = $1", user_id
                )
                if count >= MAX_KEYS_PER_USER:
                    raise ValidationError(f"An account can have at most {MAX_KEYS_PER_USER} keys.")
                row = await tx.fetchrow(
                    "INSERT INTO ssh_keys"
                    " (user_id, name, algorithm, public_key, fingerprint, scopes, projects)"
                    f" VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING {KEY_COLUMNS}",
                    user_id,
                    label,
                    key.algorithm,
                    key.encoded,
                    key.fingerprint,
                    limited_scopes,
                    limited_projects,
                )
                assert row is not None  # INSERT ... RETURNING always yields the row
                await audit.record(
                    tx,
                    actor,
                    "key.add",
                    audit.Target("key", label, row["id"], user_id),
                    metadata={"fingerprint": key.fingerprint, "algorithm": key.algorithm},
                )
        except asyncpg.UniqueViolationError as error:
            # Same wording whether the key is on this account or another: no account probing.
            raise ConflictError(
                f"The key {key.fingerprint} is already registered to an account."
            ) from error
        assert row is not None  # INSERT ... RETURNING always yields the row
        return _row_to_key(row)

    async def list(
        self, actor: Actor, *, owner_id: int | None = None, conn: Connection | None = None
    ) -> list[SSHKey]:
        actor.refuse_token("list SSH keys")
        user_id = actor.on_behalf_of(owner_id)
        async with reading(self._pool, conn) as reader:
            return await keys_of(reader, user_id)

    async def count(
        self, actor: Actor, *, owner_id: int | None = None, conn: Connection | None = None
    ) -> int:
        actor.refuse_token("list SSH keys")
        user_id = actor.on_behalf_of(owner_id)
        async with reading(self._pool, conn) as reader:
            count: int = await reader.fetchval(
                "SELECT count(*) FROM ssh_keys WHERE user_id = $1", user_id
            )
        return count

    @records_refusals("key.remove", "key")
    async def remove(
        self,
        actor: Actor,
        key_id: int,
        *,
        owner_id: int | None = None,
        conn: Connection | None = None,
    ) -> SSHKey:
        """Remove one of the account's keys; another account's key id is simply not found."""
        actor.require_change()
        actor.refuse_token("remove SSH keys")
        user_id = actor.on_behalf_of(owner_id)
        async with transaction(self._pool, conn) as tx:
            row = await tx.fetchrow(
                f"DELETE FROM ssh_keys WHERE id = $1 AND user_id = $2 RETURNING {KEY_COLUMNS}",
                key_id,
                user_id,
            )
            if row is not None:
                await audit.record(
                    tx,
                    actor,
                    "key.remove",
                    audit.Target("key", row["name"], key_id, user_id),
                    metadata={"fingerprint": row["fingerprint"]},
                )
        if row is None:
            raise NotFoundError("No such key on your account.")
        return _row_to_key(row)

    async def find_owner(self, key: PublicKey) -> int | None:
        """The id of the account this key logs in, marking the key as used."""
        found = await self.find(key)
        return found.user_id if found is not None else None

    async def find(self, key: PublicKey) -> SSHKey | None:
        """The registered key (its account, and its limits if a deploy key), marked as used."""
        async with reading(self._pool) as conn:
            row = await conn.fetchrow(
                "UPDATE ssh_keys SET last_used_at = now() WHERE public_key = $1"
                f" RETURNING {KEY_COLUMNS}",
                key.encoded,
            )
        return _row_to_key(row) if row is not None else None
