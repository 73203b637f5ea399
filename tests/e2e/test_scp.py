"""scp end to end with OpenSSH's client: SFTP mode (OpenSSH 9's default) and legacy `scp -O`,
both served by the same SFTP server class and the same upload path."""

from __future__ import annotations

from pathlib import Path

import pytest

from core.panel import Panel
from sshd.server import GhstServer
from tests.actors import acting
from tests.e2e.transfers import (
    Account,
    account,
    app_zip,
    big_zip,
    kill_mid_upload,
    nothing_left,
    remote,
    run,
    scp_command,
    versions,
    visitor,
    write,
)

pytestmark = pytest.mark.e2e

MODES = [pytest.param((), id="sftp-mode"), pytest.param(("-O",), id="legacy")]


@pytest.fixture
async def alice(panel: Panel, tmp_path: Path) -> Account:
    return await account(panel, tmp_path, "alice", projects=("shop",))


@pytest.fixture
async def bob(panel: Panel, tmp_path: Path) -> Account:
    return await account(panel, tmp_path, "bob", projects=("diary",))


@pytest.mark.parametrize("mode", MODES)
async def test_upload_download_and_exit_status_zero(
    ssh_server: GhstServer, panel: Panel, alice: Account, tmp_path: Path, mode: tuple[str, ...]
) -> None:
    data = app_zip()
    write(tmp_path / "app.zip", data)
    result = await run(
        scp_command(ssh_server, alice, *mode, "app.zip", remote(alice, "shop/")), cwd=tmp_path
    )
    assert result.status == 0, result.output
    assert "ghst: shop: stored app.zip as v1-app.zip" in result.stderr
    # An explicit file name, an absolute path, and -p (mode and times: accepted, not kept).
    result = await run(
        scp_command(ssh_server, alice, *mode, "-p", "app.zip", remote(alice, "/shop/site.zip")),
        cwd=tmp_path,
    )
    assert result.status == 0, result.output
    assert "ghst: shop: stored site.zip as v2-site.zip" in result.stderr
    assert "denied" not in result.output
    assert [a.name for a in await versions(panel, alice, "shop")] == ["v2-site.zip", "v1-app.zip"]

    result = await run(
        scp_command(ssh_server, alice, *mode, remote(alice, "shop/v1-app.zip"), "back.zip"),
        cwd=tmp_path,
    )
    assert result.status == 0, result.output
    assert (tmp_path / "back.zip").read_bytes() == data
    result = await run(
        scp_command(ssh_server, alice, *mode, remote(alice, "/shop/v2-site.zip"), "."),
        cwd=tmp_path,
    )
    assert result.status == 0, result.output
    assert (tmp_path / "v2-site.zip").read_bytes() == data
    # Wildcards are matched on the server's listing.
    (tmp_path / "all").mkdir()
    result = await run(
        scp_command(ssh_server, alice, *mode, remote(alice, "shop/v*.zip"), "all/"),
        cwd=tmp_path,
    )
    assert result.status == 0, result.output
    assert sorted(path.name for path in (tmp_path / "all").iterdir()) == [
        "v1-app.zip",
        "v2-site.zip",
    ]
    assert await nothing_left(panel, ssh_server)


@pytest.mark.parametrize("mode", MODES)
async def test_a_large_upload_arrives_byte_identical(
    ssh_server: GhstServer, panel: Panel, alice: Account, tmp_path: Path, mode: tuple[str, ...]
) -> None:
    # Many SSH packets per socket read, many write buffers, disk writeback started on the way.
    data = big_zip(40 * 1024 * 1024)
    write(tmp_path / "big.zip", data)
    result = await run(
        scp_command(ssh_server, alice, *mode, "big.zip", remote(alice, "shop/")), cwd=tmp_path
    )
    assert result.status == 0, result.output
    [version] = await versions(panel, alice, "shop")
    assert (version.name, version.size) == ("v1-big.zip", len(data))
    result = await run(
        scp_command(ssh_server, alice, *mode, remote(alice, "shop/v1-big.zip"), "back.zip"),
        cwd=tmp_path,
    )
    assert result.status == 0, result.output
    assert (tmp_path / "back.zip").read_bytes() == data
    assert await nothing_left(panel, ssh_server)


@pytest.mark.parametrize("mode", MODES)
async def test_a_refused_archive_fails_with_its_reason(
    ssh_server: GhstServer, panel: Panel, alice: Account, tmp_path: Path, mode: tuple[str, ...]
) -> None:
    write(tmp_path / "app.zip", app_zip({"README.md": b"no app in here"}))
    result = await run(
        scp_command(ssh_server, alice, *mode, "app.zip", remote(alice, "shop/")), cwd=tmp_path
    )
    assert result.status != 0
    [refused] = await versions(panel, alice, "shop")
    assert refused.status == "rejected" and refused.version is None
    assert refused.message in result.stderr
    assert result.stderr.count(refused.message) == 1
    assert await nothing_left(panel, ssh_server)


