"""Docker fixtures: the machine's dockerd (started by ./scripts/dev test) and a local base image.

Nothing is ever pulled: the base image is `docker import`ed from Debian's busybox-static, so a
test Dockerfile says `FROM <base_image>` and builds in a fraction of a second.
"""

from __future__ import annotations

import contextlib
import io
import shutil
import tarfile
import uuid
from collections.abc import Iterator

import docker
import pytest

BUSYBOX = "/bin/busybox"
# Applets the test apps use; busybox picks the applet from the name it was called by.
APPLETS = ("sh", "httpd", "echo", "cat", "sleep", "wget", "ls", "env", "false", "true", "nc")


def busybox_rootfs() -> bytes:
    """A tar of a minimal root filesystem: static busybox, its applets, /www and /tmp."""
    path = shutil.which("busybox") or BUSYBOX
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for folder in ("bin", "www", "tmp", "etc"):
            info = tarfile.TarInfo(folder)
            info.type = tarfile.DIRTYPE
            info.mode = 0o1777 if folder == "tmp" else 0o755
            tar.addfile(info)
        tar.add(path, arcname="bin/busybox")
        for applet in APPLETS:
            link = tarfile.TarInfo(f"bin/{applet}")
            link.type = tarfile.SYMTYPE
            link.linkname = "busybox"
            tar.addfile(link)
        passwd = b"root:x:0:0:root:/:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n"
        info = tarfile.TarInfo("etc/passwd")
        info.size = len(passwd)
        tar.addfile(info, io.BytesIO(passwd))
    return buffer.getvalue()


@pytest.fixture(scope="session")
def docker_client() -> Iterator[docker.DockerClient]:
    """The dockerd of this machine; the test command starts it when it is not running."""
    client = docker.from_env(timeout=120)
    try:
        client.ping()
    except Exception as error:  # any failure means the same thing here
        pytest.fail(f"dockerd is not reachable ({error}); run the tests with ./scripts/dev test")
    yield client
    client.close()


@pytest.fixture(scope="session")
def base_image(docker_client: docker.DockerClient) -> Iterator[str]:
    """A busybox image made for this test session; test Dockerfiles build FROM it."""
    reference = f"ghst-test/busybox:{uuid.uuid4().hex[:8]}"
    repository, tag = reference.split(":")
    docker_client.images.client.api.import_image_from_data(
        busybox_rootfs(), repository=repository, tag=tag
    )
    base_id = docker_client.images.get(reference).id
    yield reference
    # Images built FROM it that tests left behind, such as the layers a build committed before
    # the step that failed (no label marks those), children before their parents.
    for image_id in descendants(docker_client, base_id):
        with contextlib.suppress(docker.errors.APIError):
            docker_client.api.remove_image(image_id, force=True)
    # It may still be used by an image a test left behind; that test's own checks report it.
    with contextlib.suppress(docker.errors.APIError):
        docker_client.images.remove(reference, force=True)


def descendants(client: docker.DockerClient, image_id: str) -> list[str]:
    """Ids of the images whose parent chain leads to `image_id`, newest first."""
    rows = client.api.images(all=True)
    parents = {row["Id"]: row.get("ParentId") or "" for row in rows}

    def descends(candidate: str) -> bool:
        seen: set[str] = set()
        while candidate and candidate not in seen:
            seen.add(candidate)
            candidate = parents.get(candidate, "")
            if candidate == image_id:
                return True
        return False

    newest_first = sorted(rows, key=lambda row: -row["Created"])
    return [row["Id"] for row in newest_first if descends(row["Id"])]
