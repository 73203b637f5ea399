"""Projects and project screens against the real PostgreSQL, Redis and archive storage.

Versions are made through the one upload path (`begin_upload`, `write`, `finish`) that scp and
SFTP use, with small zips built in memory.
"""

from __future__ import annotations

import dataclasses
import io
import shlex
import time
import zipfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from textual.pilot import Pilot
from textual.widgets import DataTable, Input, Static

from core.archives.checks import ArchiveRejected
from core.archives.service import Archive
from core.errors import UnavailableError
from core.panel import Panel
from core.projects.service import Project
from core.settings import Settings
from tests.actors import acting
from tests.e2e.helpers import running_server
from tests.e2e.transfers import OPENSSH_OPTIONS, Account, account, run, write
from tests.tui.helpers import (
    SIZE,
    Note,
    click,
    error_text,
    fill,
    record_notifications,
    settle,
    sign_up,
)
from tests.tui.test_deployments import wait_for
from tui.app import GhstApp
from tui.formatting import moment, size
from tui.screens.confirm import ConfirmDialog
from tui.screens.delete_project import DeleteProjectDialog
from tui.screens.home import HomeScreen
from tui.screens.new_project import NewProjectDialog
from tui.screens.project import ProjectScreen, check_line
from tui.screens.projects import ProjectsScreen, usage_line
from tui.upload_commands import public_ssh_address, upload_commands
from tui.visitor import Visitor
from tui.widgets.header import SEPARATOR

NOW = datetime(2025, 2, 3, 9, 12, tzinfo=UTC)


def app_zip(files: dict[str, bytes] | None = None) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in (files or {"Dockerfile": b"FROM scratch\n", "index.html": b"hi"}).items():
            archive.writestr(name, data)
    return buffer.getvalue()


async def upload(
    panel: Panel, user_id: int, project: str, filename: str = "app.zip", data: bytes = b""
) -> Archive:
    transfer = await panel.archives.begin_upload(acting(user_id), project, filename)
    data = data or app_zip()
    for start in range(0, len(data), 1000):
        await transfer.write(data[start : start + 1000])
    return await transfer.finish()


async def refused_upload(panel: Panel, user_id: int, project: str, filename: str) -> str:
    with pytest.raises(ArchiveRejected) as refused:
        await upload(panel, user_id, project, filename, app_zip({"README.md": b"no app here"}))
    return refused.value.message


def rows(app: GhstApp, table_id: str) -> list[list[str]]:
    table = app.screen.query_one(f"#{table_id}", DataTable)
    return [[str(cell) for cell in table.get_row_at(row)] for row in range(table.row_count)]


def text(app: GhstApp, selector: str) -> str:
    return str(app.screen.query_one(selector, Static).render())


def titles(notes: list[Note]) -> list[str]:
    return [note.title for note in notes]


# The scp/sftp commands -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("ssh_host", "shown"),
    [
        ("0.0.0.0", "ghst.example"),
        ("::", "ghst.example"),
        ("127.0.0.1", "ghst.example"),
        ("::1", "ghst.example"),
        ("localhost", "ghst.example"),
        ("panel.ghst.example", "panel.ghst.example"),
        ("203.0.113.5", "203.0.113.5"),
    ],
)
def test_commands_name_a_host_users_can_reach(ssh_host: str, shown: str) -> None:
    settings = Settings(domain="ghst.example", ssh_host=ssh_host, ssh_port=2222)
    assert public_ssh_address(settings) == (shown, 2222)
    commands = upload_commands(settings, "alice", "shop")
    assert commands.scp == f"scp -P 2222 app.zip alice@{shown}:shop/"
    assert commands.sftp == f"sftp -P 2222 alice@{shown}"
    assert commands.sftp_put == "put app.zip shop/"


def test_commands_leave_out_port_22_and_bracket_ipv6() -> None:
    settings = Settings(domain="ghst.example", ssh_host="2001:db8::7", ssh_port=22)
    commands = upload_commands(settings, "alice", "shop")
    assert commands.scp == "scp app.zip alice@[2001:db8::7]:shop/"
    assert commands.sftp == "sftp alice@[2001:db8::7]"


