"""The command interface's parser, output and exit codes, with stand-in services: nothing is
written to the process's own streams, rights are checked before any service is called, and
each error class has its exit code."""

from __future__ import annotations

import argparse
from datetime import UTC, datetime, timedelta
from typing import Any, cast

import pytest

from commands import exit_codes
from commands.dispatch import build_parser, split
from commands.nouns.logs import since_time
from commands.output import printable, table, to_json
from commands.parser import ParserExit, UsageError
from core.actor import Actor
from core.errors import (
    AuthenticationError,
    ConflictError,
    NotFoundError,
    PanelError,
    PermissionDenied,
    QuotaExceededError,
    SuspendedError,
    ThrottledError,
    UnavailableError,
    ValidationError,
)
from core.identity.accounts import User
from core.projects.service import Project
from core.services import Services
from tests.commands.streams import run

NOW = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)
OWNER = User(7, "alice", "alice@example.com", False, NOW, None)


def token(scopes: set[str], projects: set[str] | None = None) -> Actor:
    return Actor.for_token(
        OWNER,
        token_id=1,
        prefix="ghst_ab12",
        scopes=frozenset(scopes),
        projects=frozenset(projects) if projects is not None else None,
    )


class Recorder:
    """A stand-in service: every call is recorded; `answers` says what a method returns."""

    def __init__(self, calls: list[str], name: str, answers: dict[str, Any]) -> None:
        self._calls = calls
        self._name = name
        self._answers = answers

    def __getattr__(self, method: str) -> Any:
        async def call(*args: Any, **kwargs: Any) -> Any:
            self._calls.append(f"{self._name}.{method}")
            answer = self._answers.get(method)
            if isinstance(answer, Exception):
                raise answer
            return answer() if callable(answer) else answer

        return call


def services(calls: list[str], **answers: dict[str, Any]) -> Services:
    names = ["projects", "deployments", "env", "keys", "accounts", "archives", "subscriptions"]
    fake = argparse.Namespace(**{n: Recorder(calls, n, answers.get(n, {})) for n in names})
    return cast(Services, fake)


def project(name: str) -> Project:
    return Project(1, OWNER.id, name, NOW)


async def test_help_usage_and_errors_never_reach_the_process_streams(
    capsys: pytest.CaptureFixture[str],
) -> None:
    calls: list[str] = []
    user = Actor.for_user(OWNER)
    for line in ["", "-h", "help", "help env", "projects --help", "frob", "status", "--bogus"]:
        await run(line, user, services(calls))  # a SystemExit would fail the test
    assert capsys.readouterr() == ("", "")
    assert calls == []


@pytest.mark.parametrize(
    ("line", "status", "where", "says"),
    [
        ("help", 0, "stdout", "usage: ssh panel"),
        ("help env", 0, "stdout", "usage: ssh panel env"),
        ("env help", 0, "stdout", "usage: ssh panel env"),
        ("env blog help", 0, "stdout", "usage: ssh panel env"),
        ("projects help", 0, "stdout", "usage: ssh panel projects"),
        ("status help", 0, "stdout", "usage: ssh panel status"),
        ("deploy --help", 0, "stdout", "--wait"),
        ("", 2, "stderr", "ssh -t"),
        ("frob", 2, "stderr", "invalid choice: 'frob'"),
        ("status", 2, "stderr", "required: NAME"),
        ("env blog set NOEQUALS", 2, "stderr", "is not NAME=VALUE"),
        ("logs blog --tail many", 2, "stderr", "invalid int value"),
        ("whoami 'unclosed", 2, "stderr", "No closing quotation"),
        ("projects delete blog --y", 2, "stderr", "unrecognized arguments: --y"),
    ],
)
async def test_help_goes_to_stdout_with_0_and_usage_errors_to_stderr_with_2(
    line: str, status: int, where: str, says: str
) -> None:
    ran = await run(line, Actor.for_user(OWNER), services([]))
    assert ran.status == status
    shown, other = (ran.stdout, ran.stderr) if where == "stdout" else (ran.stderr, ran.stdout)
    assert says in shown
    assert other == ""


