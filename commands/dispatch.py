"""Run one command line: split it, parse it, check the actor's rights, run the verb, and
return its exit code. Errors are printed once, here, with the user-facing message."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import logging
import shlex

from commands import exit_codes
from commands.base import Context, Noun, Verb
from commands.nouns import NOUNS
from commands.output import Printer, printable
from commands.parser import CommandParser, ParserExit, UsageError
from commands.streams import ByteSource, NoInput, Output, checkpoint
from core.actor import Actor
from core.audit.entries import Target
from core.errors import PermissionDenied
from core.services import Services

log = logging.getLogger(__name__)

# `exit_codes` too: the SSH server reaches the commands through this module only.
__all__ = ["build_parser", "exit_codes", "run_command", "split"]

PROG = "ssh panel"
INTRO = """\
Commands for scripts and CI. Without a command, `ssh -t` opens the dashboard.
Put `--` before the command so that ssh does not take its flags:

    ssh -p 2222 you@panel -- deploy myapp --wait
"""
# The `admin` scope of an admin's token reaches every tenant's projects: only the `admin`
# noun (core.admin, audited as admin actions) uses it, and `whoami` shows it. Every other
# command acts on the account's own projects, as the token's SFTP tree does.
ADMIN_SCOPE_NOUNS = frozenset({"admin", "whoami"})
EPILOG = (
    "Exit codes: 0 ok, 1 failed, 2 usage, 3 not found, 4 forbidden, 5 suspended or over "
    "a limit, 75 try again later. `help` works at every level: `help env`, `env help`."
)


def build_parser(nouns: tuple[Noun, ...] = NOUNS) -> CommandParser:
    parser = CommandParser(
        prog=PROG,
        description=INTRO,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--json", action="store_true", help="print JSON")
    parser.set_defaults(_parser=parser, _verb=None)
    subparsers = parser.add_subparsers(dest="noun", metavar="COMMAND", parser_class=CommandParser)
    helping = subparsers.add_parser("help", help="this help, or a command's: help env")
    helping.add_argument("topic", nargs="*", help="a command, and a verb")
    helping.set_defaults(_parser=helping, _help=True)
    parser.set_defaults(_help_parser=helping)
    for noun in nouns:
        _add_noun(subparsers, noun)
    return parser


def _add_noun(subparsers: argparse._SubParsersAction[CommandParser], noun: Noun) -> None:
    if noun.is_single:
        verb = noun.verbs[0]
        sub = subparsers.add_parser(
            noun.name, help=noun.help, description=verb.description or noun.help
        )
        _add_verb_arguments(sub, verb, project=verb.project)
        sub.set_defaults(_action=f"command.{noun.name}")
        return
    sub = subparsers.add_parser(noun.name, help=noun.help, description=noun.help)
    if noun.project_first:
        sub.add_argument("project", metavar="NAME", help="the project")
    sub.add_argument("--json", action="store_true", default=argparse.SUPPRESS, help="print JSON")
    sub.set_defaults(_parser=sub, _verb=None, _noun=noun)
    verbs = sub.add_subparsers(dest="verb", metavar="VERB", parser_class=CommandParser)
    verbs.add_parser("help", help=f"help on {noun.name}").set_defaults(_parser=sub, _help=True)
    for verb in noun.verbs:
        verb_parser = verbs.add_parser(
            verb.name, help=verb.help, description=verb.description or verb.help
        )
        _add_verb_arguments(verb_parser, verb, project=verb.project and not noun.project_first)
        verb_parser.set_defaults(_action=f"command.{noun.name}.{verb.name}")


def _add_verb_arguments(parser: CommandParser, verb: Verb, *, project: bool) -> None:
    if project:
        parser.add_argument("project", metavar="NAME", help="the project")
    verb.arguments(parser)
    # SUPPRESS: a `--json` given before the command is not overwritten by this default.
    parser.add_argument("--json", action="store_true", default=argparse.SUPPRESS, help="print JSON")
    if verb.destructive:
        parser.add_argument("--yes", action="store_true", help="confirm: this cannot be undone")
    parser.set_defaults(_parser=parser, _verb=verb)


def split(line: str) -> list[str]:
    """The words of an SSH command line, quoted like a POSIX shell (no expansion of any kind)."""
    try:
        return shlex.split(line, comments=False, posix=True)
    except ValueError as error:  # an unclosed quote
        raise UsageError(f"{PROG}: cannot read the command: {error}.\n") from None


_PARSER: CommandParser | None = None


def parser() -> CommandParser:
    """Built once per process: parsing keeps no state in the parser."""
    global _PARSER
    if _PARSER is None:
        _PARSER = build_parser()
    return _PARSER


async def run_command(
    line: str,
    actor: Actor,
    services: Services,
    streams: Output,
    *,
    stdin: ByteSource | None = None,
    tty: bool = False,
) -> int:
    """Run `line` for `actor`, printing on `streams`; the exit code."""
    out = Printer(streams)
    try:
        args = _parse(split(line))
    except ParserExit as done:
        (streams.stdout if done.status == exit_codes.OK else streams.stderr).write(done.text)
        return done.status
    verb: Verb = args._verb
    if getattr(args, "noun", None) not in ADMIN_SCOPE_NOUNS:
        actor = dataclasses.replace(actor, scopes=actor.scopes - {"admin"})
    out.json_mode = bool(getattr(args, "json", False))
    context = Context(actor, services, out, stdin or NoInput(), tty)
    try:
        await _check(verb, args, actor, services)
        status = await verb.run(context, args)
        checkpoint()  # cancelled (Ctrl-C) while a library swallowed it: not a success
    except asyncio.CancelledError:
        raise
    except UsageError as error:
        streams.stderr.write(error.text)
        return error.status
    except Exception as error:
        status, message = exit_codes.outcome(error)
        if status == exit_codes.FAILED and message == exit_codes.INTERNAL:
            log.exception("command %r of %s failed", printable(line[:200]), actor.label)
        streams.stderr.write(f"{printable(message)}\n")
        return status
    return exit_codes.OK if status is None else status


def _parse(argv: list[str]) -> argparse.Namespace:
    top = parser()
    if not argv:
        raise UsageError(top.format_help())
    args = top.parse_command(argv)
    if getattr(args, "_help", False):
        topic = list(getattr(args, "topic", []))
        if topic:
            top.parse_command([*topic, "--help"])  # raises ParserExit with that help
        helped = top if args._parser is _help_parser(top) else args._parser
        raise ParserExit(exit_codes.OK, helped.format_help())
    if getattr(args, "project", None) == "help":  # `status help`: "help" is no project's name
        raise ParserExit(exit_codes.OK, args._parser.format_help())
    if args._verb is None:  # a noun without its verb
        noun: Noun | None = getattr(args, "_noun", None)
        if noun is None or noun.default is None:
            raise UsageError(args._parser.format_help())
        return top.parse_command(_with_default(argv, noun))
    return args


def _help_parser(top: CommandParser) -> CommandParser | None:
    """The parser of the top-level `help` command."""
    return top._defaults.get("_help_parser")


def _with_default(argv: list[str], noun: Noun) -> list[str]:
    """`env NAME` is `env NAME list`: the default verb goes after the noun (and its NAME)."""
    at = argv.index(noun.name) + 1
    if noun.project_first:
        while at < len(argv) and argv[at].startswith("-"):
            at += 1
        at += 1
    return [*argv[:at], str(noun.default), *argv[at:]]


async def _check(verb: Verb, args: argparse.Namespace, actor: Actor, services: Services) -> None:
    """Every verb's rights, before any service is called (each checks them again). A refusal
    here is audited like one in a service: the attempt never reaches the service to be."""
    try:
        if verb.scope is not None:
            actor.require(verb.scope)
        if verb.project:
            actor.require_project(args.project)
    except PermissionDenied as refused:
        project = getattr(args, "project", None) if verb.project else None
        try:
            await services.audit.record(
                actor,
                args._action,
                Target("project", project) if isinstance(project, str) else None,
                "refused",
                {"reason": type(refused).__name__},
            )
        except Exception as failure:  # the refusal is the answer, recorded or not
            log.warning("could not audit a refused command by %s: %s", actor.label, failure)
        raise
    if verb.destructive and not getattr(args, "yes", False):
        raise UsageError(
            f"{args._parser.prog}: this cannot be undone: add --yes to confirm"
            " (commands do not ask).\n"
        )
