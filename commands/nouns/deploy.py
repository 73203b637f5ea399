"""`deploy NAME [--version V] [--wait]`, `deployments NAME`, `rollback NAME [DEPLOYMENT]`,
`cancel NAME`: the deployments of a project.

With `--wait` the command follows the build and exits 0 once the version is live, 1 if it
failed or was cancelled. The build log goes to stderr as it comes (progress for the person
watching the CI job), the deployment to stdout (data for the script).
"""

from __future__ import annotations

import argparse

from commands import exit_codes, shapes
from commands.base import Context, Noun, Verb, command
from commands.follow import SUCCESS, follow, log_text, watcher
from commands.parser import CommandParser
from core.deploy.model import ACTIVE_STATES, Deployment
from core.errors import NotFoundError, ValidationError

COLUMNS = [
    ("ID", "id"),
    ("VERSION", "version"),
    ("REASON", "reason"),
    ("STATE", "state"),
    ("CREATED", "created_at"),
    ("ERROR", "error"),
]


def wait_argument(parser: CommandParser) -> None:
    parser.add_argument(
        "--wait", action="store_true", help="follow it; exit 0 once live, 1 if it failed"
    )


def deploy_arguments(parser: CommandParser) -> None:
    parser.add_argument(
        "--version", help="the version to deploy (v3, 3, v3-app.zip; default: the newest)"
    )
    wait_argument(parser)


async def report(ctx: Context, args: argparse.Namespace, queued: Deployment) -> int:
    """Print the queued deployment, or follow it with --wait: the exit code."""
    if not getattr(args, "wait", False):
        ctx.out.result(shapes.deployment(queued), str(queued.id))
        ctx.out.notice(
            f"Queued deployment #{queued.id} of {queued.project} ({queued.archive_name})."
        )
        return exit_codes.OK
    ctx.out.notice(f"Deployment #{queued.id} of {queued.project} ({queued.archive_name}) queued.")
    stderr = ctx.out.notice_stream
    emit = (lambda text: stderr.write(log_text(text))) if ctx.actor.may("logs") else None
    ended = await follow(ctx, queued.project, queued.id, emit)
    ctx.out.result(shapes.deployment(ended), str(ended.id))
    if ended.state in SUCCESS:
        ctx.out.notice(f"Deployment #{ended.id} is live.")
        return exit_codes.OK
    ctx.out.notice(f"Deployment #{ended.id} {ended.state}: {ended.error or 'no reason given'}")
    return exit_codes.FAILED


async def deploy(ctx: Context, args: argparse.Namespace) -> int:
    queued = await ctx.services.deployments.deploy(ctx.actor, args.project, args.version)
    return await report(ctx, args, queued)


async def deployments(ctx: Context, args: argparse.Namespace) -> None:
    found = await ctx.services.deployments.list(ctx.actor, args.project)
    records = [shapes.deployment(deployment) for deployment in found]
    ctx.out.records(records, COLUMNS, empty=f"{args.project} has no deployments yet.")


def rollback_arguments(parser: CommandParser) -> None:
    parser.add_argument(
        "deployment",
        nargs="?",
        type=int,
        metavar="DEPLOYMENT",
        help="the deployment to go back to (default: the last one live before the current)",
    )
    wait_argument(parser)


async def rollback(ctx: Context, args: argparse.Namespace) -> int:
    target = args.deployment
    if target is None:
        history = await ctx.services.deployments.list(watcher(ctx.actor), args.project)
        live = next((d for d in history if d.state == "running"), None)
        earlier = [d for d in history if d.can_roll_back_to and (live is None or d.id != live.id)]
        if not earlier:
            raise ValidationError(f"{args.project} has no earlier deployment to roll back to.")
        target = earlier[0].id
    queued = await ctx.services.deployments.rollback(ctx.actor, args.project, target)
    return await report(ctx, args, queued)


async def cancel(ctx: Context, args: argparse.Namespace) -> None:
    history = await ctx.services.deployments.list(watcher(ctx.actor), args.project)
    active = [d for d in history if d.state in ACTIVE_STATES]
    if not active:
        raise NotFoundError(f"{args.project} has no deployment queued or building.")
    cancelled = await ctx.services.deployments.cancel(ctx.actor, args.project, active[0].id)
    ctx.out.result(shapes.deployment(cancelled), str(cancelled.id))
    ctx.out.notice(f"Deployment #{cancelled.id}: {cancelled.state}.")


NOUNS: tuple[Noun, ...] = (
    command(
        "deploy",
        Verb("", "deploy a version (the newest by default)", "deploy", deploy, deploy_arguments),
    ),
    command("deployments", Verb("", "a project's deployments, newest first", "read", deployments)),
    command(
        "rollback",
        Verb("", "run an earlier deployment's image again", "deploy", rollback, rollback_arguments),
    ),
    command("cancel", Verb("", "cancel the deployment queued or building", "deploy", cancel)),
)