def test_sizes_usage_and_check_results() -> None:
    assert [size(n) for n in (0, 532, 1024, 126_353_408, 1 << 30, 5 << 40)] == [
        "0 B",
        "532 B",
        "1.0 KiB",
        "120.5 MiB",
        "1.0 GiB",
        "5.0 TiB",
    ]
    assert usage_line(126_353_408, 1 << 30) == "120.5 MiB of 1.0 GiB used (11%)"
    refused = Archive(
        1, 1, None, "a.zip", 10, "rejected", "No   Dockerfile\nat all.", None, None, NOW
    )
    assert check_line(refused, 80) == "✗ refused: No Dockerfile at all."
    assert check_line(refused, 20) == "✗ refused: No Docke…"  # 20 characters


# The projects screen ---------------------------------------------------------------------


async def test_no_projects_says_how_to_make_one(panel: Panel) -> None:
    app = GhstApp(panel, await sign_up(panel))
    notes = record_notifications(app)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await pilot.press("j")
        await settle(pilot)
        assert isinstance(app.screen, ProjectsScreen)
        empty = text(app, "#empty")
        assert "No projects yet. Press n to create one" in empty
        assert "sftp -P 2222 alice@localhost" in empty and "mkdir <name>" in empty
        assert not app.screen.query_one("#projects", DataTable).display
        assert text(app, "#usage") == "Storage: 0 B of 1.0 GiB used (0%)"
        await pilot.press("d", "enter")  # nothing to delete or open: disabled
        await pilot.pause()
        assert isinstance(app.screen, ProjectsScreen)
        await pilot.press("escape")
        await pilot.pause()
        assert isinstance(app.screen, HomeScreen)
    assert notes == []


async def test_create_a_project_in_the_dialog(panel: Panel) -> None:
    visitor = await sign_up(panel)
    assert visitor.user is not None
    app = GhstApp(panel, visitor)
    notes = record_notifications(app)
    async with app.run_test(size=SIZE) as pilot:
        await app.push_screen(ProjectsScreen())
        await settle(pilot)
        await pilot.press("n")
        await pilot.pause()
        assert isinstance(app.screen, NewProjectDialog)
        assert app.focused is app.screen.query_one("#name", Input)
        await pilot.press("enter")
        await pilot.pause()
        assert error_text(pilot) == "Enter a name for the project."

        await pilot.press(*"My_Shop", "enter")
        await settle(pilot)
        assert isinstance(app.screen, NewProjectDialog)  # still open, the name kept
        assert error_text(pilot).startswith("A project name uses lowercase letters, digits")
        assert app.screen.query_one("#name", Input).value == "My_Shop"

        await fill(pilot, name="www")
        await pilot.press("enter")
        await settle(pilot)
        assert error_text(pilot) == "The name 'www' is reserved. Please choose another one."

        await fill(pilot, name="shop")
        assert "http://shop.localhost" in text(app, "#address")
        await pilot.press("enter")
        await settle(pilot)
        assert isinstance(app.screen, ProjectsScreen)
        assert rows(app, "projects") == [["shop", "http://shop.localhost", "0", "never"]]
        assert app.screen.query_one("#projects", DataTable).has_focus
    assert [p.name for p in await panel.projects.list(acting(visitor.user.id))] == ["shop"]
    assert titles(notes) == ["Project created"]


async def test_a_name_someone_else_has_is_a_conflict(panel: Panel) -> None:
    bob = await sign_up(panel, "bob")
    assert bob.user is not None
    await panel.projects.create(acting(bob.user.id), "shop")
    alice = await sign_up(panel, "alice")
    assert alice.user is not None
    app = GhstApp(panel, alice)
    async with app.run_test(size=SIZE) as pilot:
        await app.push_screen(ProjectsScreen())
        await settle(pilot)
        await pilot.press("n", *"shop", "enter")
        await settle(pilot)
        assert isinstance(app.screen, NewProjectDialog)
        assert error_text(pilot) == "The name 'shop' is taken. Please choose another one."
        await pilot.press("escape")
        await pilot.pause()
        assert isinstance(app.screen, ProjectsScreen)
    assert await panel.projects.list(acting(alice.user.id)) == []


