"""Issue 9 point 3: the panel must never read a host file for a tenant.

An uploaded app is a folder the tenant made, symlinks included. Every path the tenant names (the
compose file, build contexts, Dockerfiles, env_files, `extends` files, `.env`, `.dockerignore`)
is resolved the way the kernel resolves it and confined to the app folder; only regular files are
read, and dockerd gets a build context the panel built itself from what it checked.

The upload already refuses links that point out of the archive, devices and FIFOs
(core/archives/checks.py), so what can still reach a deploy is links that stay inside the app and
paths written in the compose file. Tricks an upload cannot carry (FIFOs, /dev/zero,
/proc/self/environ) are tested against core/confined.py directly, with real files on disk, in
both modes: the kernel's openat2 and the panel's own walk.
"""

from __future__ import annotations

import io
import json
import os
import re
import stat
import tarfile
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Iterator, Mapping
from pathlib import Path

import docker
import pytest

from core import confined
from core.confined import PathRefused, read_beneath, resolve_dir_beneath
from core.deploy.service import Deployment
from core.errors import ValidationError
from core.runtime.build_context import write_context
from core.runtime.compose.errors import ComposeRejected
from core.runtime.compose.load import parse_compose
from core.runtime.engine import DockerEngine
from tests.actors import acting, as_user
from tests.fixtures_deploy import Deploying
from tests.fixtures_nginx import http_request

pytestmark = pytest.mark.timeout(300)

SECRET = "ghst-paths-marker-7f3a9c"