@pytest.mark.parametrize("mode", MODES)
async def test_over_quota_is_refused_and_nothing_stored(
    ssh_server: GhstServer, panel: Panel, alice: Account, tmp_path: Path, mode: tuple[str, ...]
) -> None:
    async with panel.pool.acquire() as conn:
        await conn.execute("UPDATE users SET storage_quota_bytes = 100000 WHERE id = $1", alice.id)
    write(tmp_path / "big.zip", big_zip(300_000))
    result = await run(
        scp_command(ssh_server, alice, *mode, "big.zip", remote(alice, "shop/")), cwd=tmp_path
    )
    assert result.status != 0
    assert "This upload does not fit in your storage quota" in result.stderr
    assert await versions(panel, alice, "shop") == []
    assert await nothing_left(panel, ssh_server)


@pytest.mark.parametrize("mode", MODES)
async def test_another_users_project_looks_like_a_missing_one(
    ssh_server: GhstServer,
    panel: Panel,
    alice: Account,
    bob: Account,
    tmp_path: Path,
    mode: tuple[str, ...],
) -> None:
    write(tmp_path / "app.zip", app_zip())
    result = await run(
        scp_command(ssh_server, alice, *mode, "app.zip", remote(alice, "shop/")), cwd=tmp_path
    )
    assert result.status == 0, result.output

    async def attempts(project: str) -> list[list[str]]:
        outputs = []
        for source, target in (
            ("app.zip", remote(bob, f"{project}/")),
            ("app.zip", remote(bob, f"/{project}/app.zip")),
            (remote(bob, f"/{project}/v1-app.zip"), "stolen.zip"),
            (remote(bob, f"{project}/*"), "."),
        ):
            result = await run(scp_command(ssh_server, bob, *mode, source, target), cwd=tmp_path)
            assert result.status != 0, (source, target)
            outputs.append(sorted(result.output.replace(project, "<project>").splitlines()))
        return outputs

    assert await attempts("shop") == await attempts("nope")
    assert not (tmp_path / "stolen.zip").exists()
    assert [a.name for a in await versions(panel, alice, "shop")] == ["v1-app.zip"]
    assert await nothing_left(panel, ssh_server)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize(
    "path", ["/shop/../../etc/passwd", "//etc/passwd", "../etc/passwd", "/shop/../../diary/"]
)
async def test_traversal_is_refused(
    ssh_server: GhstServer,
    panel: Panel,
    alice: Account,
    tmp_path: Path,
    mode: tuple[str, ...],
    path: str,
) -> None:
    await panel.projects.create(acting(alice.id), "diary")
    write(tmp_path / "app.zip", app_zip())
    up = await run(
        scp_command(ssh_server, alice, *mode, "app.zip", remote(alice, path)), cwd=tmp_path
    )
    down = await run(
        scp_command(ssh_server, alice, *mode, remote(alice, path), "got"), cwd=tmp_path
    )
    assert up.status != 0 and down.status != 0
    assert not (tmp_path / "got").exists()
    assert await versions(panel, alice, "shop") == []
    assert await versions(panel, alice, "diary") == []


@pytest.mark.parametrize("mode", MODES)
async def test_directories_are_not_uploaded(
    ssh_server: GhstServer, panel: Panel, alice: Account, tmp_path: Path, mode: tuple[str, ...]
) -> None:
    folder = tmp_path / "site"
    folder.mkdir()
    write(folder / "app.zip", app_zip())
    result = await run(
        scp_command(ssh_server, alice, *mode, "-r", "site", remote(alice, "shop/")), cwd=tmp_path
    )
    assert result.status != 0
    assert await versions(panel, alice, "shop") == []
    assert await nothing_left(panel, ssh_server)


@pytest.mark.parametrize("mode", MODES)
async def test_scp_killed_mid_upload_leaves_nothing(
    ssh_server: GhstServer, panel: Panel, alice: Account, tmp_path: Path, mode: tuple[str, ...]
) -> None:
    write(tmp_path / "big.zip", big_zip(3 * 1024 * 1024))
    # -l: 4 Mbit/s, so the 3 MiB take ~6 s and the client dies half way.
    command = scp_command(ssh_server, alice, *mode, "-l", "4000", "big.zip", remote(alice, "shop/"))
    await kill_mid_upload(command, tmp_path, ssh_server, panel)
    assert await versions(panel, alice, "shop") == []


@pytest.mark.parametrize("mode", MODES)
async def test_visitors_cannot_copy_anything(
    ssh_server: GhstServer, panel: Panel, alice: Account, tmp_path: Path, mode: tuple[str, ...]
) -> None:
    stranger = visitor(tmp_path, "stranger")
    write(tmp_path / "app.zip", app_zip())
    up = await run(
        scp_command(ssh_server, stranger, *mode, "app.zip", remote(stranger, "shop/")), cwd=tmp_path
    )
    down = await run(
        scp_command(ssh_server, stranger, *mode, remote(stranger, "shop/*"), "."), cwd=tmp_path
    )
    assert up.status != 0 and down.status != 0
    assert "File transfers need an account" in up.stderr
    assert await versions(panel, alice, "shop") == []