async def test_the_list_shows_versions_last_upload_and_storage(panel: Panel) -> None:
    visitor = await sign_up(panel)
    assert visitor.user is not None
    user_id = visitor.user.id
    await panel.projects.create(acting(user_id), "shop")
    await panel.projects.create(acting(user_id), "blog-two")
    await upload(panel, user_id, "shop")
    latest = await upload(panel, user_id, "shop")
    used, _quota = await panel.archives.usage(acting(user_id))
    app = GhstApp(panel, visitor)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await pilot.press("j")
        await settle(pilot)
        assert rows(app, "projects") == [
            ["blog-two", "http://blog-two.localhost", "0", "never"],
            ["shop", "http://shop.localhost", "2", moment(latest.created_at)],
        ]
        assert text(app, "#usage") == f"Storage: {size(used)} of 1.0 GiB used (0%)"
        assert app.screen.query_one("#projects-box").border_title == "Projects · 2"


async def test_open_a_project_with_enter(panel: Panel) -> None:
    visitor = await sign_up(panel)
    assert visitor.user is not None
    await panel.projects.create(acting(visitor.user.id), "alpha")
    await panel.projects.create(acting(visitor.user.id), "shop")
    app = GhstApp(panel, visitor)
    async with app.run_test(size=SIZE) as pilot:
        await app.push_screen(ProjectsScreen())
        await settle(pilot)
        await pilot.press("down", "enter")
        await settle(pilot)
        assert isinstance(app.screen, ProjectScreen)
        assert app.screen.project_name == "shop"
        where = str(app.screen.query_one("AppHeader #where", Static).render())
        assert where == SEPARATOR.join(["Home", "Projects", "shop"])
        await pilot.press("escape")
        await settle(pilot)
        assert isinstance(app.screen, ProjectsScreen)
        assert app.screen.selected_project() is not None
        assert app.screen.selected_project().name == "shop"  # type: ignore[union-attr]


async def test_delete_a_project_after_typing_its_name(panel: Panel) -> None:
    visitor = await sign_up(panel)
    assert visitor.user is not None
    user_id = visitor.user.id
    await panel.projects.create(acting(user_id), "shop")
    await panel.projects.create(acting(user_id), "tools")
    stored = await upload(panel, user_id, "shop")
    app = GhstApp(panel, visitor)
    notes = record_notifications(app)
    async with app.run_test(size=SIZE) as pilot:
        await app.push_screen(ProjectsScreen())
        await settle(pilot)
        await pilot.press("d")
        await pilot.pause()
        assert isinstance(app.screen, DeleteProjectDialog)
        assert "1 version" in text(app, "#dialog-message")
        await pilot.press(*"shpo", "enter")
        await settle(pilot)
        assert isinstance(app.screen, DeleteProjectDialog)
        assert error_text(pilot) == "Type the project's name, 'shop', to confirm deleting it."
        assert app.screen.query_one("#confirmation", Input).value == "shpo"  # to fix a typo
        await fill(pilot, confirmation="shop")
        await click(pilot, "#delete")
        await settle(pilot)
        assert isinstance(app.screen, ProjectsScreen)
        assert [row[0] for row in rows(app, "projects")] == ["tools"]
        assert text(app, "#usage") == "Storage: 0 B of 1.0 GiB used (0%)"
    assert [p.name for p in await panel.projects.list(acting(user_id))] == ["tools"]
    assert await panel.storage.size(stored.storage_key or "") is None
    assert titles(notes) == ["Project deleted"]
    assert notes[0].message == "shop and its 1 version are gone."


# The project screen ----------------------------------------------------------------------


