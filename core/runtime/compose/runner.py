"""Running compose on a rendered file: `ComposeRunner`.

`docker compose` (v2) if present, else `docker-compose` (v1), with a clean environment and an
empty env file, so neither the panel's variables nor a `.env` beside the file (which v1 reads
for DOCKER_HOST and COMPOSE_*) reach compose.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import shlex
import shutil
import tempfile
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml

from core.errors import UnavailableError
from core.log_text import clean_log_bytes
from core.runtime.compose.errors import ComposeFailed
from core.runtime.compose.limits import MiB
from core.runtime.compose.values import quoted

log = logging.getLogger(__name__)
LOG_LINES = 20  # lines of compose's output quoted in a ComposeFailed
MAX_LINE = 1 * MiB  # longest line of compose's output read whole
_STACK = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")


class ComposeRunner:
    """Runs compose on a rendered file: v2 (`docker compose`) if present, else v1.

    Compose gets a clean environment (PATH, HOME, the Docker address) and an empty env file, so
    it interpolates nothing and reads no `.env` of the app. With `allow_pull=False`, `up`
    refuses a file naming an image this server does not have, before starting anything.
    """

    def __init__(
        self,
        command: str = "",
        docker_url: str = "",
        allow_pull: bool = True,
        timeout: float = 600.0,
        owns: Callable[[Mapping[str, str]], bool] | None = None,
    ) -> None:
        self._configured = shlex.split(command)
        # Which labelled objects are this panel's (DockerEngine.owns); None: any ghst label.
        self._owns = owns
        self._docker_url = docker_url
        self._allow_pull = allow_pull
        self._timeout = timeout
        self._command: list[str] | None = None
        self._version = 0
        self._lock = asyncio.Lock()

    async def command(self) -> list[str]:
        """The compose command's argv prefix (detected once); UnavailableError if none runs."""
        async with self._lock:
            if self._command is None:
                candidates = (
                    [self._configured]
                    if self._configured
                    else [["docker", "compose"], ["docker-compose"]]
                )
                for candidate in candidates:
                    version = await self._probe(candidate)
                    if version is not None:
                        self._command, self._version = candidate, version
                        break
                else:
                    tried = " or ".join(f"`{shlex.join(argv)}`" for argv in candidates)
                    raise UnavailableError(
                        f"Compose is not installed on this server ({tried} does not run), so "
                        "apps with a compose file cannot be deployed."
                    )
            return list(self._command)

    async def version(self) -> int:
        """The major version of the detected compose (1 or 2)."""
        await self.command()
        return self._version

    async def up(self, stack: str, file: Path, on_log: Callable[[str], None]) -> None:
        """Create and start the stack's containers (nothing is built); ComposeFailed if not."""
        _check_stack(stack)
        command = await self.command()
        if not self._allow_pull:
            missing = await asyncio.to_thread(self._missing_images, file)
            if missing:
                services = ", ".join(f"{quoted(svc)} ({quoted(image)})" for svc, image in missing)
                raise ComposeFailed(
                    f"The image of service {services} is not available on this server, and "
                    "this panel does not download images: build it from a Dockerfile in the "
                    "app instead."
                )
        extra = ["--pull", "never"] if self._version >= 2 and not self._allow_pull else []
        await self._run(
            command, stack, file, ["up", "-d", "--no-build", "--remove-orphans", *extra], on_log
        )

    async def down(self, stack: str, file: Path) -> None:
        """Remove the stack's containers with their anonymous volumes, and its networks; never
        its named volumes (the project's data: `down -v` would remove those too).

        A stack that is already gone is fine; if `file` is gone too, its containers and
        networks are found by their compose and ghst labels instead.
        """
        _check_stack(stack)
        command = await self.command()
        if not await asyncio.to_thread(file.is_file):
            await asyncio.to_thread(self._remove_by_labels, stack)
            return
        # `rm -v` removes only the anonymous volumes of the containers it removes.
        try:
            await self._run(command, stack, file, ["rm", "--stop", "--force", "-v"], None)
        except ComposeFailed as error:  # `down` still removes the containers and networks
            log.warning("compose rm of %s failed: %s", stack, error.message)
        await self._run(command, stack, file, ["down", "--remove-orphans"], None)

    async def stop(self, stack: str, file: Path) -> None:
        _check_stack(stack)
        await self._run(await self.command(), stack, file, ["stop"], None)

    async def start(self, stack: str, file: Path) -> None:
        _check_stack(stack)
        await self._run(await self.command(), stack, file, ["start"], None)

    # -- internals

    def _environment(self) -> dict[str, str]:
        keep = ("PATH", "HOME", "LANG", "DOCKER_HOST", "DOCKER_CONFIG", "DOCKER_CERT_PATH")
        env = {key: os.environ[key] for key in (*keep, "DOCKER_TLS_VERIFY") if key in os.environ}
        env.setdefault("PATH", "/usr/local/bin:/usr/bin:/bin")
        if self._docker_url:
            env["DOCKER_HOST"] = self._docker_url
        return env

    async def _probe(self, argv: list[str]) -> int | None:
        try:
            process = await asyncio.create_subprocess_exec(
                *argv,
                "version",
                "--short",
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.DEVNULL,
                env=self._environment(),
            )
        except OSError:
            return None
        try:
            output, _ = await asyncio.wait_for(process.communicate(), 60)
        except TimeoutError:
            process.kill()
            await process.wait()
            return None
        match = re.match(r"v?(\d+)\.", output.decode(errors="replace").strip())
        if process.returncode != 0 or match is None:
            return None
        return int(match.group(1))

    async def _run(
        self,
        command: list[str],
        stack: str,
        file: Path,
        arguments: list[str],
        on_log: Callable[[str], None] | None,
    ) -> None:
        action = arguments[0]
        env_file = await asyncio.to_thread(_empty_file)
        argv = [
            *command,
            "--ansi",
            "never",
            "--env-file",
            env_file,
            "-p",
            stack,
            "-f",
            str(file),
            *arguments,
        ]
        tail: deque[str] = deque(maxlen=LOG_LINES)
        try:
            process = await asyncio.create_subprocess_exec(
                *argv,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.STDOUT,
                env=self._environment(),
                cwd=str(file.parent),
                limit=MAX_LINE,
            )
        except OSError as error:
            await asyncio.to_thread(_remove, env_file)
            raise UnavailableError(f"Cannot run compose: {error}") from error
        try:
            assert process.stdout is not None
            async with asyncio.timeout(self._timeout):
                async for raw in process.stdout:
                    line = clean_log_bytes(raw).rstrip("\n")
                    tail.append(line)
                    if on_log is not None:
                        on_log(line)
                code = await process.wait()
        except TimeoutError:
            raise ComposeFailed(
                _failure(f"compose {action} did not finish within {self._timeout:g} s", tail)
            ) from None
        finally:
            if process.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    process.kill()
                await process.wait()
            await asyncio.to_thread(_remove, env_file)
        if code != 0:
            raise ComposeFailed(_failure(f"compose {action} failed (exit status {code})", tail))

    def _client(self) -> Any:
        import docker

        if self._docker_url:
            return docker.DockerClient(base_url=self._docker_url, timeout=60)
        return docker.from_env(timeout=60)

    def _missing_images(self, file: Path) -> list[tuple[str, str]]:
        """(service, image) for each image of the file that this dockerd does not have."""
        import docker

        document = yaml.safe_load(file.read_text())
        services = document.get("services") or {}
        try:
            client = self._client()
        except docker.errors.DockerException as error:
            raise UnavailableError(f"Docker is not reachable: {error}") from error
        try:
            missing = []
            for name, service in services.items():
                image = str(service.get("image", "")).replace("$$", "$")
                try:
                    client.images.get(image)
                except (docker.errors.ImageNotFound, docker.errors.NotFound):
                    missing.append((name, image))
                except docker.errors.APIError as error:
                    if error.status_code is not None and error.status_code < 500:
                        missing.append((name, image))  # not even a valid reference
                    else:
                        raise UnavailableError(f"Docker is not reachable: {error}") from error
            return missing
        finally:
            client.close()

    def _remove_by_labels(self, stack: str) -> None:
        import docker

        client = self._client()
        filters = {"label": [f"com.docker.compose.project={stack}", "ghst.instance"]}

        def ours(labels: Mapping[str, str] | None) -> bool:
            return self._owns is None or self._owns(labels or {})

        try:
            for container in client.containers.list(all=True, filters=filters):
                if not ours(container.labels):
                    continue
                with contextlib.suppress(docker.errors.NotFound):
                    container.remove(force=True, v=True)  # anonymous volumes only
            for network in client.networks.list(filters=filters):
                if not ours(network.attrs.get("Labels")):
                    continue
                with contextlib.suppress(docker.errors.NotFound):
                    network.remove()
        finally:
            client.close()


