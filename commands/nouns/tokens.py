"""`tokens list|create|revoke`: the account's access tokens for scripts and CI. A token itself
is refused (core's AccessTokenService): only the person manages tokens."""

from __future__ import annotations

import argparse

from commands.base import Context, Noun, Verb
from commands.parser import CommandParser
from core.identity.access_tokens import AccessToken, parse_lifetime, parse_scopes

COLUMNS = [
    ("NAME", "name"),
    ("PREFIX", "prefix"),
    ("SCOPES", "scopes"),
    ("PROJECTS", "projects"),
    ("LAST USED", "last_used_at"),
    ("EXPIRES", "expires_at"),
]


def record(token: AccessToken) -> dict[str, object]:
    return {
        "name": token.name,
        "prefix": token.prefix,
        "scopes": ",".join(sorted(token.scopes)),
        "projects": ",".join(sorted(token.projects)) if token.projects is not None else "all",
        "created_at": token.created_at,
        "last_used_at": token.last_used_at,
        "expires_at": token.expires_at,
    }


async def list_tokens(ctx: Context, args: argparse.Namespace) -> None:
    found = await ctx.services.access_tokens.list(ctx.actor)
    ctx.out.records([record(token) for token in found], COLUMNS, "You have no access tokens.")


def create_arguments(parser: CommandParser) -> None:
    parser.add_argument("name", metavar="NAME", help="what the token is for, e.g. ci")
    parser.add_argument(
        "--scope",
        required=True,
        help="comma-separated: read, logs, deploy, env:write, admin",
    )
    parser.add_argument(
        "--project",
        action="append",
        metavar="P",
        help="limit the token to this project (repeat for several; default: every project)",
    )
    parser.add_argument(
        "--expires-in", default="90d", help="lifetime: 90d (default), 2w, 12h; at most 365d"
    )


async def create(ctx: Context, args: argparse.Namespace) -> None:
    created = await ctx.services.access_tokens.create(
        ctx.actor,
        args.name,
        parse_scopes(args.scope),
        projects=args.project,
        lifetime=parse_lifetime(args.expires_in),
    )
    # The secret is the command's data (stdout), so `ssh panel tokens create ci ... > file`
    # keeps it and nothing else; the warning goes to stderr.
    ctx.out.result({**record(created.token), "token": created.secret}, created.secret)
    ctx.out.notice(
        f"Created token {created.token.name}: copy it now, it is not shown again."
        " Use it as the SSH password of your account for commands."
    )


def revoke_arguments(parser: CommandParser) -> None:
    parser.add_argument("name", metavar="NAME", help="the token's name")


async def revoke(ctx: Context, args: argparse.Namespace) -> None:
    revoked = await ctx.services.access_tokens.revoke(ctx.actor, args.name)
    ctx.out.result(record(revoked), "")
    ctx.out.notice(f"Revoked token {revoked.name}: its open connections close within seconds.")


NOUNS: tuple[Noun, ...] = (
    Noun(
        "tokens",
        "access tokens for scripts and CI: list, create, revoke",
        (
            Verb("list", "your access tokens (never their secrets)", "read", list_tokens,
                 project=False),
            Verb("create", "a new token, printed once", "read", create, create_arguments,
                 project=False),
            Verb("revoke", "revoke a token and end its connections", "read", revoke,
                 revoke_arguments, project=False, destructive=True),
        ),
        default="list",
    ),
)  # fmt: skip