async def test_the_project_shows_commands_and_history_newest_first(panel: Panel) -> None:
    visitor = await sign_up(panel)
    assert visitor.user is not None
    user_id = visitor.user.id
    await panel.projects.create(acting(user_id), "shop")
    first = await upload(panel, user_id, "shop", "app.zip")
    message = await refused_upload(panel, user_id, "shop", "broken.zip")
    second = await upload(panel, user_id, "shop", "site.zip")
    app = GhstApp(panel, visitor)
    async with app.run_test(size=SIZE) as pilot:
        await app.push_screen(ProjectScreen("shop"))
        await settle(pilot)
        assert text(app, "#scp-command") == "scp   scp -P 2222 app.zip alice@localhost:shop/"
        assert text(app, "#sftp-command") == (
            "sftp  sftp -P 2222 alice@localhost   then   put app.zip shop/"
        )
        assert text(app, "#url") == "http://shop.localhost:8080/"
        history = rows(app, "history")
        assert [row[:3] for row in history] == [
            ["v2-site.zip", size(second.size), moment(second.created_at)],
            ["broken.zip", history[1][1], history[1][2]],
            ["v1-app.zip", size(first.size), moment(first.created_at)],
        ]
        assert [history[0][3], history[2][3]] == ["✓ ready", "✓ ready"]
        assert history[1][3].startswith("✗ refused: ")
        box = app.screen.query_one("#history-box")
        assert box.border_title == "Uploads · 2 versions · 1 refused"
        await pilot.press("down")  # the refused upload: its whole reason under the table
        await pilot.pause()
        assert text(app, "#detail") == f"broken.zip was refused: {message} Nothing of it is stored."


async def test_a_new_upload_appears_without_a_keypress(panel: Panel) -> None:
    visitor = await sign_up(panel)
    assert visitor.user is not None
    user_id = visitor.user.id
    await panel.projects.create(acting(user_id), "shop")
    app = GhstApp(panel, visitor)
    async with app.run_test(size=SIZE) as pilot:
        await app.push_screen(ProjectScreen("shop"))
        await settle(pilot)
        assert "No uploads yet" in text(app, "#empty")
        table = app.screen.query_one("#history", DataTable)
        assert not table.display

        await upload(panel, user_id, "shop")  # e.g. scp from another terminal
        # No key is pressed while waiting: the screen's own refresh must bring the row in.
        uploaded = time.monotonic()
        while table.row_count == 0 and time.monotonic() - uploaded < 15:
            await pilot.pause(0.05)
        assert rows(app, "history")[0][0] == "v1-app.zip"
        assert table.display and app.focused is table

        message = await refused_upload(panel, user_id, "shop", "second.zip")
        uploaded = time.monotonic()
        while table.row_count == 1 and time.monotonic() - uploaded < 15:
            await pilot.pause(0.05)
        assert [row[0] for row in rows(app, "history")] == ["second.zip", "v1-app.zip"]
        assert message.split()[0] in rows(app, "history")[0][3]
        # The cursor stays on the row it was on, not on whatever is now in its place.
        assert app.screen.selected_archive().name == "v1-app.zip"


async def test_unchanged_polls_do_not_redraw(panel: Panel) -> None:
    visitor = await sign_up(panel)
    assert visitor.user is not None
    await panel.projects.create(acting(visitor.user.id), "shop")
    await upload(panel, visitor.user.id, "shop")
    app = GhstApp(panel, visitor)
    async with app.run_test(size=SIZE) as pilot:
        screen = ProjectScreen("shop")
        await app.push_screen(screen)
        await settle(pilot)
        shown: list[int] = []
        original = screen.show_archives

        def show_archives(archives: list[Archive]) -> None:
            shown.append(len(archives))
            original(archives)

        screen.show_archives = show_archives  # type: ignore[method-assign]
        for _ in range(3):
            screen.poll()
            await settle(pilot)
        assert shown == []