@pytest.mark.parametrize(
    ("error", "status"),
    [
        (PanelError("Could not stop: the worker said no."), 1),
        (ConflictError("The name 'blog' is taken."), 1),
        (ValidationError("A project name is 3 to 40 characters long."), 2),
        (NotFoundError("You have no project named 'blog'."), 3),
        (PermissionDenied("Not yours."), 4),
        (AuthenticationError("Your session ended."), 4),
        (SuspendedError("blog is suspended: top up your balance."), 5),
        (QuotaExceededError("Your storage quota (1024 MiB) is full."), 5),
        (UnavailableError("The database is down."), 75),
        (ThrottledError("Too many attempts."), 75),
        (ConnectionRefusedError("redis"), 75),
        (RuntimeError("a bug"), 1),
    ],
)
async def test_each_error_class_has_its_exit_code_and_the_dashboard_message(
    error: Exception, status: int
) -> None:
    ran = await run(
        "status blog", Actor.for_user(OWNER), services([], deployments={"status": error})
    )
    assert ran.status == status
    assert ran.stdout == ""
    if isinstance(error, PanelError):
        assert ran.stderr == error.message + "\n"
    elif status == 75:
        assert ran.stderr == exit_codes.UNAVAILABLE + "\n"
    else:
        assert ran.stderr == exit_codes.INTERNAL + "\n"  # never a traceback


@pytest.mark.parametrize(
    ("line", "scopes"),
    [
        ("deploy blog", {"read", "logs", "env:write"}),
        ("upload blog", {"read", "logs", "env:write"}),
        ("projects delete blog --yes", {"read", "logs"}),
        ("projects create shop", {"read"}),
        ("stop blog", {"read", "logs", "env:write"}),
        ("rollback blog 3", {"read"}),
        ("cancel blog", {"read"}),
        ("logs blog", {"read", "deploy"}),
        ("env blog set A=1", {"read", "deploy", "logs"}),
        ("env blog unset A --yes", {"read", "deploy"}),
        ("env blog list --reveal", {"read", "deploy"}),
        ("status blog", {"deploy"}),
        ("projects list", {"logs"}),
    ],
)
async def test_a_token_without_the_scope_is_refused_before_any_service_call(
    line: str, scopes: set[str]
) -> None:
    calls: list[str] = []
    ran = await run(line, token(scopes), services(calls))
    assert (ran.status, ran.stdout) == (4, "")
    assert "scope" in ran.stderr
    assert calls == []


@pytest.mark.parametrize(
    "line",
    [
        "deploy shop",
        "upload shop",
        "status shop",
        "logs shop -f",
        "env shop",
        "env shop set A=1",
        "deployments shop",
        "projects info shop",
        "projects delete shop --yes",
        "rollback shop",
        "restart shop",
    ],
)
async def test_a_token_for_one_project_cannot_touch_another(line: str) -> None:
    calls: list[str] = []
    every_scope = {"read", "logs", "deploy", "env:write"}
    ran = await run(line, token(every_scope, {"blog"}), services(calls))
    assert ran.status == 4
    assert "not allowed to act on project 'shop'" in ran.stderr
    assert calls == []


async def test_a_token_lists_only_its_projects_through_the_service() -> None:
    calls: list[str] = []
    fakes = services(
        calls,
        projects={"list": [project("blog")]},
        deployments={"statuses": {"blog": "running"}},
    )
    ran = await run("projects list --json", token({"read"}, {"blog"}), fakes)
    assert ran.status == 0
    assert [p["name"] for p in ran.json()] == ["blog"]
    assert calls == ["projects.list", "deployments.statuses"]


