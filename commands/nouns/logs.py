"""`logs NAME [--build N] [-f] [--tail N]`: the live app's output, or a build's log.

Lines go to stdout (they are what was asked for); with `--json` each is one object per line.
Without `-f`, the app's log stops once its last lines have arrived.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
from collections.abc import AsyncGenerator

from commands.base import Context, Noun, Verb, command
from commands.follow import follow, log_text
from commands.output import printable
from commands.parser import CommandParser
from commands.streams import checkpoint

# Without -f: the app's recent lines arrive at once; this long without one means they are all.
SETTLE_SECONDS = 0.5
MAX_TAIL = 10_000


def arguments(parser: CommandParser) -> None:
    parser.add_argument("--build", type=int, metavar="N", help="the build log of deployment N")
    parser.add_argument("-f", "--follow", action="store_true", help="keep printing new lines")
    parser.add_argument(
        "--tail", type=int, default=200, help="app lines from the end (default 200)"
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
    tail = max(0, min(args.tail, MAX_TAIL))
    lines = ctx.services.deployments.runtime_logs(ctx.actor, args.project, tail)
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
