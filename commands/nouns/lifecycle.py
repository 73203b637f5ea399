"""`start|stop|restart NAME`: what runs. Stop and start wait for a worker to carry them out;
restart is a deployment of the live image (`--wait` follows it like `deploy --wait`)."""

from __future__ import annotations

import argparse

from commands import shapes
from commands.base import Context, Noun, Verb, command
from commands.nouns.deploy import report, wait_argument


async def start(ctx: Context, args: argparse.Namespace) -> None:
    done = await ctx.services.deployments.start(ctx.actor, args.project)
    ctx.out.result(shapes.deployment(done), "")
    ctx.out.notice(f"{args.project} started.")


async def stop(ctx: Context, args: argparse.Namespace) -> None:
    done = await ctx.services.deployments.stop(ctx.actor, args.project)
    ctx.out.result(shapes.deployment(done), "")
    ctx.out.notice(f"{args.project} stopped: its address answers 503 until `start {args.project}`.")


async def restart(ctx: Context, args: argparse.Namespace) -> int:
    queued = await ctx.services.deployments.restart(ctx.actor, args.project)
    return await report(ctx, args, queued)


NOUNS: tuple[Noun, ...] = (
    command("start", Verb("", "start a stopped project again", "deploy", start)),
    command("stop", Verb("", "stop what runs (start brings it back)", "deploy", stop)),
    command(
        "restart", Verb("", "new containers from the live image", "deploy", restart, wait_argument)
    ),
)
