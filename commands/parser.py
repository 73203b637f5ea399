"""The one argument parser: argparse that never prints to the process or exits it.

argparse writes help and errors to `sys.stdout`/`sys.stderr` and calls `sys.exit`; inside the
SSH server that would write on the server's own terminal and end every session. Here each of
those raises instead, and the dispatcher prints what it carries on the command's own streams.
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any, NoReturn

from commands.exit_codes import OK, USAGE

if TYPE_CHECKING:
    from _typeshed import SupportsWrite


class ParserExit(Exception):
    """The parser is done: `text` goes to stdout (help, status 0) or stderr (an error)."""

    def __init__(self, status: int, text: str) -> None:
        super().__init__(text)
        self.status = status
        self.text = text


class UsageError(ParserExit):
    def __init__(self, text: str) -> None:
        super().__init__(USAGE, text)


class CommandParser(argparse.ArgumentParser):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("allow_abbrev", False)  # `--y` must not mean `--yes`
        super().__init__(*args, **kwargs)

    def exit(self, status: int = 0, message: str | None = None) -> NoReturn:
        if status == OK:
            raise ParserExit(OK, message or "")
        raise UsageError(message or "")

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{self.format_usage()}{self.prog}: {message}\n")

    def print_help(self, file: SupportsWrite[str] | None = None) -> None:
        raise ParserExit(OK, self.format_help())

    def print_usage(self, file: SupportsWrite[str] | None = None) -> None:
        raise ParserExit(OK, self.format_usage())

    def _print_message(self, message: str, file: SupportsWrite[str] | None = None) -> None:
        raise ParserExit(OK, message)

    def print_message(self, message: str) -> None:
        self._print_message(message)

    def parse_command(self, argv: list[str]) -> argparse.Namespace:
        """`parse_args`, with words left over reported by the command they were given to."""
        args, extras = self.parse_known_args(argv)
        if extras:
            parser: CommandParser = getattr(args, "_parser", self)
            parser.error(f"unrecognized arguments: {' '.join(extras)}")
        return args
