"""What a noun module declares: its verbs, each with its scope, its arguments and its run.

A noun is one module under `commands/nouns/` that exposes `NOUNS`; adding one is that module
and a line in `commands/nouns/__init__.py`. The dispatcher does what every verb needs: it
checks the verb's scope and the project named (`Actor.require`, `Actor.require_project`) before
the services check them again, adds `--json` (and `--yes` to destructive verbs) and turns
errors into exit codes.
"""

from __future__ import annotations

import argparse
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from commands.output import Printer
from commands.parser import CommandParser
from commands.streams import ByteSource
from core.actor import Actor
from core.services import Services


@dataclass(frozen=True)
class Context:
    """One command's world: who runs it, the services, its streams."""

    actor: Actor
    services: Services
    out: Printer
    stdin: ByteSource
    tty: bool = False


Run = Callable[[Context, argparse.Namespace], Awaitable[int | None]]


def no_arguments(parser: CommandParser) -> None:
    pass


@dataclass(frozen=True)
class Verb:
    name: str  # "" when the noun is the command itself (`whoami`, `status NAME`)
    help: str
    # What a token must hold: read, logs, deploy, env:write (None: any actor, as `whoami`).
    scope: str | None
    run: Run
    arguments: Callable[[CommandParser], None] = no_arguments
    # Takes the project NAME as its first argument (checked against a token's projects).
    project: bool = True
    # Changes something that cannot be undone: refused without --yes.
    destructive: bool = False
    description: str = ""


@dataclass(frozen=True)
class Noun:
    name: str
    help: str
    verbs: tuple[Verb, ...] = field(default_factory=tuple)
    # The verb run when none is named (`env NAME` lists); None: a verb is required.
    default: str | None = None
    # `env NAME set ...`: the project comes before the verb (its verbs take no NAME then).
    project_first: bool = False

    @property
    def is_single(self) -> bool:
        """The noun is a command by itself (`status NAME`): one verb without a name."""
        return len(self.verbs) == 1 and self.verbs[0].name == ""


def command(noun: str, verb: Verb) -> Noun:
    """A noun that is a command by itself, run by `verb` (whose name is left empty)."""
    return Noun(noun, verb.help, (verb,))
