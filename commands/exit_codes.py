"""The exit codes of commands, and the one place an exception becomes one.

    0 ok   1 failed   2 usage   3 not found   4 forbidden or out of scope
    5 suspended or over limit   75 try again later (a backing service is down)

A `PanelError` carries its code (core/errors.py, shared with the operators' `ghst`); an
infrastructure error that escaped a service means "try again later"; anything else is a bug.
"""

from __future__ import annotations

import asyncio

import asyncpg

from core.errors import PanelError

OK = 0
FAILED = 1
USAGE = 2
NOT_FOUND = 3
FORBIDDEN = 4
LIMITED = 5
TRY_LATER = 75
INTERRUPTED = 130  # Ctrl-C, as shells report SIGINT

UNAVAILABLE = "The panel is temporarily unavailable. Please try again in a moment."
INTERNAL = "ghst hit an internal error running this command. Please try again."

# A service reached past its own handling: the database, Redis or a socket went away.
INFRASTRUCTURE_ERRORS: tuple[type[BaseException], ...] = (
    OSError,
    asyncio.TimeoutError,
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    asyncpg.CannotConnectNowError,
)


def outcome(error: Exception) -> tuple[int, str]:
    """The exit code and the message for the user of an error a command raised."""
    if isinstance(error, PanelError):
        return error.exit_code, error.message
    if isinstance(error, INFRASTRUCTURE_ERRORS):
        return TRY_LATER, UNAVAILABLE
    return FAILED, INTERNAL
