"""`logs NAME [--build N] [-f] [--since T] [--tail N]`: the live app's output, or a build's log.

Lines go to stdout (they are what was asked for); with `--json` each is one object per line.
Without `-f`, the app's log stops once its last lines have arrived.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import re
from collections.abc import AsyncGenerator
from datetime import UTC, datetime, timedelta

from commands.base import Context, Noun, Verb, command
from commands.follow import follow, log_text
from commands.output import printable
from commands.parser import CommandParser
from commands.streams import checkpoint

# Without -f: the app's recent lines arrive at once; this long without one means they are all.
SETTLE_SECONDS = 0.5
MAX_TAIL = 10_000
DEFAULT_TAIL = 200
DURATION = re.compile(r"^(\d{1,6})([smhd])$")
UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def since_time(text: str) -> datetime:
    """`--since`: a duration back from now (10m, 2h, 1d) or an ISO 8601 time (UTC if no zone)."""
    duration = DURATION.match(text.strip())
    if duration:
        seconds = int(duration.group(1)) * UNIT_SECONDS[duration.group(2)]
        return datetime.now(UTC) - timedelta(seconds=seconds)
    try:
        moment = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text[:40]!r} is not a time: write 10m, 2h, 1d or 2026-12-03T10:00:00Z"
        ) from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def arguments(parser: CommandParser) -> None:
    parser.add_argument("--build", type=int, metavar="N", help="the build log of deployment N")
    parser.add_argument("-f", "--follow", action="store_true", help="keep printing new lines")
    parser.add_argument(
        "--tail", type=int, help="app lines from the end (default 200; with --since, all)"
    )
    parser.add_argument(
        "--since",
        type=since_time,
        metavar="T",
        help="app lines written after T: 10m, 2h, 1d, or 2026-12-03T10:00:00Z",
    )


def _emit(ctx: Context, text: str) -> None:
    if ctx.out.json_mode:
        for line in text.splitlines():
            ctx.out.json({"line": line})
    else:
        ctx.out.stdout.write(log_text(text))


async def logs(ctx: Context, args: argparse.Namespace) -> None:
    if args.build is not None:
        await build_log(ctx, args)
        return
    tail = args.tail if args.tail is not None else (MAX_TAIL if args.since else DEFAULT_TAIL)
    tail = max(0, min(tail, MAX_TAIL))
    lines = ctx.services.deployments.runtime_logs(ctx.actor, args.project, tail, since=args.since)
    try:
        while True:
            checkpoint()
            try:
                # Not wait_for, which on Python 3.11 can swallow a cancellation (Ctrl-C).
                async with asyncio.timeout(None if args.follow else SETTLE_SECONDS):
                    line = await anext(lines)
            except (StopAsyncIteration, TimeoutError):
                return
            if ctx.out.json_mode:
                ctx.out.json({"line": line})
            else:
                ctx.out.stdout.write(printable(line) + "\n")
            await ctx.out.drain()
    finally:
        if isinstance(lines, AsyncGenerator):  # its `finally` closes the Docker stream
            with contextlib.suppress(Exception):
                await lines.aclose()


async def build_log(ctx: Context, args: argparse.Namespace) -> None:
    if args.follow:
        await follow(ctx, args.project, args.build, lambda text: _emit(ctx, text))
        return
    text, _ = await ctx.services.deployments.build_log(ctx.actor, args.project, args.build)
    _emit(ctx, text)


NOUNS: tuple[Noun, ...] = (
    command(
        "logs", Verb("", "the app's output, or a build's log (--build N)", "logs", logs, arguments)
    ),
)
