"""`admin ...`: the operators' app for scripts, over the same `core.admin` service.

Who may: an admin logged in with a key or a password, or a token with the `admin` scope of an
admin (a user's token never keeps that scope). An operator may run the read verbs. Everybody
else is refused by core.admin, which audits each refused attempt as `admin.<method>`; the
verbs therefore name no scope of their own for the dispatcher to check first. A token also
needs the scope the owning service asks for (`deploy` to stop, start, change a plan...).
"""

from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Callable
from typing import Any

from commands import shapes
from commands.base import Context, Noun, Run, Verb, no_arguments
from commands.nouns.audit import show_events
from commands.parser import CommandParser
from core.actor import Actor
from core.admin.read_models import MAX_PAGE, PAGE_SIZE, ProjectFilter, ProjectRow, UserRow
from core.billing.money import format_amount, parse_amount
from core.identity.accounts import User

HELP = "operators' commands: users, projects, block, role, credit, plan, stop, deploys, audit"
USER_COLUMNS = [
    ("USER", "username"),
    ("ROLE", "role"),
    ("BLOCKED", "blocked"),
    ("BALANCE", "balance"),
    ("PROJECTS", "projects"),
    ("KEYS", "keys"),
    ("SESSIONS", "sessions"),
    ("EMAIL", "email"),
]
PROJECT_COLUMNS = [
    ("NAME", "name"),
    ("USER", "username"),
    ("STATE", "state"),
    ("PLAN", "plan"),
    ("SUSPENDED", "suspended"),
    ("LAST DEPLOY", "last_deployment_state"),
]
DEPLOY_COLUMNS = [
    ("ID", "id"),
    ("PROJECT", "project"),
    ("USER", "username"),
    ("OPERATION", "operation"),
    ("STATE", "state"),
    ("WORKER", "worker"),
    ("CREATED", "created_at"),
]


async def staff(ctx: Context) -> Actor:
    """The command's actor as the admin app sees it. A key or password login acts as the
    account's role allows (read again now: a role changed since ends the login anyway); a
    token keeps what its login granted. Anyone else stays as they are, for core.admin to
    refuse and audit."""
    actor = ctx.actor
    if actor.kind != "user":
        return actor
    user = await ctx.services.accounts.get(actor.owner_id)
    if not (user.is_admin or user.role == "operator"):
        return actor
    return Actor.for_staff(user).acting_from(
        actor.origin, source_address=actor.source_address, request_id=actor.request_id
    )


def page_arguments(parser: CommandParser) -> None:
    parser.add_argument(
        "--limit", type=int, default=PAGE_SIZE, help=f"at most N (default {PAGE_SIZE})"
    )
    parser.add_argument("--after", metavar="NAME", help="the page after this name (paging)")


def limit(args: argparse.Namespace) -> int:
    return max(1, min(int(args.limit), MAX_PAGE))


def user_record(row: UserRow) -> dict[str, Any]:
    return dataclasses.asdict(row)


def account(user: User) -> dict[str, Any]:
    return {"username": user.username, "role": user.role, "blocked": user.is_blocked}


# --- reads -------------------------------------------------------------------------------


def users_arguments(parser: CommandParser) -> None:
    parser.add_argument(
        "--search", default="", metavar="S", help="first letters of a name, email, key or project"
    )
    page_arguments(parser)


async def users(ctx: Context, args: argparse.Namespace) -> None:
    rows = await ctx.services.admin.users(
        await staff(ctx), args.search, after=args.after, limit=limit(args)
    )
    currency = ctx.services.settings.currency
    records = [
        {**user_record(row), "balance": format_amount(row.balance_kopecks, currency)}
        for row in rows
    ]
    if ctx.out.json_mode:
        ctx.out.json([user_record(row) for row in rows])
        return
    ctx.out.records(records, USER_COLUMNS, "No accounts match.")


def projects_arguments(parser: CommandParser) -> None:
    parser.add_argument("--search", default="", metavar="S", help="first letters of the name")
    parser.add_argument("--state", help="new, deploying, running, stopped or failed")
    parser.add_argument("--user", metavar="USER", help="one account's projects")
    parser.add_argument("--plan", metavar="CODE", help="projects on this plan")
    page_arguments(parser)


def project_record(row: ProjectRow) -> dict[str, Any]:
    return dataclasses.asdict(row)


