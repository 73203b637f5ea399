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
    yield reference
    # It may still be used by an image a test left behind; that test's own checks report it.
    with contextlib.suppress(docker.errors.APIError):
        docker_client.images.remove(reference, force=True)
