"""`:audit`: every account's audit entries, newest first, live as they are written.

The filter (`/`) is words, narrowed in SQL: `since:2h` (s, m, h or d), `actor:bob` (an
account, or a label as recorded such as `system:admin`), `action:login` (and `login.*`),
`target:shop` (a target's name), `outcome:refused`, and any other word: the first letters of
an action, a target or an actor. Read-only: operators see it as admins do.
"""

from __future__ import annotations

from collections.abc import Sequence

from rich.text import Text

from core.audit.entries import AuditEvent
from core.errors import ValidationError
from tui.admin.base import AdminListScreen
from tui.formatting import moment


def target_text(row: AuditEvent) -> str:
    if row.target_kind in (None, "none"):
        return ""
    return f"{row.target_kind} {row.target_name or ''}".strip()


# What is not "ok" stands out.
OUTCOME_STYLES = {"ok": "", "refused": "bold yellow", "failed": "bold red"}


class AdminAuditScreen(AdminListScreen[AuditEvent]):
    VIEW = "audit"
    CSS_PATH = "audit.tcss"
    COLUMNS = ("#", "At", "Actor", "Origin", "Action", "Target", "Outcome", "From")
    WATCHED = ("audit",)
    FILTER_HINT = "since:2h · actor:bob · action:login · target:shop · outcome:refused · text"

    problem = ""

    async def fetch(self, search: str, after: str | None, limit: int) -> list[AuditEvent]:
        # A word being typed (`since:2`, `outcome:ref`) is not valid yet: what is wrong with
        # it shows on the status line, not as a notification per keystroke.
        try:
            rows = await self.panel.admin.audit(
                self.staff,
                search,
                before_id=int(after) if after is not None else None,
                limit=limit,
            )
        except ValidationError as error:
            self.problem = error.message
            return []
        self.problem = ""
        return rows

    def status_prefix(self) -> str:
        return self.problem

    def key_of(self, row: AuditEvent) -> str:
        return str(row.id)

    def cells(self, row: AuditEvent) -> Sequence[str | Text]:
        outcome = Text(row.outcome, OUTCOME_STYLES[row.outcome], justify="left")
        return (
            Text(str(row.id), justify="right"),
            moment(row.at),
            Text(row.actor_label, "bold", justify="left"),
            row.origin,
            row.action,
            target_text(row),
            outcome,
            row.source_address or "",
        )
