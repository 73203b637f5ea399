"""`whoami`: the account (and, for a token, its scopes and projects) a command runs as."""

from __future__ import annotations

import argparse

from commands.base import Context, Noun, Verb, command
from commands.output import pairs


async def whoami(ctx: Context, args: argparse.Namespace) -> None:
    user = await ctx.services.accounts.get(ctx.actor.owner_id)
    projects = sorted(ctx.actor.projects) if ctx.actor.projects is not None else None
    # A person holds every scope; `admin` only means something for operators.
    scopes = sorted(s for s in ctx.actor.scopes if s != "admin" or ctx.actor.is_operator)
    data = {
        "username": user.username,
        "email": user.email,
        "actor": ctx.actor.kind,
        "scopes": scopes,
        "projects": projects,
    }
    text = pairs(
        [
            ("Username", user.username),
            ("Email", user.email),
            ("As", ctx.actor.label),
            ("Scopes", ", ".join(scopes)),
            ("Projects", ", ".join(projects) if projects is not None else "all"),
        ]
    )
    ctx.out.result(data, text)


NOUNS: tuple[Noun, ...] = (
    command("whoami", Verb("", "who you are logged in as", None, whoami, project=False)),
)
