"""Every noun, one module each: a new one is a module exposing `NOUNS` and a line here."""

from __future__ import annotations

from commands.base import Noun
from commands.nouns import (
    admin,
    audit,
    billing,
    deploy,
    env,
    keys,
    lifecycle,
    logs,
    projects,
    status,
    tokens,
    upload,
    whoami,
)

NOUNS: tuple[Noun, ...] = (
    *whoami.NOUNS,
    *projects.NOUNS,
    *upload.NOUNS,
    *deploy.NOUNS,
    *status.NOUNS,
    *logs.NOUNS,
    *lifecycle.NOUNS,
    *env.NOUNS,
    *keys.NOUNS,
    *billing.NOUNS,
    *tokens.NOUNS,
    *audit.NOUNS,
    *admin.NOUNS,
)
