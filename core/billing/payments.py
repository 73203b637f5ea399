"""Payments: a provider takes the money, the panel records it (this module owns `payments`).

A payment is created pending (the provider's id and the instructions the user follows), then
confirmed once: from the provider's signed webhook, or by an operator for the manual provider.
Confirming locks the payment's row and posts the top-up under the key
`payment:<provider>:<id>`, so a replayed or concurrent webhook credits once. No card data ever
passes through the panel: the provider's own pages take it.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Literal, Protocol

import asyncpg

from core.actor import Actor
from core.billing import ledger
from core.billing.balances import CreditHook, checked_reason
from core.billing.ledger import NewEntry
from core.billing.money import format_amount, positive
from core.db.pool import Connection, Pool
from core.db.unit import reading, transaction
from core.errors import ConflictError, NotFoundError, PermissionDenied, ValidationError

PAYMENT_COLUMNS = (
    "id, provider, provider_payment_id, user_id, amount, status, ledger_id, created_at,"
    " confirmed_at"
)


@dataclass(frozen=True)
class Payment:
    id: int
    provider: str
    provider_payment_id: str
    user_id: int
    amount: int
    status: Literal["pending", "confirmed", "failed"]
    ledger_id: int | None
    created_at: datetime
    confirmed_at: datetime | None


@dataclass(frozen=True)
class Started:
    """What the provider made of a new payment: its id and what the user does next."""

    provider_payment_id: str
    instructions: str


@dataclass(frozen=True)
class WebhookEvent:
    provider_payment_id: str
    amount: int
    succeeded: bool


class PaymentProvider(Protocol):
    name: str

    def instructions(self, currency: str) -> str:
        """How a user tops up through this provider (shown on the billing screen)."""
        ...

    async def start(self, amount: int, user_id: int, currency: str) -> Started: ...

    def read_webhook(self, body: bytes, signature: str) -> WebhookEvent:
        """The event in a webhook's body; PermissionDenied unless the provider signed it."""
        ...


class ManualProvider:
    """A bank transfer or cash, recorded by an operator (`ghst billing credit`)."""

    name = "manual"

    def __init__(self, instructions: str = "") -> None:
        # The operator's own words (bank details, office hours), else a general text.
        self._instructions = instructions.strip()

    def instructions(self, currency: str) -> str:
        if self._instructions:
            return self._instructions
        return (
            f"Pay in {currency} by bank transfer or in cash to the operator, quoting your"
            " username. The balance grows when the operator records the payment."
        )

    async def start(self, amount: int, user_id: int, currency: str) -> Started:
        reference = f"manual-{uuid.uuid4().hex[:12]}"
        return Started(
            reference,
            f"Pay {format_amount(amount, currency)} by bank transfer or in cash to the operator,"
            f" quoting {reference}. The balance grows when the operator records it.",
        )

    def read_webhook(self, body: bytes, signature: str) -> WebhookEvent:
        raise PermissionDenied("Manual payments are recorded by an operator, not by a webhook.")


class WebhookTestProvider:
    """A provider in-process: its webhook is JSON signed with HMAC-SHA256 under a shared
    secret, the way real providers sign theirs. For tests and demonstrations.

    The signature is `t=<unix time>,v1=<hex HMAC of "<t>." + body>`: the time is signed with
    the body, so a captured webhook replayed later than MAX_AGE is refused, and one replayed
    sooner changes nothing (a payment is confirmed once)."""

    name = "test"
    MAX_AGE = 300.0  # seconds a signed webhook stays acceptable (clocks a little apart too)

    def __init__(self, secret: bytes) -> None:
        self._secret = secret

    def instructions(self, currency: str) -> str:
        return f"Test payments in {currency} are confirmed by the test provider's webhook."

    async def start(self, amount: int, user_id: int, currency: str) -> Started:
        payment_id = f"test-{uuid.uuid4().hex}"
        return Started(payment_id, f"Test payment {payment_id}: the test provider confirms it.")

    def _mac(self, stamp: str, body: bytes) -> str:
        return hmac.new(self._secret, stamp.encode() + b"." + body, hashlib.sha256).hexdigest()

    def sign(self, body: bytes, at: float | None = None) -> str:
        stamp = str(int(time.time() if at is None else at))
        return f"t={stamp},v1={self._mac(stamp, body)}"

    def _verify(self, body: bytes, signature: str) -> None:
        parts = dict(part.partition("=")[::2] for part in signature.strip().split(","))
        stamp, mac = parts.get("t", ""), parts.get("v1", "")
        if not (stamp.isdigit() and len(stamp) <= 12) or not hmac.compare_digest(
            self._mac(stamp, body), mac
        ):
            raise PermissionDenied("The webhook's signature is wrong.")
        if abs(time.time() - int(stamp)) > self.MAX_AGE:
            raise PermissionDenied("The webhook is too old: a replay is refused.")

    def webhook(self, provider_payment_id: str, amount: int, succeeded: bool = True) -> bytes:
        """The body the provider would post."""
        event = {"payment_id": provider_payment_id, "amount": amount, "succeeded": succeeded}
        return json.dumps(event).encode()

    def read_webhook(self, body: bytes, signature: str) -> WebhookEvent:
        self._verify(body, signature)
        try:
            event = json.loads(body)
            return WebhookEvent(
                str(event["payment_id"]), int(event["amount"]), bool(event["succeeded"])
            )
        except (ValueError, KeyError, TypeError) as error:
            raise ValidationError("The webhook's body is not a payment event.") from error


def _payment(row: asyncpg.Record) -> Payment:
    return Payment(**dict(row))