async def test_delete_a_version_after_confirming(panel: Panel) -> None:
    visitor = await sign_up(panel)
    assert visitor.user is not None
    user_id = visitor.user.id
    await panel.projects.create(acting(user_id), "shop")
    first = await upload(panel, user_id, "shop")
    await upload(panel, user_id, "shop")
    app = GhstApp(panel, visitor)
    notes = record_notifications(app)
    async with app.run_test(size=SIZE) as pilot:
        await app.push_screen(ProjectScreen("shop"))
        await settle(pilot)
        await pilot.press("down", "delete")
        await pilot.pause()
        assert isinstance(app.screen, ConfirmDialog)
        assert app.screen.question_title == "Delete v1-app.zip?"
        await pilot.press("n")
        await pilot.pause()
        assert len(rows(app, "history")) == 2
        await pilot.press("delete", "y")
        await settle(pilot)
        assert isinstance(app.screen, ProjectScreen)
        assert [row[0] for row in rows(app, "history")] == ["v2-app.zip"]
    assert [a.name for a in await panel.archives.list(acting(user_id), "shop")] == ["v2-app.zip"]
    assert await panel.storage.size(first.storage_key or "") is None
    assert titles(notes) == ["Version deleted"]


async def test_a_refused_upload_cannot_be_deleted_and_says_why(panel: Panel) -> None:
    visitor = await sign_up(panel)
    assert visitor.user is not None
    await panel.projects.create(acting(visitor.user.id), "shop")
    await refused_upload(panel, visitor.user.id, "shop", "app.zip")
    app = GhstApp(panel, visitor)
    notes = record_notifications(app)
    async with app.run_test(size=SIZE) as pilot:
        await app.push_screen(ProjectScreen("shop"))
        await settle(pilot)
        await pilot.press("delete")
        await pilot.pause()
        assert isinstance(app.screen, ProjectScreen)
    assert [(n.title, n.severity) for n in notes] == [("Nothing to delete", "warning")]
    assert "nothing of it is stored" in notes[0].message
    assert len(await panel.archives.list(acting(visitor.user.id), "shop")) == 1


async def test_copy_the_scp_command(panel: Panel) -> None:
    visitor = await sign_up(panel)
    assert visitor.user is not None
    await panel.projects.create(acting(visitor.user.id), "shop")
    app = GhstApp(panel, visitor)
    async with app.run_test(size=SIZE) as pilot:
        await app.push_screen(ProjectScreen("shop"))
        await settle(pilot)
        await pilot.press("c")
        await pilot.pause()
        assert app.clipboard == "scp -P 2222 app.zip alice@localhost:shop/"


async def test_another_users_project_cannot_be_opened(panel: Panel) -> None:
    bob = await sign_up(panel, "bob")
    assert bob.user is not None
    await panel.projects.create(acting(bob.user.id), "bobs-shop")
    await upload(panel, bob.user.id, "bobs-shop")
    app = GhstApp(panel, await sign_up(panel, "alice"))
    notes = record_notifications(app)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await app.push_screen(ProjectScreen("bobs-shop"))
        await settle(pilot)
        await pilot.pause()
        assert isinstance(app.screen, HomeScreen)
    assert [(n.title, n.message, n.severity) for n in notes] == [
        ("Not found", "You have no project named 'bobs-shop'.", "error")
    ]


async def test_a_project_deleted_elsewhere_closes_its_screen(panel: Panel) -> None:
    visitor = await sign_up(panel)
    assert visitor.user is not None
    await panel.projects.create(acting(visitor.user.id), "shop")
    app = GhstApp(panel, visitor)
    notes = record_notifications(app)
    async with app.run_test(size=SIZE) as pilot:
        await app.push_screen(ProjectsScreen())
        await settle(pilot)
        await pilot.press("enter")
        await settle(pilot)
        assert isinstance(app.screen, ProjectScreen)
        await panel.archives.delete_project(
            acting(visitor.user.id), "shop", "shop"
        )  # another session
        started = time.monotonic()
        while isinstance(app.screen, ProjectScreen) and time.monotonic() - started < 5:
            await pilot.pause(0.05)
        await settle(pilot)
        assert isinstance(app.screen, ProjectsScreen)
        assert rows(app, "projects") == []
    assert titles(notes) == ["Not found"]


