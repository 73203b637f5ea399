"""`audit [--since T] [--action A] [--project P] [--limit N] [--before ID]`: the account's
audit log, newest first (what it did, and what was done to its data)."""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from commands.base import Context, Noun, Verb, command
from commands.nouns.logs import since_time
from commands.parser import CommandParser
from core.audit.entries import AuditEvent

COLUMNS = [
    ("ID", "id"),
    ("AT", "at"),
    ("ACTOR", "actor"),
    ("ORIGIN", "origin"),
    ("ACTION", "action"),
    ("TARGET", "target"),
    ("OUTCOME", "outcome"),
    ("FROM", "source_address"),
]
MAX_LIMIT = 500


def arguments(parser: CommandParser) -> None:
    parser.add_argument("--since", type=since_time, help="10m, 2h, 7d or an ISO 8601 time")
    parser.add_argument("--action", help="only this action, e.g. login or project.delete")
    parser.add_argument("--project", metavar="P", help="only entries about this project")
    parser.add_argument(
        "--limit", type=int, default=50, help=f"at most N (default 50, max {MAX_LIMIT})"
    )
    parser.add_argument(
        "--before", type=int, metavar="ID", help="entries older than this id (paging)"
    )


async def audit(ctx: Context, args: argparse.Namespace) -> None:
    events = await ctx.services.audit.list(
        ctx.actor,
        since=args.since,
        action=args.action,
        project=args.project,
        before_id=args.before,
        limit=max(1, min(args.limit, MAX_LIMIT)),
    )
    show_events(ctx, events)


def show_events(ctx: Context, events: Sequence[AuditEvent]) -> None:
    """Entries as JSON objects, or as a table (the user's log and the admin's)."""
    if ctx.out.json_mode:
        ctx.out.json([event.as_json() for event in events])
        return
    rows = [
        {
            "id": event.id,
            "at": event.at,
            "actor": event.actor_label,
            "origin": event.origin,
            "action": event.action,
            "target": event.target_name or event.target_kind or "",
            "outcome": event.outcome,
            "source_address": event.source_address or "",
        }
        for event in events
    ]
    ctx.out.records(rows, COLUMNS, "No audit entries match.")


NOUNS: tuple[Noun, ...] = (
    command("audit", Verb("", "your audit log, newest first", "read", audit, arguments,
                          project=False)),
)  # fmt: skip
