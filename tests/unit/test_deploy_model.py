"""The deployment state machine: every legal move, and refusal of the rest."""

from __future__ import annotations

import pytest

from core.deploy.model import (
    ACTIVE_STATES,
    IN_PROGRESS_STATES,
    TRANSITIONS,
    IllegalTransition,
    State,
    may_move,
    project_state,
    require_move,
    sources_of,
)
from core.errors import ConflictError

LEGAL = {
    (State.QUEUED, State.BUILDING),
    (State.QUEUED, State.WORKING),
    (State.QUEUED, State.SUPERSEDED),
    (State.QUEUED, State.CANCELLED),
    (State.BUILDING, State.STARTING),
    (State.BUILDING, State.RUNNING),
    (State.BUILDING, State.FAILED),
    (State.BUILDING, State.CANCELLED),
    (State.BUILDING, State.QUEUED),
    (State.STARTING, State.RUNNING),
    (State.STARTING, State.FAILED),
    (State.STARTING, State.CANCELLED),
    (State.STARTING, State.QUEUED),
    (State.WORKING, State.DONE),
    (State.WORKING, State.FAILED),
    (State.WORKING, State.CANCELLED),
    (State.WORKING, State.QUEUED),
    (State.RUNNING, State.SUPERSEDED),
}


def test_the_transition_table_is_exactly_the_documented_moves() -> None:
    table = {(source, target) for source, targets in TRANSITIONS.items() for target in targets}
    assert table == LEGAL
    assert set(TRANSITIONS) == set(State)


@pytest.mark.parametrize("source", list(State))
@pytest.mark.parametrize("target", list(State))
def test_a_move_is_allowed_only_when_the_table_has_it(source: State, target: State) -> None:
    assert may_move(source, target) == ((source, target) in LEGAL)
    if (source, target) in LEGAL:
        require_move(source, target)
    else:
        with pytest.raises(IllegalTransition, match=f"from {source} to {target}"):
            require_move(source, target)


def test_an_illegal_move_is_a_conflict_the_user_can_read() -> None:
    with pytest.raises(ConflictError) as refused:
        require_move(State.FAILED, State.RUNNING)
    assert refused.value.message == "A deployment cannot go from failed to running."
    # Ended states go nowhere: a failed, cancelled, superseded or done job stays so.
    for ended in (State.FAILED, State.CANCELLED, State.SUPERSEDED, State.DONE):
        assert not TRANSITIONS[ended]


def test_sql_moves_start_only_from_the_allowed_states() -> None:
    assert sorted(sources_of(State.RUNNING)) == ["building", "starting"]
    assert sorted(sources_of(State.DONE)) == ["working"]
    assert sorted(sources_of(State.QUEUED)) == ["building", "starting", "working"]
    assert sources_of(State.SUPERSEDED) == ["queued", "running"]


def test_states_compare_and_print_as_the_names_stored_and_shown() -> None:
    assert State.RUNNING == "running" and f"{State.CANCELLED}" == "cancelled"
    assert State("superseded") is State.SUPERSEDED
    assert set(IN_PROGRESS_STATES) < set(ACTIVE_STATES)


def test_a_project_state_follows_its_newest_deployment_and_its_live_one() -> None:
    assert project_state(None, False, False) == "new"
    assert project_state(State.QUEUED, True, False) == "deploying"
    assert project_state(State.FAILED, False, False) == "failed"
    assert project_state(State.FAILED, True, False) == "running"
    assert project_state(State.RUNNING, True, True) == "stopped"