class PaymentService:
    def __init__(
        self,
        pool: Pool,
        providers: list[PaymentProvider],
        currency: str,
        *,
        after_payment: CreditHook | None = None,
    ) -> None:
        self._pool = pool
        # Runs in the confirming transaction: takes back promised payments, resumes projects.
        self._after_payment = after_payment
        self._providers = {provider.name: provider for provider in providers}
        self._currency = currency

    def _provider(self, name: str) -> PaymentProvider:
        try:
            return self._providers[name]
        except KeyError:
            raise NotFoundError(f"No payment provider {name!r}.") from None

    def instructions(self) -> list[tuple[str, str]]:
        """(provider, how to top up through it) for each provider this panel offers."""
        return [
            (name, provider.instructions(self._currency))
            for name, provider in self._providers.items()
        ]

    async def start(
        self, actor: Actor, amount: int, provider: str = "manual", *, conn: Connection | None = None
    ) -> tuple[Payment, str]:
        """A pending top-up of the actor's own account: the payment and what to do next."""
        actor.require_change()
        actor.refuse_token("start a payment")
        user_id = actor.owner_id
        amount = positive(amount)
        started = await self._provider(provider).start(amount, user_id, self._currency)
        async with transaction(self._pool, conn) as tx:
            row = await tx.fetchrow(
                "INSERT INTO payments (provider, provider_payment_id, user_id, amount)"
                f" VALUES ($1, $2, $3, $4) RETURNING {PAYMENT_COLUMNS}",
                provider, started.provider_payment_id, user_id, amount,
            )  # fmt: skip
        assert row is not None
        return _payment(row), started.instructions

    async def webhook(self, provider: str, body: bytes, signature: str) -> Payment:
        """Confirm (or fail) a payment from its provider's webhook; a replay changes nothing."""
        event = self._provider(provider).read_webhook(body, signature)
        async with transaction(self._pool) as tx:
            payment = await self._locked(tx, provider, event.provider_payment_id)
            if payment is None:
                raise NotFoundError("No such payment.")
            if payment.status != "pending":
                return payment
            if not event.succeeded:
                return await self._set_failed(tx, payment)
            if event.amount != payment.amount:
                raise ValidationError("The webhook's amount is not the payment's.")
            return await self._confirm(tx, payment, f"provider:{provider}", "payment")

    async def record_manual(
        self,
        actor: Actor,
        user_id: int,
        amount: int,
        reason: str,
        *,
        reference: str | None = None,
        conn: Connection | None = None,
    ) -> tuple[Payment, bool]:
        """An operator records money received (a transfer, cash): (the payment, whether it was
        new). The same `reference` recorded again credits nothing more."""
        actor.require_change()
        if actor.kind not in ("admin", "system"):
            raise PermissionDenied("Only an operator can record a payment.")
        amount = positive(amount)
        reason = checked_reason(reason)
        reference = (reference or f"manual-{uuid.uuid4().hex[:12]}").strip()
        if not 1 <= len(reference) <= 100:
            raise ValidationError("A payment reference is 1 to 100 characters.")
        async with transaction(self._pool, conn) as tx:
            await tx.execute(
                "INSERT INTO payments (provider, provider_payment_id, user_id, amount)"
                " VALUES ('manual', $1, $2, $3) ON CONFLICT (provider, provider_payment_id)"
                " DO NOTHING",
                reference, user_id, amount,
            )  # fmt: skip
            payment = await self._locked(tx, "manual", reference)
            assert payment is not None
            if (payment.user_id, payment.amount) != (user_id, amount):
                raise ConflictError(f"Reference {reference!r} was recorded for another payment.")
            if payment.status == "confirmed":
                return payment, False
            return await self._confirm(tx, payment, actor.label, reason), True

    async def list(
        self, actor: Actor, *, owner_id: int | None = None, conn: Connection | None = None
    ) -> list[Payment]:
        actor.require("read")
        user_id = actor.on_behalf_of(owner_id)
        async with reading(self._pool, conn) as db:
            rows = await db.fetch(
                f"SELECT {PAYMENT_COLUMNS} FROM payments WHERE user_id = $1"
                " ORDER BY id DESC LIMIT 100",
                user_id,
            )
        return [_payment(row) for row in rows]

    async def _locked(self, tx: Connection, provider: str, payment_id: str) -> Payment | None:
        row = await tx.fetchrow(
            f"SELECT {PAYMENT_COLUMNS} FROM payments"
            " WHERE provider = $1 AND provider_payment_id = $2 FOR UPDATE",
            provider,
            payment_id,
        )
        return _payment(row) if row else None

    async def _confirm(self, tx: Connection, payment: Payment, actor: str, reason: str) -> Payment:
        entry, _ = await ledger.post(
            tx,
            NewEntry(
                payment.user_id,
                "topup",
                payment.amount,
                f"payment:{payment.provider}:{payment.provider_payment_id}",
                actor,
                reason,
            ),
        )
        row = await tx.fetchrow(
            "UPDATE payments SET status = 'confirmed', ledger_id = $2, confirmed_at = now()"
            f" WHERE id = $1 RETURNING {PAYMENT_COLUMNS}",
            payment.id,
            entry.id,
        )
        assert row is not None
        if self._after_payment is not None:
            await self._after_payment(tx, payment.user_id)
        return _payment(row)

    async def _set_failed(self, tx: Connection, payment: Payment) -> Payment:
        row = await tx.fetchrow(
            f"UPDATE payments SET status = 'failed' WHERE id = $1 RETURNING {PAYMENT_COLUMNS}",
            payment.id,
        )
        assert row is not None
        return _payment(row)