@contextlib.asynccontextmanager
async def compose_file_on_disk(text: str) -> AsyncIterator[Path]:
    """`text` (a rendered compose file) as a file for the compose commands run inside the
    block, in a private folder of its own that is removed afterwards: the saved stack state
    (core.runtime.compose.stacks) is the lasting copy, so no worker depends on its own disk."""
    folder = Path(await asyncio.to_thread(tempfile.mkdtemp, prefix="ghst-stack-"))  # 0700
    try:
        file = folder / "compose.yml"
        await asyncio.to_thread(_write_private, file, text)
        yield file
    finally:
        await asyncio.to_thread(shutil.rmtree, folder, True)


def _write_private(path: Path, text: str) -> None:
    """0600: the file holds the project's environment values."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as file:
        file.write(text)


def _check_stack(stack: str) -> None:
    if not _STACK.match(stack):
        raise ValueError(f"invalid compose project name {stack!r}")


def _failure(reason: str, tail: Iterable[str]) -> str:
    lines = [line for line in tail if line.strip()]
    if not lines:
        return f"The app's containers could not be handled: {reason}."
    return f"The app's containers could not be handled: {reason}:\n" + "\n".join(lines)


def _empty_file() -> str:
    handle, path = tempfile.mkstemp(prefix="ghst-compose-", suffix=".env")
    os.close(handle)
    return path


def _remove(path: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)
