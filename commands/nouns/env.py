"""`env NAME [list [--reveal]|set K=V...|unset K... --yes]`: a project's environment variables.

Values are masked unless `--reveal`, which needs the right to change them (`env:write`): a
token that may only read sees names, not secrets. Changes apply at the next deploy or restart.
"""

from __future__ import annotations

import argparse

from commands.base import Context, Noun, Verb
from commands.parser import CommandParser, UsageError
from core.projects.env_vars import EnvVar

COLUMNS = [("NAME", "name"), ("VALUE", "value")]


def list_arguments(parser: CommandParser) -> None:
    parser.add_argument("--reveal", action="store_true", help="show the values (needs env:write)")


async def list_vars(ctx: Context, args: argparse.Namespace) -> None:
    if args.reveal:
        ctx.actor.require("env:write")
    found = await ctx.services.env.list(ctx.actor, args.project)
    records = [{"name": var.name, "value": _shown(var, args.reveal)} for var in found]
    ctx.out.records(records, COLUMNS, empty=f"{args.project} has no variables.")


def _shown(var: EnvVar, reveal: bool) -> str:
    return var.value if reveal else var.masked


def set_arguments(parser: CommandParser) -> None:
    parser.add_argument("assignments", nargs="+", metavar="K=V", help="variables to set")


async def set_vars(ctx: Context, args: argparse.Namespace) -> None:
    pairs = []
    for assignment in args.assignments:
        name, equals, value = assignment.partition("=")
        if not equals:
            raise UsageError(f"{args._parser.prog}: {assignment[:60]!r} is not NAME=VALUE\n")
        pairs.append((name, value))
    for name, value in pairs:  # each checked and written by the service, as in the dashboard
        await ctx.services.env.set(ctx.actor, args.project, name, value)
    names = [name for name, _ in pairs]
    ctx.out.result({"project": args.project, "set": names}, "")
    ctx.out.notice(
        f"Set {', '.join(names)} on {args.project}: applies at the next deploy or restart."
    )


def unset_arguments(parser: CommandParser) -> None:
    parser.add_argument("names", nargs="+", metavar="K", help="variables to remove")


async def unset_vars(ctx: Context, args: argparse.Namespace) -> None:
    for name in args.names:
        await ctx.services.env.unset(ctx.actor, args.project, name)
    ctx.out.result({"project": args.project, "unset": list(args.names)}, "")
    ctx.out.notice(f"Removed {', '.join(args.names)} from {args.project}.")


NOUNS: tuple[Noun, ...] = (
    Noun(
        "env",
        "a project's environment variables: env NAME list|set K=V...|unset K...",
        (
            Verb(
                "list",
                "the variables (values hidden unless --reveal)",
                "read",
                list_vars,
                list_arguments,
            ),
            Verb("set", "set variables: K=V...", "env:write", set_vars, set_arguments),
            Verb(
                "unset",
                "remove variables",
                "env:write",
                unset_vars,
                unset_arguments,
                destructive=True,
            ),
        ),
        default="list",
        project_first=True,
    ),
)