@pytest.fixture(params=["openat2", "walk"])
def mode(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """Both ways of confining a path: the kernel's (where it has openat2) and the panel's walk."""
    if request.param == "openat2":
        assert confined.kernel_confinement(), "this kernel should have openat2 (Linux 5.6+)"
    else:
        monkeypatch.setattr(confined._openat2, "usable", False)
    yield request.param


@pytest.fixture
def trap(tmp_path: Path) -> Path:
    """An app folder next to a secret, holding every kind of link and special file a tenant could
    hope to read through."""
    (tmp_path / "secret.key").write_text(SECRET)
    app = tmp_path / "app"
    (app / "sub" / "deeper").mkdir(parents=True)
    (app / "Dockerfile").write_text("FROM scratch\n")
    (app / "sub" / "Dockerfile").write_text("FROM scratch\n")
    os.symlink("sub", app / "inside")  # a link that stays inside: fine
    os.symlink("../secret.key", app / "up")
    os.symlink("sub/deeper/../../../secret.key", app / "up-through-dirs")
    os.symlink(str(tmp_path / "secret.key"), app / "absolute")
    os.symlink("/proc/self/environ", app / "environ")
    os.symlink("/proc/self/root/etc/hostname", app / "magic")
    os.symlink("/dev/zero", app / "zero")
    os.symlink("loop", app / "loop")
    os.mkfifo(app / "fifo")
    os.symlink("fifo", app / "fifo-link")
    os.mknod(app / "null", 0o600 | 0o020000, os.makedev(1, 3))  # a real character device
    return app


READABLE = [
    ("Dockerfile", b"FROM scratch\n"),
    ("inside/Dockerfile", b"FROM scratch\n"),
    ("inside/../Dockerfile", b"FROM scratch\n"),
    ("sub/deeper/../Dockerfile", b"FROM scratch\n"),
    ("./inside/./deeper/../Dockerfile", b"FROM scratch\n"),
]


@pytest.mark.parametrize(("relative", "content"), READABLE)
def test_paths_inside_the_app_are_read(
    mode: str, trap: Path, relative: str, content: bytes
) -> None:
    assert read_beneath(trap, relative, limit=1024, what="The Dockerfile") == content


REFUSED = [
    ("up", "leads outside the app folder"),
    ("up-through-dirs", "leads outside the app folder"),
    ("absolute", "leads outside the app folder"),
    ("../secret.key", "leads outside the app folder"),
    ("inside/../../secret.key", "leads outside the app folder"),
    ("inside/deeper/../../../secret.key", "leads outside the app folder"),
    ("environ", "leads outside the app folder"),
    ("magic", "leads outside the app folder"),
    ("zero", "leads outside the app folder"),
    ("loop", "goes through a link the panel does not follow"),
    ("fifo", "is a named pipe (FIFO), not a regular file"),
    ("fifo-link", "is a named pipe (FIFO), not a regular file"),
    ("null", "is a device, not a regular file"),
    ("sub", "is a folder, not a regular file"),
    ("Dockerfile/x", "goes through something that is not a folder"),
    ("missing", "is not in the app"),
    (str(Path("/etc/hostname")), "is an absolute path"),
    ("/proc/self/environ", "is an absolute path"),
]


@pytest.mark.parametrize(("relative", "message"), REFUSED)
def test_paths_out_of_the_app_or_to_special_files_are_refused(
    mode: str, trap: Path, relative: str, message: str
) -> None:
    with pytest.raises(PathRefused) as refused:
        read_beneath(trap, relative, limit=1 << 20, what="The Dockerfile")
    assert refused.value.message.startswith("The Dockerfile '")
    assert message in refused.value.message
    assert SECRET not in refused.value.message


def test_a_file_larger_than_the_limit_is_refused_without_reading_it_whole(
    mode: str, trap: Path
) -> None:
    (trap / "big").write_bytes(b"x" * 5000)
    with pytest.raises(PathRefused, match="'big' is larger than 4 KiB"):
        read_beneath(trap, "big", limit=4096, what="The env file")
    assert read_beneath(trap, "big", limit=5000, what="The env file") == b"x" * 5000


def test_folders_resolve_inside_the_app_only(mode: str, trap: Path) -> None:
    real = Path(os.path.realpath(trap))
    assert resolve_dir_beneath(trap, "inside", what="The build context") == real / "sub"
    assert resolve_dir_beneath(trap, "inside/deeper/..", what="The build context") == real / "sub"
    assert resolve_dir_beneath(trap, ".", what="The build context") == real
    os.symlink("..", trap / "parent")
    for relative, message in [
        ("parent", "leads outside the app folder"),
        ("inside/../..", "leads outside the app folder"),
        ("Dockerfile", "is a file, not a folder"),
        ("fifo", "is a named pipe (FIFO), not a folder"),
    ]:
        with pytest.raises(PathRefused, match=re.escape(message)):
            resolve_dir_beneath(trap, relative, what="The build context")


# --- through a deploy of an uploaded archive, with the real dockerd -----------------------------

# The app is unpacked in <data dir>/builds/<deployment>/app: three `..` from the app's top lead
# to the panel's data directory, where its secrets are.
TO_DATA_DIR = "../../.."
# A link the upload accepts (it stays inside the app): a/b/c/top is the app's top folder again,
# so text that counts folders ("a/b/c/top/../../.." is "a") and the kernel disagree.
DEEP_LINK = {"a/b/c/top": "../../.."}


def archive(files: Mapping[str, str], links: Mapping[str, str] = {}) -> bytes:
    """A tar as a tenant would make it, symbolic links included."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for name, text in files.items():
            data = text.encode()
            info = tarfile.TarInfo(name)
            info.size, info.mtime = len(data), int(time.time())
            tar.addfile(info, io.BytesIO(data))
        for name, target in links.items():
            info = tarfile.TarInfo(name)
            info.type, info.linkname, info.mtime = tarfile.SYMTYPE, target, int(time.time())
            tar.addfile(info)
    return buffer.getvalue()


@pytest.fixture
def host_secrets(deploying: Deploying) -> list[str]:
    """A marker file in the panel's data directory, and the panel's own JWT key: what a tenant
    must never see."""
    data_dir = deploying.panel.settings.data_dir
    (data_dir / "marker.key").write_text(SECRET + "\n")
    jwt_line = (data_dir / "jwt.key").read_text().splitlines()[0].strip()
    assert len(jwt_line) >= 16
    return [SECRET, SECRET.upper(), jwt_line, jwt_line.upper()]


async def deploy_archive(
    deploying: Deploying,
    project: str,
    files: Mapping[str, str],
    links: Mapping[str, str] = {},
) -> Deployment:
    await deploying.panel.projects.create(acting(deploying.user_id), project)
    transfer = await deploying.panel.archives.begin_upload(
        acting(deploying.user_id), project, "app.tar"
    )
    await transfer.write(archive(files, links))
    await transfer.finish()
    queued = await deploying.panel.deployments.deploy(as_user(deploying.user_id), project)
    return await deploying.settle(queued)


async def assert_refused(
    deploying: Deploying,
    docker_client: docker.DockerClient,
    done: Deployment,
    message: str,
    secrets: list[str],
) -> None:
    """Failed with `message`, nothing of the host's secrets anywhere, nothing left behind."""
    log = await deploying.log(done)
    assert done.state == "failed", log
    assert message in done.error, done.error
    for secret in secrets:
        assert secret not in done.error and secret not in log
    mine = {"label": [f"ghst.instance={deploying.panel.settings.instance}"]}
    project = {"label": [*mine["label"], f"ghst.project={done.project}"]}
    assert docker_client.api.images(filters=project) == []
    assert docker_client.api.containers(all=True, filters=project) == []
    # No image of this test's instance holds a layer built from the secret either.
    for image in docker_client.api.images(filters=mine):
        history = json.dumps(docker_client.api.history(image["Id"]))
        assert not any(secret in history for secret in secrets)
    assert not (deploying.panel.settings.builds_dir / str(done.id)).exists()


def compose_file(base_image: str, build: str, extra: str = "") -> str:
    return f"services:\n  web:\n    build: {build}\n    ports: ['8000']\n{extra}"


def site(base_image: str, page: str = "hello") -> dict[str, str]:
    return {
        "Dockerfile": (
            f"FROM {base_image}\nCOPY index.html /www/index.html\nEXPOSE 8000\n"
            'CMD ["httpd", "-f", "-p", "8000", "-h", "/www"]\n'
        ),
        "index.html": page,
    }


async def test_the_seen_attack_a_dockerfile_through_a_linked_context_is_refused(
    mode: str,
    deploying: Deploying,
    docker_client: docker.DockerClient,
    base_image: str,
    host_secrets: list[str],
) -> None:
    """The issue's attack: the context is a link that stays in the app, the Dockerfile climbs
    out of it; as text it is a decoy inside the app, for the kernel the panel's secret."""
    for target in ("marker.key", "jwt.key"):
        done = await deploy_archive(
            deploying,
            f"seen-{target.split('.')[0]}",
            {
                "compose.yaml": compose_file(
                    base_image, f"{{context: a/b/c/top, dockerfile: {TO_DATA_DIR}/{target}}}"
                ),
                f"a/{target}": f"FROM {base_image}\n",  # the decoy the text check saw
            },
            DEEP_LINK,
        )
        await assert_refused(
            deploying,
            docker_client,
            done,
            f"Service 'web': the Dockerfile '{TO_DATA_DIR}/{target}' leads outside its build "
            "context folder",
            host_secrets,
        )


COMPOSE_TRICKS = [
    pytest.param(
        "{context: a/b/c/top/../../..}",
        "",
        "Service 'web': the build context 'a/b/c/top/../../..' leads outside the app folder",
        id="context-dotdot-after-link",
    ),
    pytest.param(
        "{context: ., dockerfile: a/b/c/top/../../../marker.key}",
        "",
        "Service 'web': the Dockerfile 'a/b/c/top/../../../marker.key' leads outside its build "
        "context folder",
        id="dockerfile-dotdot-after-link",
    ),
    pytest.param(
        "{context: a/b/c/top, dockerfile: ../Dockerfile}",
        "",
        "Service 'web': the Dockerfile '../Dockerfile' leads outside its build context folder",
        id="dockerfile-above-its-context",
    ),
    pytest.param(
        "{context: DATA_DIR}",
        "",
        "Service 'web' builds from 'DATA_DIR', which is outside the app folder",
        id="absolute-context",
    ),
    pytest.param(
        "{context: ., dockerfile: DATA_DIR/marker.key}",
        "",
        "Service 'web' builds with the Dockerfile 'DATA_DIR/marker.key', an absolute path",
        id="absolute-dockerfile",
    ),
    pytest.param(
        "a",
        "    env_file: [a/b/c/top/../../../marker.key]\n",
        "Service 'web': the env_file 'a/b/c/top/../../../marker.key' leads outside the app folder",
        id="env-file-dotdot-after-link",
    ),
    pytest.param(
        "a",
        "    env_file: [DATA_DIR/marker.key]\n",
        "Service 'web' reads env_file 'DATA_DIR/marker.key', which is outside the app folder",
        id="absolute-env-file",
    ),
    pytest.param(
        "a",
        "    extends: {file: a/b/c/top/../../../marker.key, service: web}\n",
        "Service 'web': the extends file 'a/b/c/top/../../../marker.key' leads outside the app "
        "folder",
        id="extends-dotdot-after-link",
    ),
    pytest.param(
        "a",
        "    extends: {file: DATA_DIR/marker.key, service: web}\n",
        "Service 'web' extends a service in 'DATA_DIR/marker.key', which is outside the app folder",
        id="absolute-extends",
    ),
]


@pytest.mark.parametrize(("build", "extra", "message"), COMPOSE_TRICKS)
async def test_compose_paths_that_leave_the_app_are_refused(
    deploying: Deploying,
    docker_client: docker.DockerClient,
    base_image: str,
    host_secrets: list[str],
    build: str,
    extra: str,
    message: str,
) -> None:
    data_dir = str(deploying.panel.settings.data_dir)
    files = {
        "compose.yaml": compose_file(
            base_image, build.replace("DATA_DIR", data_dir), extra.replace("DATA_DIR", data_dir)
        ),
        # Decoys where text that counts folders would land, so only the kernel's reading differs.
        "a/Dockerfile": f"FROM {base_image}\n",
        "a/marker.key": "A=decoy\n",
    }
    done = await deploy_archive(deploying, "tricks", files, DEEP_LINK)
    await assert_refused(
        deploying, docker_client, done, message.replace("DATA_DIR", data_dir), host_secrets
    )


async def test_a_dockerignore_outside_its_build_context_is_refused(
    deploying: Deploying,
    docker_client: docker.DockerClient,
    base_image: str,
    host_secrets: list[str],
) -> None:
    files = {
        "compose.yaml": compose_file(base_image, "{context: web}"),
        "ignore-rules": "private.txt\n",
        **{f"web/{name}": text for name, text in site(base_image).items()},
    }
    done = await deploy_archive(
        deploying, "ignored", files, {"web/.dockerignore": "../ignore-rules"}
    )
    await assert_refused(
        deploying,
        docker_client,
        done,
        "The .dockerignore '.dockerignore' leads outside the build context folder",
        host_secrets,
    )


LINKED_SITE = {
    "real/Dockerfile.site": (
        'FROM BASE\nCOPY . /www/\nEXPOSE 8000\nCMD ["httpd", "-f", "-p", "8000", "-h", "/www"]\n'
    ),
    "real/index.html": "linked",
    "real/private.txt": "ignored",
    "real/rules/ignore": "private.txt\n",
}
LINKED_SITE_LINKS = {
    "real/Dockerfile": "Dockerfile.site",
    "real/.dockerignore": "rules/ignore",
    "real/about.html": "./rules/../index.html",
}


async def test_links_inside_a_compose_app_still_build(
    deploying: Deploying,
    docker_client: docker.DockerClient,
    base_image: str,
    host_secrets: list[str],
) -> None:
    """Links inside the app are the tenant's right: a linked context, a linked Dockerfile and a
    linked .dockerignore work; links reach dockerd as links, ignored files stay out."""
    files = {name: text.replace("BASE", base_image) for name, text in LINKED_SITE.items()}
    files["compose.yaml"] = compose_file(base_image, "{context: site/.}")
    done = await deploy_archive(deploying, "linked", files, {**LINKED_SITE_LINKS, "site": "real"})
    log = await deploying.log(done)
    assert done.state == "running", log
    assert (await http_request(deploying.router, "linked")).text.strip() == "linked"
    assert (await http_request(deploying.router, "linked", "/about.html")).text.strip() == "linked"
    assert (await http_request(deploying.router, "linked", "/private.txt")).status == 404
    assert not any(secret in log for secret in host_secrets)


async def test_links_inside_a_dockerfile_app_still_build(
    deploying: Deploying,
    docker_client: docker.DockerClient,
    base_image: str,
    host_secrets: list[str],
) -> None:
    files = {
        name.removeprefix("real/"): text.replace("BASE", base_image)
        for name, text in LINKED_SITE.items()
    }
    # The upload wants a real Dockerfile at the top of a Dockerfile app.
    files["Dockerfile"] = files.pop("Dockerfile.site")
    links = {
        name.removeprefix("real/"): target
        for name, target in LINKED_SITE_LINKS.items()
        if name != "real/Dockerfile"
    }
    done = await deploy_archive(deploying, "plain", files, links)
    log = await deploying.log(done)
    assert done.state == "running", log
    assert (await http_request(deploying.router, "plain", "/about.html")).text.strip() == "linked"
    assert (await http_request(deploying.router, "plain", "/private.txt")).status == 404
    assert not any(secret in log for secret in host_secrets)


async def test_links_out_of_the_app_are_refused_at_upload(
    deploying: Deploying, base_image: str
) -> None:
    """What the upload refuses never reaches a build: links that leave the app, even through
    another link (the kernel's reading), and absolute ones."""
    await deploying.panel.projects.create(acting(deploying.user_id), "upload")
    for links in (
        {"Dockerfile": "../../../marker.key"},
        {**DEEP_LINK, ".dockerignore": "a/b/c/top/../../../marker.key"},
        {"Dockerfile": "/proc/self/environ"},
    ):
        transfer = await deploying.panel.archives.begin_upload(
            acting(deploying.user_id), "upload", "app.tar"
        )
        await transfer.write(
            archive(site(base_image) if "Dockerfile" not in links else {"index.html": "x"}, links)
        )
        with pytest.raises(ValidationError, match="outside the archive"):
            await transfer.finish()


# --- the build engine on folders the upload could never produce --------------------------------


@pytest.fixture
async def engine(docker_client: docker.DockerClient) -> AsyncIterator[DockerEngine]:
    instance = f"ghst-paths-{uuid.uuid4().hex[:10]}"
    engine = DockerEngine(instance=instance)
    try:
        yield engine
    finally:
        await engine.close()
        label = {"label": [f"ghst.instance={instance}"]}
        for image in docker_client.api.images(filters=label):
            docker_client.api.remove_image(image["Id"], force=True)


def engine_trap(tmp_path: Path, base_image: str) -> Path:
    (tmp_path / "secret.key").write_text(SECRET + "\n")
    app = tmp_path / "app"
    app.mkdir()
    (app / "Dockerfile").write_text(f"FROM {base_image}\nCOPY . /x/\n")
    (app / "index.html").write_text("hello")
    return app


ENGINE_TRICKS = [
    pytest.param(
        "pipe", "fifo", "The build context holds 'pipe', which is a named pipe (FIFO)", id="fifo"
    ),
    pytest.param(
        "sub/null", "device", "The build context holds 'sub/null', which is a device", id="device"
    ),
    pytest.param(
        "Dockerfile",
        "/dev/zero",
        "The Dockerfile 'Dockerfile' leads outside the build context folder",
        id="dockerfile-dev-zero",
    ),
    pytest.param(
        "Dockerfile",
        "/proc/self/environ",
        "The Dockerfile 'Dockerfile' leads outside the build context folder",
        id="dockerfile-environ",
    ),
    pytest.param(
        "Dockerfile",
        "../secret.key",
        "The Dockerfile 'Dockerfile' leads outside the build context folder",
        id="dockerfile-link-up",
    ),
    pytest.param(
        "Dockerfile",
        "fifo:",
        "The Dockerfile 'Dockerfile' is a named pipe (FIFO), not a regular file",
        id="dockerfile-fifo",
    ),
    pytest.param(
        ".dockerignore",
        "/proc/self/environ",
        "The .dockerignore '.dockerignore' leads outside the build context folder",
        id="dockerignore-environ",
    ),
    pytest.param(
        ".dockerignore",
        "../secret.key",
        "The .dockerignore '.dockerignore' leads outside the build context folder",
        id="dockerignore-link-up",
    ),
    pytest.param(
        ".dockerignore",
        "fifo:",
        "The .dockerignore '.dockerignore' is a named pipe (FIFO), not a regular file",
        id="dockerignore-fifo",
    ),
]


@pytest.mark.parametrize(("name", "what", "message"), ENGINE_TRICKS)
async def test_the_engine_refuses_special_files_and_links_out_before_dockerd_sees_anything(
    engine: DockerEngine,
    docker_client: docker.DockerClient,
    base_image: str,
    tmp_path: Path,
    name: str,
    what: str,
    message: str,
) -> None:
    app = engine_trap(tmp_path, base_image)
    path = app / name
    path.parent.mkdir(exist_ok=True)
    path.unlink(missing_ok=True)
    if what in ("fifo", "fifo:"):
        os.mkfifo(path)
    elif what == "device":
        os.mknod(path, 0o600 | stat.S_IFCHR, os.makedev(1, 5))  # /dev/zero's numbers
    else:
        os.symlink(what, path)
    lines: list[str] = []
    tag = f"{engine.instance}/trap:1"
    with pytest.raises(ValidationError) as refused:
        await engine.build(
            app, tag=tag, labels={}, on_log=lines.append, timeout=60, memory_bytes=256 << 20
        )
    assert message in refused.value.message
    assert lines == []  # dockerd never started a build
    assert SECRET not in refused.value.message
    assert docker_client.api.images(name=tag) == []


async def test_a_link_in_the_context_reaches_dockerd_as_a_link_never_followed(
    engine: DockerEngine, docker_client: docker.DockerClient, base_image: str, tmp_path: Path
) -> None:
    app = engine_trap(tmp_path, base_image)
    os.symlink("../secret.key", app / "leak")
    os.symlink(str(tmp_path / "secret.key"), app / "absolute-leak")
    lines: list[str] = []
    tag = f"{engine.instance}/links:1"
    await engine.build(
        app, tag=tag, labels={}, on_log=lines.append, timeout=60, memory_bytes=256 << 20
    )
    assert SECRET not in "\n".join(lines)
    saved = b"".join(docker_client.api.get_image(tag))
    assert SECRET.encode() not in saved
    links: dict[str, str] = {}
    with tarfile.open(fileobj=io.BytesIO(saved)) as image:
        for layer in image.getmembers():
            if layer.name.endswith("layer.tar"):
                content = image.extractfile(layer)
                assert content is not None
                with tarfile.open(fileobj=content) as files:
                    links.update((entry.name, entry.linkname) for entry in files if entry.issym())
    assert links["x/leak"] == "../secret.key"
    assert links["x/absolute-leak"] == str(tmp_path / "secret.key")


def test_the_context_tar_holds_what_was_checked_and_nothing_else(tmp_path: Path) -> None:
    """The tar dockerd gets: .dockerignore applied (with `!` exceptions), links as links, the
    Dockerfile a copy under the panel's name that the tar's .dockerignore hides from COPY."""
    (tmp_path / "secret.key").write_text(SECRET)
    app = tmp_path / "app"
    (app / "logs" / "keep").mkdir(parents=True)
    (app / "Dockerfile").write_text("FROM scratch\nCOPY . /\n")
    (app / "main.py").write_text("print('hi')\n")
    (app / "logs" / "a.log").write_text("x")
    (app / "logs" / "keep" / "b.log").write_text("y")
    (app / ".dockerignore").write_text("# comment\nlogs\n!logs/keep\n")
    os.symlink("../secret.key", app / "leak")
    with tempfile.TemporaryFile() as spool:
        written = write_context(
            spool, app, ".", "Dockerfile", edit=lambda text: text + "LABEL a=b\n"
        )
        with tarfile.open(fileobj=spool) as tar:
            members = {member.name: member for member in tar.getmembers()}
            assert written.edited and written.dockerfile.startswith(".ghst-dockerfile-")
            copy = tar.extractfile(written.dockerfile)
            assert copy is not None and copy.read() == b"FROM scratch\nCOPY . /\nLABEL a=b\n"
            rules = tar.extractfile(".dockerignore")
            assert rules is not None
            assert rules.read().decode().splitlines() == ["logs", "!logs/keep", written.dockerfile]
            assert members["leak"].issym() and members["leak"].linkname == "../secret.key"
            everything = b"".join(
                (tar.extractfile(member) or io.BytesIO()).read()
                for member in tar.getmembers()
                if member.isfile()
            )
    assert set(members) == {
        "Dockerfile",
        "main.py",
        "leak",
        "logs/keep",
        "logs/keep/b.log",
        ".dockerignore",
        written.dockerfile,
    }
    assert SECRET.encode() not in everything


PARSE_TRICKS = [
    pytest.param(".env", "", "The .env file '.env'", id="dotenv"),
    pytest.param(
        "app.env",
        "    env_file: [app.env]\n",
        "Service 'web': the env_file 'app.env'",
        id="env-file",
    ),
    pytest.param(
        "base.yaml",
        "    extends: {file: base.yaml, service: web}\n",
        "Service 'web': the extends file 'base.yaml'",
        id="extends",
    ),
    pytest.param(
        "web/Dockerfile", "", "Service 'web': the Dockerfile 'Dockerfile'", id="dockerfile"
    ),
]
SPECIAL = [
    pytest.param("fifo", "is a named pipe (FIFO), not a regular file", id="fifo"),
    pytest.param("/dev/zero", "leads outside ", id="dev-zero"),
    pytest.param("/proc/self/environ", "leads outside ", id="environ"),
    pytest.param("../../secret.key", "leads outside ", id="link-up"),
]


@pytest.mark.parametrize(("name", "option", "subject"), PARSE_TRICKS)
@pytest.mark.parametrize(("special", "message"), SPECIAL)
def test_compose_never_reads_special_files_or_files_out_of_the_app(
    mode: str, tmp_path: Path, name: str, option: str, subject: str, special: str, message: str
) -> None:
    """What the upload refuses (FIFOs, links out), placed on disk: parse_compose refuses each
    with a message (a FIFO never blocks it, /dev/zero is never read)."""
    (tmp_path / "secret.key").write_text(f"A={SECRET}\n")
    app = tmp_path / "app"
    (app / "web").mkdir(parents=True)
    (app / "web" / "Dockerfile").write_text("FROM scratch\n")
    path = app / name
    path.unlink(missing_ok=True)
    if special == "fifo":
        os.mkfifo(path)
    else:
        os.symlink(special if special.startswith("/") else "../" * name.count("/") + special, path)
    text = f"services:\n  web:\n    build: web\n{option}"
    with pytest.raises(ComposeRejected) as refused:
        parse_compose(text, app, variables={})
    assert refused.value.message.startswith(subject), refused.value.message
    assert message in refused.value.message
    assert SECRET not in refused.value.message
