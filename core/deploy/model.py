"""The deployment record and its one state machine: what states exist and which moves are legal.

A row of `deployments` is a job of the deploy queue. Most are deployments (operation `deploy`):

    queued -> building -> starting -> running -> superseded (another one went live)
         \\          \\           \\-> failed | cancelled | queued again (worker shutdown)
          \\-> superseded (a newer one was queued first) | cancelled

Stop, start and delete of a project are jobs of the same queue (operation `stop`, `start`,
`delete`), so a panel process without Docker can serve the dashboard while a worker acts:

    queued -> working -> done | failed | cancelled | queued again;  queued -> cancelled

Every other module names states through `State` and asks this module whether a move is legal;
SQL receives states as parameters (`sources_of` gives the states a move may start from).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Literal

from core.errors import ConflictError


class State(StrEnum):
    QUEUED = "queued"
    BUILDING = "building"
    STARTING = "starting"
    WORKING = "working"  # an operation (stop, start, delete) being carried out
    RUNNING = "running"
    DONE = "done"  # an operation that was carried out
    FAILED = "failed"
    CANCELLED = "cancelled"
    SUPERSEDED = "superseded"


class Operation(StrEnum):
    DEPLOY = "deploy"
    STOP = "stop"
    START = "start"
    DELETE = "delete"


TRANSITIONS: dict[State, frozenset[State]] = {
    State.QUEUED: frozenset({State.BUILDING, State.WORKING, State.SUPERSEDED, State.CANCELLED}),
    # Back to queued: the worker shut down and gave the job back.
    State.BUILDING: frozenset(
        {State.STARTING, State.RUNNING, State.FAILED, State.CANCELLED, State.QUEUED}
    ),
    State.STARTING: frozenset({State.RUNNING, State.FAILED, State.CANCELLED, State.QUEUED}),
    State.WORKING: frozenset({State.DONE, State.FAILED, State.CANCELLED, State.QUEUED}),
    State.RUNNING: frozenset({State.SUPERSEDED}),
    State.DONE: frozenset(),
    State.FAILED: frozenset(),
    State.CANCELLED: frozenset(),
    State.SUPERSEDED: frozenset(),
}

# Waiting for a worker, or held by one.
ACTIVE_STATES: tuple[State, ...] = (State.QUEUED, State.BUILDING, State.STARTING, State.WORKING)
# Held by a worker (under a lease); one per project at a time.
IN_PROGRESS_STATES: tuple[State, ...] = (State.BUILDING, State.STARTING, State.WORKING)
# Deployments that went live once; their image can run again (rollback) while it is kept.
SUCCEEDED_STATES: tuple[State, ...] = (State.RUNNING, State.SUPERSEDED)
# Ended without going live: the history keeps them only as long as it has room.
ENDED_STATES: tuple[State, ...] = (State.FAILED, State.CANCELLED, State.DONE)
# Deployments that need (or may need) their containers: never swept.
HOLDING_STATES: tuple[State, ...] = (
    State.QUEUED,
    State.BUILDING,
    State.STARTING,
    State.RUNNING,
)

# heal: the panel started the live image again after its containers went (core.deploy.live_check).
Reason = Literal["deploy", "redeploy", "rollback", "restart", "heal"]
Kind = Literal["dockerfile", "compose"]
# What a project looks like from outside.
ProjectState = Literal["new", "deploying", "running", "stopped", "failed"]


class IllegalTransition(ConflictError):
    """A move the state machine does not allow (the row changed meanwhile, or a bug)."""

    title = "Not possible now"


def may_move(source: State, target: State) -> bool:
    return target in TRANSITIONS[source]


def require_move(source: State, target: State) -> None:
    if not may_move(source, target):
        raise IllegalTransition(f"A deployment cannot go from {source} to {target}.")


def sources_of(target: State) -> list[str]:
    """The states a row may be in to move to `target` (for SQL: `state = any($n)`)."""
    return [str(source) for source, targets in TRANSITIONS.items() if target in targets]


def values(states: tuple[State, ...]) -> list[str]:
    """States as SQL parameters (`state = any($n)`)."""
    return [str(state) for state in states]


@dataclass(frozen=True)
class Deployment:
    id: int
    project_id: int
    project: str
    user_id: int
    archive_id: int | None
    archive_name: str  # e.g. "v3-app.zip"; kept when the archive is deleted
    reason: Reason
    source_id: int | None  # the deployment whose image a rollback or restart reuses
    kind: Kind | None
    state: State
    error: str
    image: str | None
    stack: str | None  # compose project name, for compose deployments
    port: int | None  # host port on 127.0.0.1
    app_port: int | None  # port inside the container
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    # Live, but its containers were found gone at this time (removed outside the panel).
    missing_since: datetime | None = None
    operation: Operation = Operation.DEPLOY

    @property
    def active(self) -> bool:
        return self.state in ACTIVE_STATES

    @property
    def succeeded(self) -> bool:
        """It went live once (it may have been replaced since)."""
        return self.state in SUCCEEDED_STATES

    @property
    def can_roll_back_to(self) -> bool:
        return self.succeeded and self.image is not None

    @property
    def duration(self) -> timedelta | None:
        if self.started_at is None:
            return None
        return (self.finished_at or datetime.now(self.started_at.tzinfo)) - self.started_at


def project_state(latest: str | None, has_live: bool, stopped: bool) -> ProjectState:
    """A project's state from its newest deployment's state, its live one, its stopped flag."""
    if latest in ACTIVE_STATES:
        return "deploying"
    if not has_live:
        return "failed" if latest == State.FAILED else "new"
    return "stopped" if stopped else "running"