async def test_a_failing_poll_is_reported_once(
    panel: Panel, monkeypatch: pytest.MonkeyPatch
) -> None:
    visitor = await sign_up(panel)
    assert visitor.user is not None
    await panel.projects.create(acting(visitor.user.id), "shop")
    app = GhstApp(panel, visitor)
    notes = record_notifications(app)
    async with app.run_test(size=SIZE) as pilot:
        screen = ProjectScreen("shop")
        await app.push_screen(screen)
        await settle(pilot)

        async def down(user_id: int, project: str) -> list[Archive]:
            raise UnavailableError("The database is not answering.")

        working = panel.archives.list
        monkeypatch.setattr(panel.archives, "list", down)
        for _ in range(3):
            screen.poll()
            await settle(pilot)
        assert titles(notes) == ["Service unavailable"]
        monkeypatch.setattr(panel.archives, "list", working)
        await upload(panel, visitor.user.id, "shop")
        screen.poll()
        await settle(pilot)
        assert [row[0] for row in rows(app, "history")] == ["v1-app.zip"]
        monkeypatch.setattr(panel.archives, "list", down)
        screen.poll()
        await settle(pilot)
        assert titles(notes) == ["Service unavailable", "Service unavailable"]


@pytest.mark.e2e
async def test_the_commands_on_screen_upload_with_openssh(panel: Panel, tmp_path: Path) -> None:
    """The scp line `c` copies and the sftp lines shown, run as they are by OpenSSH's clients
    against the real server (only the test's key and options added): each upload shows on
    the open project screen without a keypress."""
    async with running_server(panel) as server:
        panel.settings = dataclasses.replace(panel.settings, ssh_port=server.port or 0)
        alice = await account(panel, tmp_path, "alice", projects=("shop",))
        write(tmp_path / "app.zip", app_zip())
        visitor = await dashboard_visitor(panel, alice)
        app = GhstApp(panel, visitor)
        async with app.run_test(size=SIZE) as pilot:
            screen = ProjectScreen("shop")
            await app.push_screen(screen)
            await settle(pilot)
            await pilot.press("c")
            await pilot.pause()
            scp = shlex.split(app.clipboard)
            assert scp[:3] == ["scp", "-P", str(server.port)]
            client = ["/usr/bin/scp", *OPENSSH_OPTIONS, "-i", str(alice.identity), *scp[1:]]
            result = await run(client, cwd=tmp_path)
            assert result.status == 0, result.output
            await shows(pilot, screen, ["v1-app.zip"])

            # "sftp  sftp -P <port> alice@localhost   then   put app.zip shop/"
            sftp, put = text(app, "#sftp-command").removeprefix("sftp").split("then")
            assert put.strip() == "put app.zip shop/"
            batch = write(tmp_path / "batch.txt", f"{put.strip()}\n".encode())
            client = [
                "/usr/bin/sftp",
                *OPENSSH_OPTIONS,
                *("-i", str(alice.identity), "-b", str(batch)),
                *shlex.split(sftp)[1:],
            ]
            result = await run(client, cwd=tmp_path)
            assert result.status == 0, result.output
            await shows(pilot, screen, ["v2-app.zip", "v1-app.zip"])


@pytest.mark.e2e
async def test_a_project_made_with_sftp_mkdir_appears_without_a_keypress(
    panel: Panel, tmp_path: Path
) -> None:
    async with running_server(panel) as server:
        alice = await account(panel, tmp_path, "alice", projects=("shop",))
        visitor = await dashboard_visitor(panel, alice)
        app = GhstApp(panel, visitor)
        async with app.run_test(size=SIZE) as pilot:
            screen = ProjectsScreen()
            await app.push_screen(screen)
            await settle(pilot)
            assert [project.name for project in screen.projects] == ["shop"]

            # Another terminal: OpenSSH's sftp makes a project, then uploads to it.
            batch = write(tmp_path / "batch.txt", b"mkdir diary\nput app.zip diary/\n")
            write(tmp_path / "app.zip", app_zip())
            client = [
                "/usr/bin/sftp",
                *OPENSSH_OPTIONS,
                *("-i", str(alice.identity), "-P", str(server.port), "-b", str(batch)),
                "alice@127.0.0.1",
            ]
            result = await run(client, cwd=tmp_path)
            assert result.status == 0, result.output
            await projects_show(pilot, screen, [["diary", "1"], ["shop", "0"]])
            assert rows(app, "projects")[0][:3] == ["diary", "http://diary.localhost", "1"]
            used, quota = await panel.archives.usage(acting(alice.id))
            assert used > 0
            # The rows' data can land a frame before the storage line is redrawn from it.
            wanted = f"Storage: {usage_line(used, quota)}"
            await wait_for(pilot, lambda: text(app, "#usage") == wanted)
            # The cursor stayed on the project it was on.
            assert screen.selected_project().name == "shop"  # type: ignore[union-attr]


