"""`projects list|create NAME [--plan P]|delete NAME --yes|info NAME`."""

from __future__ import annotations

import argparse

from commands import shapes
from commands.base import Context, Noun, Verb
from commands.output import pairs
from commands.parser import CommandParser
from core.billing.plans import FREE

COLUMNS = [
    ("NAME", "name"),
    ("STATE", "state"),
    ("VERSIONS", "versions"),
    ("LAST UPLOAD", "last_upload_at"),
]


async def list_projects(ctx: Context, args: argparse.Namespace) -> None:
    found = await ctx.services.projects.list(ctx.actor)
    states = await ctx.services.deployments.statuses(ctx.actor) if found else {}
    records = [shapes.project(project, states.get(project.name)) for project in found]
    ctx.out.records(records, COLUMNS, empty="No projects yet: projects create NAME")


def plan_argument(parser: CommandParser) -> None:
    parser.add_argument("--plan", default=FREE, help=f"the plan's code (default {FREE})")


async def create(ctx: Context, args: argparse.Namespace) -> None:
    project, plan = await ctx.services.subscriptions.create_project(
        ctx.actor, args.project, args.plan
    )
    data = {**shapes.project(project), "plan": plan.code}
    ctx.out.result(data, project.name)
    ctx.out.notice(
        f"Created {project.name} on the {plan.name} plan: upload {project.name} < app.zip"
    )


async def delete(ctx: Context, args: argparse.Namespace) -> None:
    project = await ctx.services.deployments.delete_project(ctx.actor, args.project, args.project)
    ctx.out.result({"name": project.name, "deleted": True}, "")
    ctx.out.notice(f"Deleted {project.name}, its versions and what ran.")


async def info(ctx: Context, args: argparse.Namespace) -> None:
    project = await ctx.services.projects.get(ctx.actor, args.project)
    status = await ctx.services.deployments.status(ctx.actor, args.project)
    plan = await ctx.services.subscriptions.plan_of(ctx.actor, args.project)
    data = {
        **shapes.project(project, status.state),
        "url": status.url,
        "plan": plan.plan.code if plan else None,
        "suspended": plan is not None and plan.suspended_at is not None,
        "live": shapes.deployment(status.live) if status.live else None,
    }
    text = pairs(
        [
            ("Name", project.name),
            ("State", str(status.state)),
            ("URL", status.url),
            ("Plan", data["plan"]),
            ("Versions", project.versions),
            ("Live", f"#{status.live.id} {status.live.archive_name}" if status.live else None),
            ("Created", project.created_at.strftime("%Y-%m-%d %H:%M")),
        ]
    )
    ctx.out.result(data, text)


NOUNS: tuple[Noun, ...] = (
    Noun(
        "projects",
        "your projects: list, create, delete, info",
        (
            Verb("list", "your projects and their state", "read", list_projects, project=False),
            Verb("create", "a new project", "deploy", create, plan_argument),
            Verb(
                "delete",
                "delete a project, its versions and what runs",
                "deploy",
                delete,
                destructive=True,
            ),
            Verb("info", "one project: state, URL, plan", "read", info),
        ),
        default="list",
    ),
)
