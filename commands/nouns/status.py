"""`status NAME`: the project's state, what is live and the newest attempt."""

from __future__ import annotations

import argparse

from commands import shapes
from commands.base import Context, Noun, Verb, command
from commands.output import pairs


async def status(ctx: Context, args: argparse.Namespace) -> None:
    found = await ctx.services.deployments.status(ctx.actor, args.project)
    data = {
        "project": args.project,
        "state": str(found.state),
        "url": found.url,
        "live": shapes.deployment(found.live) if found.live else None,
        "latest": shapes.deployment(found.latest) if found.latest else None,
    }
    latest = found.latest
    text = pairs(
        [
            ("State", str(found.state)),
            ("URL", found.url),
            ("Live", f"#{found.live.id} {found.live.archive_name}" if found.live else None),
            ("Latest", f"#{latest.id} {latest.archive_name} {latest.state}" if latest else None),
            ("Error", latest.error if latest and latest.error else None),
        ]
    )
    ctx.out.result(data, text)


NOUNS: tuple[Noun, ...] = (
    command("status", Verb("", "a project's state and URL", "read", status)),
)