async def test_the_projects_list_redraws_only_when_it_changed(panel: Panel) -> None:
    visitor = await sign_up(panel)
    assert visitor.user is not None
    await panel.projects.create(acting(visitor.user.id), "shop")
    app = GhstApp(panel, visitor)
    async with app.run_test(size=SIZE) as pilot:
        screen = ProjectsScreen()
        await app.push_screen(screen)
        await settle(pilot)
        shown: list[list[str]] = []
        original = screen.show_projects

        def show_projects(projects: list[Project], select: str | None = None) -> None:
            shown.append([project.name for project in projects])
            original(projects, select)

        screen.show_projects = show_projects  # type: ignore[method-assign]
        for _ in range(3):
            screen.poll()
            await settle(pilot)
        assert shown == []
        await panel.projects.create(acting(visitor.user.id), "diary")
        screen.poll()
        await settle(pilot)
        assert shown == [["diary", "shop"]]


async def test_a_failing_projects_poll_is_reported_once(
    panel: Panel, monkeypatch: pytest.MonkeyPatch
) -> None:
    visitor = await sign_up(panel)
    assert visitor.user is not None
    await panel.projects.create(acting(visitor.user.id), "shop")
    app = GhstApp(panel, visitor)
    notes = record_notifications(app)
    async with app.run_test(size=SIZE) as pilot:
        screen = ProjectsScreen()
        await app.push_screen(screen)
        await settle(pilot)

        async def down(user_id: int) -> list[Project]:
            raise UnavailableError("The database is not answering.")

        working = panel.projects.list
        monkeypatch.setattr(panel.projects, "list", down)
        for _ in range(3):
            screen.poll()
            await settle(pilot)
        assert titles(notes) == ["Service unavailable"]
        assert [row[0] for row in rows(app, "projects")] == ["shop"]  # still shown
        monkeypatch.setattr(panel.projects, "list", working)
        await panel.projects.create(acting(visitor.user.id), "diary")
        screen.poll()
        await settle(pilot)
        assert [row[0] for row in rows(app, "projects")] == ["diary", "shop"]
        monkeypatch.setattr(panel.projects, "list", down)
        screen.poll()
        await settle(pilot)
        assert titles(notes) == ["Service unavailable", "Service unavailable"]


async def projects_show(pilot: Pilot[Any], screen: ProjectsScreen, wanted: list[list[str]]) -> None:
    """Wait (without a keypress) until the list shows these [name, versions] rows."""
    started = time.monotonic()
    while time.monotonic() - started < 10:
        shown = [[p.name, str(p.versions)] for p in screen.projects]
        if shown == wanted:
            return
        await pilot.pause(0.05)
    assert [[p.name, str(p.versions)] for p in screen.projects] == wanted


async def shows(pilot: Pilot[Any], screen: ProjectScreen, names: list[str]) -> None:
    started = time.monotonic()
    while [a.name for a in screen.archives or []] != names and time.monotonic() - started < 5:
        await pilot.pause(0.05)
    waited = time.monotonic() - started
    assert [a.name for a in screen.archives or []] == names
    assert waited < 2.5, f"the upload showed after {waited:.2f} s"


async def dashboard_visitor(panel: Panel, who: Account) -> Visitor:
    """A dashboard session for an account made by the e2e helpers."""
    assert who.user is not None
    session = await panel.sessions.open(who.user.id, "key", "127.0.0.1")
    return Visitor("127.0.0.1", who.name, user=who.user, session=session)