async def projects(ctx: Context, args: argparse.Namespace) -> None:
    found = ProjectFilter(args.search.strip().lower(), args.state, None, args.plan)
    rows = await ctx.services.admin.projects(
        await staff(ctx), found, username=args.user, after=args.after, limit=limit(args)
    )
    ctx.out.records([project_record(row) for row in rows], PROJECT_COLUMNS, "No projects match.")


def deploys_arguments(parser: CommandParser) -> None:
    parser.add_argument(
        "--all", action="store_true", help="every deployment, not only the queue and running jobs"
    )
    parser.add_argument("--state", help="only deployments in this state")
    parser.add_argument("--project", metavar="P", default="", help="first letters of a project")
    parser.add_argument(
        "--limit", type=int, default=PAGE_SIZE, help=f"at most N (default {PAGE_SIZE})"
    )
    parser.add_argument("--before", type=int, metavar="ID", help="older than this id (paging)")


async def deploys(ctx: Context, args: argparse.Namespace) -> None:
    rows = await ctx.services.admin.deployments(
        await staff(ctx),
        active_only=not args.all,
        state=args.state,
        project_prefix=args.project.strip().lower(),
        before_id=args.before,
        limit=limit(args),
    )
    ctx.out.records(
        [dataclasses.asdict(row) for row in rows], DEPLOY_COLUMNS, "No deployments match."
    )


def audit_arguments(parser: CommandParser) -> None:
    parser.add_argument(
        "words",
        nargs="*",
        metavar="WORD",
        help="since:2h actor:bob action:login target:shop outcome:refused, or first letters",
    )
    parser.add_argument("--limit", type=int, default=PAGE_SIZE, help="at most N (max 200)")
    parser.add_argument("--before", type=int, metavar="ID", help="older than this id (paging)")


async def audit(ctx: Context, args: argparse.Namespace) -> None:
    events = await ctx.services.admin.audit(
        await staff(ctx), " ".join(args.words), before_id=args.before, limit=limit(args)
    )
    show_events(ctx, events)  # with each entry's address: what an operator looks for


# --- changes -----------------------------------------------------------------------------


def user_argument(parser: CommandParser) -> None:
    parser.add_argument("user", metavar="USER", help="the account's name")


async def block(ctx: Context, args: argparse.Namespace) -> None:
    user = await ctx.services.admin.block(await staff(ctx), args.user)
    ctx.out.result(account(user), "")
    ctx.out.notice(f"Blocked {user.username}: their sessions end within seconds.")


async def unblock(ctx: Context, args: argparse.Namespace) -> None:
    user = await ctx.services.admin.unblock(await staff(ctx), args.user)
    ctx.out.result(account(user), "")
    ctx.out.notice(f"Unblocked {user.username}: they may log in again.")


def role_arguments(parser: CommandParser) -> None:
    user_argument(parser)
    parser.add_argument("role", metavar="ROLE", help="user, operator or admin")


async def role(ctx: Context, args: argparse.Namespace) -> None:
    user = await ctx.services.admin.set_role(await staff(ctx), args.user, args.role)
    ctx.out.result(account(user), "")
    ctx.out.notice(f"{user.username} is now {user.role}: their logins ended.")


def amount_arguments(parser: CommandParser) -> None:
    user_argument(parser)
    parser.add_argument("amount", metavar="AMOUNT", help="in units, e.g. 500 or 499.90")
    parser.add_argument("--reason", required=True, help="why, kept in the ledger entry")


async def adjust(ctx: Context, args: argparse.Namespace, sign: int) -> None:
    entry = await ctx.services.admin.adjust_balance(
        await staff(ctx), args.user, sign * parse_amount(args.amount), args.reason
    )
    currency = ctx.services.settings.currency
    data = {
        "id": entry.id,
        "username": args.user,
        "kind": str(entry.kind),
        "amount_kopecks": entry.amount,
        "reason": entry.reason,
        "created_at": entry.created_at,
    }
    ctx.out.result(data, format_amount(entry.amount, currency))
    ctx.out.notice(f"Ledger entry #{entry.id} for {args.user}: {entry.reason}")


async def credit(ctx: Context, args: argparse.Namespace) -> None:
    await adjust(ctx, args, 1)


async def debit(ctx: Context, args: argparse.Namespace) -> None:
    await adjust(ctx, args, -1)


def project_argument(parser: CommandParser) -> None:
    parser.add_argument("project", metavar="PROJECT", help="the project's name")


def plan_arguments(parser: CommandParser) -> None:
    project_argument(parser)
    parser.add_argument("code", metavar="CODE", help="the plan's code, e.g. host-1")


