"""ServiceSet: the front ends' view of the panel keeps the services and drops the rest."""

from __future__ import annotations

import dataclasses
from types import SimpleNamespace

from core.services import Services, ServiceSet

NAMES = [
    "settings",
    "accounts",
    "keys",
    "sessions",
    "projects",
    "archives",
    "env",
    "deployments",
    "events",
    "plans",
    "subscriptions",
    "balances",
    "payments",
    "promised",
    "invoices",
    "access_tokens",
    "audit",
    "admin",
]


def test_the_set_holds_exactly_what_the_protocol_names() -> None:
    declared = [name for name, member in vars(Services).items() if isinstance(member, property)]
    assert sorted(declared) == sorted(NAMES)
    assert [field.name for field in dataclasses.fields(ServiceSet)] == NAMES


def test_of_keeps_the_same_services_and_nothing_else() -> None:
    services = {name: object() for name in NAMES}
    infrastructure = {name: object() for name in ("pool", "redis", "engine", "router", "queue")}
    source = SimpleNamespace(**services, **infrastructure)
    kept = ServiceSet.of(source)  # type: ignore[arg-type]
    assert all(getattr(kept, name) is value for name, value in services.items())
    assert [name for name in infrastructure if hasattr(kept, name)] == []
    assert ServiceSet.of(kept) == kept