@pytest.mark.parametrize(
    "line",
    ["projects delete blog", "env blog unset A", "keys rm 3"],
)
async def test_destructive_commands_need_yes(line: str) -> None:
    calls: list[str] = []
    ran = await run(line, Actor.for_user(OWNER), services(calls))
    assert ran.status == 2
    assert "add --yes" in ran.stderr
    assert calls == []


@pytest.mark.parametrize(
    "line",
    [
        "whoami; projects delete blog --yes",
        "whoami && projects delete blog --yes",
        "status $(projects delete blog --yes)",
        "status `id`",
        "status blog --yes",
        "projects info -- --yes",
    ],
)
async def test_shell_syntax_in_the_command_string_is_only_words(line: str) -> None:
    calls: list[str] = []
    fakes = services(
        calls,
        deployments={"status": NotFoundError("You have no project named that.")},
        projects={"get": NotFoundError("You have no project named that.")},
    )
    ran = await run(line, Actor.for_user(OWNER), fakes)
    assert ran.status in (2, 3)
    assert "deployments.delete_project" not in calls


async def test_json_before_the_command_is_kept() -> None:
    fakes = services([], accounts={"get": OWNER})
    ran = await run("--json whoami", Actor.for_user(OWNER), fakes)
    assert ran.status == 0
    assert ran.json()["username"] == "alice"


async def test_a_tenants_text_reaches_the_terminal_without_control_characters() -> None:
    evil = "a\x1b]0;owned\x07b\x1b[2J\r"
    assert printable(evil) == "a?]0;owned?b?[2J?"
    assert "\x1b" not in table(["NAME"], [[evil]])
    assert "\x1b" not in to_json({"value": evil})
    fakes = services([], env={"list": [argparse.Namespace(name="K", value=evil, masked="a***")]})
    ran = await run("env blog list --reveal", Actor.for_user(OWNER), fakes)
    assert ran.status == 0
    assert "\x1b" not in ran.stdout and "\r" not in ran.stdout
    assert "a?]0;owned?b?[2J?" in ran.stdout


async def test_env_values_are_masked_unless_revealed() -> None:
    var = argparse.Namespace(name="SECRET", value="hunter22", masked="hu******")
    fakes = services([], env={"list": [var]})
    masked = await run("env blog --json", Actor.for_user(OWNER), fakes)
    assert masked.json() == [{"name": "SECRET", "value": "hu******"}]
    shown = await run("env blog list --reveal --json", Actor.for_user(OWNER), fakes)
    assert shown.json() == [{"name": "SECRET", "value": "hunter22"}]
    reader = await run("env blog list --reveal", token({"read"}), fakes)
    assert reader.status == 4


def test_the_parser_raises_instead_of_exiting() -> None:
    parser = build_parser()
    with pytest.raises(ParserExit) as helped:
        parser.parse_command(["-h"])
    assert helped.value.status == 0
    with pytest.raises(UsageError):
        parser.parse_command(["deploy"])
    assert split("env blog set 'A=b c'") == ["env", "blog", "set", "A=b c"]


def test_the_exit_codes_are_the_documented_ones() -> None:
    assert (
        exit_codes.OK,
        exit_codes.FAILED,
        exit_codes.USAGE,
        exit_codes.NOT_FOUND,
        exit_codes.FORBIDDEN,
        exit_codes.LIMITED,
        exit_codes.TRY_LATER,
    ) == (0, 1, 2, 3, 4, 5, 75)


def test_since_takes_a_duration_back_or_a_time() -> None:
    before = datetime.now(UTC)
    ten_minutes = since_time("10m")
    assert before - timedelta(minutes=10, seconds=5) < ten_minutes <= before
    assert since_time("2026-12-03T10:00:00Z") == datetime(2026, 12, 3, 10, tzinfo=UTC)
    assert since_time("2026-12-03T10:00:00") == datetime(2026, 12, 3, 10, tzinfo=UTC)
    with pytest.raises(argparse.ArgumentTypeError):
        since_time("yesterday")
