"""How to top up: each provider says it, and the operator words the manual one."""

from __future__ import annotations

from typing import cast

from core.billing.payments import ManualProvider, PaymentService, WebhookTestProvider
from core.db.pool import Pool
from core.settings import Settings

BANK = "Pay to Example Hosting LLC, account 40702810000000000001, quoting your username."


def test_the_operator_words_the_manual_instructions() -> None:
    settings = Settings.load({"GHST_BILLING_MANUAL_INSTRUCTIONS": BANK})
    assert settings.billing_manual_instructions == BANK
    assert ManualProvider(settings.billing_manual_instructions).instructions("RUB") == BANK


def test_without_words_the_manual_provider_explains_itself() -> None:
    text = ManualProvider().instructions("EUR")
    assert "EUR" in text and "operator" in text
    assert ManualProvider("   ").instructions("RUB") == ManualProvider().instructions("RUB")


def test_the_service_lists_every_providers_instructions() -> None:
    providers = [ManualProvider(BANK), WebhookTestProvider(b"secret")]
    service = PaymentService(cast(Pool, None), providers, "RUB")  # instructions need no database
    listed = service.instructions()
    assert [name for name, _ in listed] == ["manual", "test"]
    assert listed[0][1] == BANK