async def plan(ctx: Context, args: argparse.Namespace) -> None:
    changed = await ctx.services.admin.change_plan(await staff(ctx), args.project, args.code)
    data = {"project": args.project, "plan": changed.plan.code, "version": changed.plan.version}
    ctx.out.result(data, f"{changed.plan.code} v{changed.plan.version}")
    ctx.out.notice(f"{args.project} is on {changed.plan.name} now; running containers too.")


async def stop(ctx: Context, args: argparse.Namespace) -> None:
    done = await ctx.services.admin.stop(await staff(ctx), args.project)
    ctx.out.result(shapes.deployment(done), "")
    ctx.out.notice(f"{args.project} stopped.")


async def start(ctx: Context, args: argparse.Namespace) -> None:
    done = await ctx.services.admin.start(await staff(ctx), args.project)
    ctx.out.result(shapes.deployment(done), "")
    ctx.out.notice(f"{args.project} started.")


def suspend_arguments(parser: CommandParser) -> None:
    project_argument(parser)
    parser.add_argument("--reason", required=True, help="why: the owner's refusals show it")


async def suspend(ctx: Context, args: argparse.Namespace) -> None:
    hold = await ctx.services.admin.suspend(await staff(ctx), args.project, args.reason)
    data = {"project": hold.project, "held_at": hold.held_at, "reason": hold.reason}
    ctx.out.result(data, "")
    ctx.out.notice(f"{args.project} suspended: it stops, and stays down until `admin resume`.")


async def resume(ctx: Context, args: argparse.Namespace) -> None:
    lifted = await ctx.services.admin.resume(await staff(ctx), args.project)
    ctx.out.result({"project": args.project, "lifted": lifted}, "")
    ctx.out.notice(
        f"{args.project}: the admin suspension is lifted."
        if lifted
        else f"{args.project} was not suspended by an admin."
    )


def deployment_arguments(parser: CommandParser) -> None:
    project_argument(parser)
    parser.add_argument("id", type=int, metavar="ID", help="the deployment's id (admin deploys)")


async def cancel(ctx: Context, args: argparse.Namespace) -> None:
    done = await ctx.services.admin.cancel(await staff(ctx), args.project, args.id)
    ctx.out.result(shapes.deployment(done), "")
    ctx.out.notice(f"Deployment #{done.id} of {args.project}: {done.state}.")


async def requeue(ctx: Context, args: argparse.Namespace) -> None:
    queued = await ctx.services.admin.requeue(await staff(ctx), args.project, args.id)
    ctx.out.result(shapes.deployment(queued), str(queued.id))
    ctx.out.notice(f"Queued #{queued.id} of {args.project} with {queued.archive_name}.")


def verb(
    name: str,
    help: str,
    run: Run,
    arguments: Callable[[CommandParser], None] = no_arguments,
    *,
    destructive: bool = False,
) -> Verb:
    """A verb that core.admin checks (and audits when it refuses): no scope, no project."""
    return Verb(name, help, None, run, arguments, project=False, destructive=destructive)


NOUNS: tuple[Noun, ...] = (
    Noun(
        "admin",
        HELP,
        (
            verb("users", "every account, by name (operators too)", users, users_arguments),
            verb("projects", "every project, filtered (operators too)", projects,
                 projects_arguments),
            verb("block", "block an account and end its sessions", block, user_argument,
                 destructive=True),
            verb("unblock", "let a blocked account log in again", unblock, user_argument),
            verb("role", "set an account's role (ends its logins)", role, role_arguments,
                 destructive=True),
            verb("credit", "add to a balance, with a reason", credit, amount_arguments,
                 destructive=True),
            verb("debit", "take from a balance, with a reason", debit, amount_arguments,
                 destructive=True),
            verb("plan", "move a project to a plan's current version", plan, plan_arguments,
                 destructive=True),
            verb("stop", "stop what a project runs", stop, project_argument),
            verb("start", "start a stopped project", start, project_argument),
            verb("suspend", "hold a project down (a top-up does not lift it)", suspend,
                 suspend_arguments, destructive=True),
            verb("resume", "lift an admin's suspension", resume, project_argument),
            verb("deploys", "the queue and running jobs (operators too)", deploys,
                 deploys_arguments),
            verb("cancel", "cancel a queued or running deployment", cancel,
                 deployment_arguments, destructive=True),
            verb("requeue", "queue a failed deployment's version again", requeue,
                 deployment_arguments),
            verb("audit", "everyone's audit log, filtered (operators too)", audit,
                 audit_arguments),
        ),
    ),
)  # fmt: skip
