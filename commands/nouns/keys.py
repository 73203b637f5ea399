"""`keys list|add|rm`: the account's SSH keys. A token is refused (core's KeyService): keys
stay with the person, so a leaked token cannot let someone else in."""

from __future__ import annotations

import argparse

from commands.base import Context, Noun, Verb
from commands.parser import CommandParser
from core.errors import NotFoundError, ValidationError
from core.identity.access_tokens import parse_scopes
from core.identity.keys import SSHKey

COLUMNS = [
    ("ID", "id"),
    ("NAME", "name"),
    ("FINGERPRINT", "fingerprint"),
    ("ADDED", "created_at"),
    ("LAST USED", "last_used_at"),
]
MAX_KEY_LINE = 16 * 1024


def record(key: SSHKey) -> dict[str, object]:
    shown: dict[str, object] = {
        "id": key.id,
        "name": key.name,
        "algorithm": key.algorithm,
        "fingerprint": key.fingerprint,
        "created_at": key.created_at,
        "last_used_at": key.last_used_at,
    }
    if key.scopes is not None or key.projects is not None:  # a deploy key says what it may do
        shown["scopes"] = sorted(key.scopes) if key.scopes is not None else None
        shown["projects"] = sorted(key.projects) if key.projects is not None else None
    return shown


async def list_keys(ctx: Context, args: argparse.Namespace) -> None:
    found = await ctx.services.keys.list(ctx.actor)
    ctx.out.records([record(key) for key in found], COLUMNS)


def add_arguments(parser: CommandParser) -> None:
    parser.add_argument("line", nargs="*", help="the public key line (default: read from stdin)")
    parser.add_argument("--name", help="a name for the key (default: its comment)")
    parser.add_argument(
        "--project",
        action="append",
        metavar="P",
        help="a deploy key: its logins reach only this project (repeat for several)",
    )
    parser.add_argument(
        "--scope",
        help="a deploy key: what its logins may do, e.g. deploy or read,logs (never admin)",
    )


async def add(ctx: Context, args: argparse.Namespace) -> None:
    line = " ".join(args.line) if args.line else await _read_line(ctx)
    scopes = parse_scopes(args.scope) if args.scope is not None else None
    if args.project and scopes is None:
        scopes = frozenset({"deploy"})  # a deploy key, as `--project P` alone suggests
    key = await ctx.services.keys.add(
        ctx.actor, line, args.name, scopes=scopes, projects=args.project
    )
    ctx.out.result(record(key), key.fingerprint)
    ctx.out.notice(f"Added key {key.name} ({key.fingerprint}).")


async def _read_line(ctx: Context) -> str:
    data = b""
    while len(data) <= MAX_KEY_LINE:
        chunk = await ctx.stdin.read()
        if not chunk:
            break
        data += chunk
    if len(data) > MAX_KEY_LINE:
        raise ValidationError("That is too long to be a public key line.")
    return data.decode("utf-8", "replace").strip()


def rm_arguments(parser: CommandParser) -> None:
    parser.add_argument("key", metavar="KEY", help="the key's id, name or SHA256 fingerprint")


async def rm(ctx: Context, args: argparse.Namespace) -> None:
    keys = await ctx.services.keys.list(ctx.actor)
    chosen = [k for k in keys if args.key in (str(k.id), k.name, k.fingerprint)]
    if len(chosen) != 1:
        raise NotFoundError(
            "No such key on your account."
            if not chosen
            else f"Several keys are named {args.key!r}: name one by its id."
        )
    removed = await ctx.services.keys.remove(ctx.actor, chosen[0].id)
    ctx.out.result(record(removed), "")
    ctx.out.notice(f"Removed key {removed.name} ({removed.fingerprint}).")


NOUNS: tuple[Noun, ...] = (
    Noun(
        "keys",
        "your SSH keys (and deploy keys): list, add, rm",
        (
            Verb("list", "your SSH keys", "read", list_keys, project=False),
            Verb(
                "add",
                "add a public key (argument or stdin)",
                "read",
                add,
                add_arguments,
                project=False,
            ),
            Verb("rm", "remove a key", "read", rm, rm_arguments, project=False, destructive=True),
        ),
        default="list",
    ),
)
