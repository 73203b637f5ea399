"""The container runtime: Docker through the docker SDK, behind one small async class.

    DockerEngine   builds images (classic builder), runs, inspects, stops and removes containers,
                   networks and images, streams build and runtime logs

Everything it creates carries the label `ghst.instance=<instance>` and, given the panel's
`Installation`, `ghst.installation=<id>`; everything it lists or removes is filtered on both
(see core.installation): the panel never touches what it did not make, even when another panel
on the same dockerd uses the same instance name. A container, network or image of another
instance or installation (or of nobody) is "not found" to every method, except `image_info`,
which reads any image (base images are nobody's), and `instance_containers`, which lists what
carries the instance label for an operator to see.

Nothing is ever pulled: `run` creates the container from a local image and says so when the image
is missing; `build` passes `pull=False`, so a base image is fetched only when it is not on this
server, and when that fails the build fails with a message that says the base image is missing.

Blocking SDK calls run on a small thread pool owned by the engine. Long streams (a build, a
followed log) get a thread of their own each, so a user watching logs never holds up other calls,
and they end as soon as their reader goes away: the engine closes the HTTP response under them.

Errors (all `core.errors.PanelError`):
    UnavailableError   dockerd cannot be reached or did not answer
    NotFoundError      no such container or image (of this instance)
    ConflictError      a name already taken, a host port already in use
    BuildFailed        the build failed, with the step and its last output lines
    DockerError        anything else dockerd refused, with its explanation
"""

from __future__ import annotations

import asyncio
import codecs
import collections
import contextlib
import functools
import logging
import os
import re
import socket
import tempfile
import threading
from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import docker
import docker.errors
import requests.exceptions
import urllib3.exceptions
from docker.types import LogConfig
from docker.types.daemon import CancellableStream

from core.errors import (
    ConflictError,
    NotFoundError,
    PanelError,
    UnavailableError,
    ValidationError,
)
from core.installation import INSTALLATION_LABEL, Installation
from core.log_text import clean_log_bytes, clean_log_text
from core.runtime.build_context import PINNED_PREFIX, write_context

log = logging.getLogger(__name__)

T = TypeVar("T")

INSTANCE_LABEL = "ghst.instance"
DOCKER_DOWN = "Docker is not reachable right now. Please try again in a moment."
DEFAULT_SOCKET = "unix:///var/run/docker.sock"
DOCKER_SLOW = "Docker did not answer in time. Please try again in a moment."

API_TIMEOUT = 60.0  # seconds for one ordinary API call; streams have none
MAX_LOG_LINE = 64 * 1024  # a longer run of text without a newline is cut into lines this long
LOG_BUFFER_LINES = 2000  # lines a followed log holds for a slow reader before pausing docker
FAILURE_TAIL_LINES = 5  # output lines of the failing step quoted in BuildFailed
SETTLE_SECONDS = 10.0  # how long an aborted build's thread may take to notice
LAYER_ATTEMPTS = 20  # tries (0.5 s apart) to remove a failed build's layers still in use

_STEP = re.compile(r"^Step (\d+)/(\d+) : (.*)$")
_LAYER = re.compile(r"^ ---> ([0-9a-f]{12,64})$")  # the image a step committed
_PLAIN = re.compile(r"^[A-Za-z0-9._/:@+-]*$")  # a label key or value that needs no quoting
_BUILDER_LINE = re.compile(r"^(Step \d+/\d+ : | ---> |Removing intermediate container )")
_BUILD_NOISE = re.compile(
    r"^( ---> |Removing intermediate container |Successfully (built|tagged) )"
)


class BuildFailed(ValidationError):
    title = "Build failed"


class DockerError(PanelError):
    title = "Docker error"


@dataclass(frozen=True)
class Limits:
    memory_bytes: int
    nano_cpus: int  # 0.5 CPU = 500_000_000
    pids: int


@dataclass(frozen=True)
class Usage:
    cpu_millicores: int
    memory_bytes: int


def _folder_bytes(folder: str) -> int:
    """Disk blocks under `folder` in bytes: links not followed, a file linked twice counted
    once; 0 for a folder that is not there."""
    total, seen = 0, set()
    for current, _folders, files in os.walk(folder):
        for name in files:
            with contextlib.suppress(OSError):
                info = os.lstat(os.path.join(current, name))
                if (info.st_dev, info.st_ino) not in seen:
                    seen.add((info.st_dev, info.st_ino))
                    total += info.st_blocks * 512
    return total


def _usage(data: Mapping[str, Any]) -> Usage:
    """`docker stats`' numbers from one stats reading (it holds the previous sample too)."""
    memory = data.get("memory_stats") or {}
    details = memory.get("stats") or {}
    cache = details.get("inactive_file", details.get("total_inactive_file", 0))
    memory_bytes = max(0, int(memory.get("usage") or 0) - int(cache or 0))
    cpu, previous = data.get("cpu_stats") or {}, data.get("precpu_stats") or {}
    used = int((cpu.get("cpu_usage") or {}).get("total_usage") or 0) - int(
        (previous.get("cpu_usage") or {}).get("total_usage") or 0
    )
    elapsed = int(cpu.get("system_cpu_usage") or 0) - int(previous.get("system_cpu_usage") or 0)
    cpus = int(cpu.get("online_cpus") or 1)
    millicores = round(used / elapsed * cpus * 1000) if used > 0 and elapsed > 0 else 0
    return Usage(millicores, memory_bytes)


@dataclass(frozen=True)
class ImageInfo:
    id: str
    exposed_ports: tuple[int, ...]  # TCP ports from EXPOSE, sorted
    has_healthcheck: bool  # the image defines a HEALTHCHECK (not NONE)


@dataclass(frozen=True)
class ContainerState:
    id: str
    name: str
    running: bool  # False while docker restarts a container that exited
    exit_code: int | None  # None until it has exited
    health: str | None  # "starting" | "healthy" | "unhealthy"; None without a healthcheck
    error: str  # docker's State.Error, "" if none
    oom_killed: bool
    labels: dict[str, str]


class _API(docker.APIClient):  # type: ignore[misc]
    """The SDK's low-level client, telling a build thread which HTTP response it streams from.

    `APIClient.build` keeps the response to itself; a build can only be aborted by closing it.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.ghst_local = threading.local()

    def _post(self, url: str, *args: Any, **kwargs: Any) -> Any:
        # The SDK's build() knows no cgroupparent, cpuperiod or cpuquota; the API does.
        extra: Mapping[str, Any] | None = getattr(self.ghst_local, "build_params", None)
        if extra and url.endswith("/build"):
            kwargs["params"] = {**(kwargs.get("params") or {}), **extra}
        return super()._post(url, *args, **kwargs)

    def _stream_helper(self, response: Any, decode: bool = False) -> Any:
        hook: Callable[[Any], None] | None = getattr(self.ghst_local, "on_response", None)
        if hook is not None:
            hook(response)
        return super()._stream_helper(response, decode=decode)


class _Client(docker.DockerClient):  # type: ignore[misc]
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.api = _API(*args, **kwargs)


def _close_response(response: Any) -> None:
    """Shut the socket under a streamed response, so a thread reading it wakes up at once."""
    with contextlib.suppress(Exception):
        CancellableStream(None, response).close()


def _probe(url: str) -> None:
    """UnavailableError when a unix socket URL has no dockerd behind it.

    Checked before the SDK tries, because the SDK leaves the socket of a failed connect for the
    garbage collector (docker/transport/unixconn.py), with a ResourceWarning.
    """
    if not url.startswith("unix://"):
        return
    path = "/" + url.removeprefix("unix://").lstrip("/")
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        probe.settimeout(API_TIMEOUT)
        try:
            probe.connect(path)
        except OSError:
            raise UnavailableError(DOCKER_DOWN) from None


def _with_labels(text: str, labels: Mapping[str, str]) -> str | None:
    """The Dockerfile `text` with one LABEL line for `labels` appended, or None to leave it alone.

    None when the Dockerfile ends inside a continued line, or a label needs quoting.
    """
    if not all(key and _PLAIN.match(key) and _PLAIN.match(value) for key, value in labels.items()):
        return None
    instructions = [
        line.strip()
        for line in text.splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]
    if not instructions or instructions[-1].endswith(("\\", "`")):
        return None
    pairs = " ".join(f"{key}={value}" for key, value in labels.items())
    return f"{text.rstrip()}\nLABEL {pairs}\n"


def _with_build_params(
    params: Mapping[str, Any], function: Callable[[_Client], T]
) -> Callable[[_Client], T]:
    """`function`, with `params` added to the /build requests it makes from its thread."""

    def run(client: _Client) -> T:
        client.api.ghst_local.build_params = params
        try:
            return function(client)
        finally:
            client.api.ghst_local.build_params = None

    return run


def _translate(error: BaseException) -> BaseException:
    """An SDK or transport error as the PanelError a user should see."""
    if isinstance(error, PanelError):
        return error
    if isinstance(error, docker.errors.NotFound):
        return NotFoundError(_explanation(error))
    if isinstance(error, docker.errors.APIError):
        text = _explanation(error)
        if error.status_code == 409 or "port is already allocated" in text:
            return ConflictError(text)
        return DockerError(f"Docker refused: {text}")
    if isinstance(error, requests.exceptions.Timeout):
        return UnavailableError(DOCKER_SLOW)
    if isinstance(
        error,
        docker.errors.DockerException
        | requests.exceptions.RequestException
        | urllib3.exceptions.HTTPError
        | OSError,
    ):
        return UnavailableError(DOCKER_DOWN)
    return error


def _explanation(error: docker.errors.APIError) -> str:
    text = error.explanation
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    return str(text or error).strip()


def _when(timestamp: int) -> datetime:
    return datetime.fromtimestamp(timestamp, UTC)


def _shorten(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


class DockerEngine:
    """dockerd, through the docker SDK; see the module docstring."""

    def __init__(
        self,
        base_url: str = "",
        *,
        instance: str = "ghst",
        installation: Installation | None = None,
        max_workers: int = 8,
    ) -> None:
        self.base_url = base_url
        self.instance = instance
        # None: the instance label alone marks what is ours (a lone engine, as in its tests).
        self.installation = installation
        self._executor = ThreadPoolExecutor(max_workers, thread_name_prefix="ghst-docker")
        self._client_lock = threading.Lock()
        self._docker: _Client | None = None
        self._pumps: set[_LogPump] = set()
        self._builds: set[_Build] = set()
        self._network_locks: dict[str, asyncio.Lock] = {}

    # ------------------------------------------------------------------------------------------
    # plumbing

    def _connect(self) -> _Client:
        """The SDK client, made on first use (asking dockerd for its API version)."""
        with self._client_lock:
            if self._docker is None:
                _probe(self.base_url or os.environ.get("DOCKER_HOST") or DEFAULT_SOCKET)
                options: dict[str, Any] = {"timeout": API_TIMEOUT, "max_pool_size": 32}
                if self.base_url:
                    self._docker = _Client(base_url=self.base_url, version="auto", **options)
                else:
                    self._docker = _Client.from_env(**options)
            return self._docker

    def _guarded(self, function: Callable[[_Client], T]) -> T:
        client = None
        try:
            client = self._connect()
            return function(client)
        except Exception as error:
            translated = _translate(error)
            if translated is error:
                raise
            if isinstance(translated, UnavailableError) and client is not None:
                # dockerd went away: probe it again before the SDK tries the next time.
                with self._client_lock:
                    if self._docker is client:
                        self._docker = None
                with contextlib.suppress(Exception):
                    client.close()  # idle connections only; calls under way finish
            raise translated from error

    async def _call(self, function: Callable[[_Client], T]) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, self._guarded, function)

    def _thread(self, name: str, function: Callable[[_Client], T]) -> asyncio.Future[T]:
        """`function` in a thread of its own (for long streams), as a future of this loop."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()

        def settle(outcome: Callable[[], None]) -> None:
            if not future.done():
                outcome()

        def target() -> None:
            try:
                result = self._guarded(function)
            except BaseException as error:  # delivered to the awaiting task
                callback = functools.partial(future.set_exception, error)
            else:
                callback = functools.partial(future.set_result, result)
            with contextlib.suppress(RuntimeError):  # the loop is gone
                loop.call_soon_threadsafe(settle, callback)

        threading.Thread(target=target, name=name, daemon=True).start()
        return future

    def _labels(self, labels: Mapping[str, str]) -> dict[str, str]:
        ours = {**labels, INSTANCE_LABEL: self.instance}
        if self.installation is not None:
            ours[INSTALLATION_LABEL] = self.installation.id
        return ours

    def _filters(self, labels: Mapping[str, str]) -> dict[str, list[str]]:
        """dockerd's label filter for our objects; listings check `owns` on each row too, since
        a legacy installation's adopted objects carry no installation label."""
        wanted = {**labels, INSTANCE_LABEL: self.instance}
        if self.installation is not None and not self.installation.legacy:
            wanted[INSTALLATION_LABEL] = self.installation.id
        return {"label": [f"{key}={value}" for key, value in wanted.items()]}

    def owns(self, labels: Mapping[str, str] | None) -> bool:
        """Did this panel make the object with these labels?"""
        labels = labels or {}
        if labels.get(INSTANCE_LABEL) != self.instance:
            return False
        return self.installation is None or self.installation.made(labels)

    _ours = owns

    def _container(self, client: _Client, reference: str) -> Any:
        """One of our containers (SDK model), else NotFoundError."""
        try:
            container = client.containers.get(reference)
        except docker.errors.NotFound:
            container = None
        if container is None or not self._ours(container.labels):
            raise NotFoundError(f"The container {reference} does not exist.")
        return container

    # ------------------------------------------------------------------------------------------
    # lifecycle

    async def close(self) -> None:
        """Ends followed logs and running builds, then lets go of dockerd."""
        for pump in list(self._pumps):
            pump.close()
        for build in list(self._builds):
            build.abort()
        client, self._docker = self._docker, None
        loop = asyncio.get_running_loop()
        if client is not None:
            await loop.run_in_executor(self._executor, client.close)
        await asyncio.to_thread(self._executor.shutdown, wait=True)

    async def ping(self) -> None:
        await self._call(lambda client: client.ping())

    async def version(self) -> tuple[str, str]:
        """(dockerd's version, its data root) for the admin app's system checks."""
        info = await self._call(lambda client: client.info())
        return str(info.get("ServerVersion") or "?"), str(info.get("DockerRootDir") or "")

    async def cgroup_driver(self) -> str:
        """dockerd's cgroup driver: "cgroupfs" or "systemd"."""
        return await self._call(lambda client: str(client.info().get("CgroupDriver") or ""))

    # ------------------------------------------------------------------------------------------
    # images

    async def build(
        self,
        context: Path,
        *,
        tag: str,
        labels: Mapping[str, str],
        on_log: Callable[[str], None],
        timeout: float,  # noqa: ASYNC109 (the build is aborted, not just abandoned)
        memory_bytes: int,
        dockerfile: str = "Dockerfile",
        build_args: Mapping[str, str] | None = None,
        target: str | None = None,
        cgroup_parent: str = "",
        cpus: float = 0.0,
        network: str = "",
        root: Path | None = None,
        cache_from: Sequence[str] | None = None,
    ) -> ImageInfo:
        """Build `context` with the classic builder, tag it, and describe the image.

        `context` must lie in `root` (the app folder; default: the context itself) and
        `dockerfile`, relative to the context, in the context: both are resolved with the
        kernel's rules, and dockerd gets a tar of what the panel checked (core.runtime.build_context).

        Every build output line goes to `on_log`, called on this event loop's thread, in order,
        and never after `build` has returned or raised. RUN steps get `memory_bytes` of memory
        (swap included) and at most `cpus` CPUs; with `cgroup_parent` they run under that
        cgroup (whose limits hold for all of them, pids included), and on `network` (a network
        name) rather than the default bridge. After `timeout` seconds, or when the calling task
        is cancelled, the build is aborted: dockerd stops and removes the step's container.
        With `cache_from`, only steps these images went through are taken from the build cache.
        """
        loop = asyncio.get_running_loop()
        all_labels = self._labels(labels)
        job = _Build(loop, on_log)
        folder = root if root is not None else context
        try:
            relative = context.relative_to(folder).as_posix()
        except ValueError:
            raise BuildFailed(f"The build folder {context} is outside {folder}.") from None
        options = {
            "tag": tag,
            "labels": all_labels,
            "rm": True,
            "forcerm": True,
            "pull": False,
            "decode": True,
            "container_limits": {"memory": memory_bytes, "memswap": memory_bytes},
            "dockerfile": dockerfile,
            "timeout": None,  # no read timeout: a RUN step may be silent for minutes
        }
        if build_args:
            options["buildargs"] = dict(build_args)
        if target:
            options["target"] = target
        if network:
            options["network_mode"] = network
        params: dict[str, Any] = {}
        if cgroup_parent:
            params["cgroupparent"] = cgroup_parent
        if cpus > 0:
            params.update(cpuperiod=100_000, cpuquota=max(1000, int(cpus * 100_000)))
        if cache_from:
            # The classic builder then reuses only steps of these images' own histories.
            options["cache_from"] = list(cache_from)
        self._builds.add(job)
        future = self._thread(
            "ghst-docker-build",
            _with_build_params(params, functools.partial(job.run, (folder, relative), options)),
        )
        try:
            image_id = await asyncio.wait_for(asyncio.shield(future), timeout)
        except TimeoutError:
            job.abort()
            await job.settle(future)
            await self._remove_layers(job.layers)
            raise BuildFailed(
                f"The build took longer than {timeout:g} s and was stopped."
            ) from None
        except asyncio.CancelledError:
            job.abort()
            await job.settle(future)
            await asyncio.shield(self._remove_layers(job.layers))
            raise
        except Exception:
            await self._remove_layers(job.layers)
            raise
        finally:
            job.finished = True
            self._builds.discard(job)
        if image_id is None:  # aborted by close()
            raise UnavailableError("The panel is shutting down; the build was stopped.")
        return await self.image_info(tag)

    async def _remove_layers(self, layers: Sequence[str]) -> None:
        """Remove the images the steps of a failed build committed (no label marks them), last
        step first. Only untagged ones, never forced: an image that another image still uses
        (a cached step of an earlier build) is kept by dockerd itself. An aborted build's step
        container may still hold its parent for a moment: those are tried again a few times."""

        def remove(client: _Client, candidates: Sequence[str]) -> list[str]:
            busy: list[str] = []
            for layer in reversed(candidates):
                try:
                    attrs = client.api.inspect_image(layer)
                except docker.errors.NotFound:
                    continue
                if [tag for tag in attrs.get("RepoTags") or () if tag != "<none>:<none>"]:
                    continue  # a base image or a finished build's: not a leftover
                try:
                    client.api.remove_image(attrs["Id"], noprune=True)
                except docker.errors.NotFound:
                    continue
                except docker.errors.APIError as error:
                    if "container" in _explanation(error):  # the step container is going
                        busy.insert(0, layer)
                    log.debug("layer %s kept: %s", layer, _explanation(error))
            return busy

        remaining = list(layers)
        for attempt in range(LAYER_ATTEMPTS):
            if attempt:
                await asyncio.sleep(0.5)
            try:
                remaining = await self._call(functools.partial(remove, candidates=remaining))
            except PanelError as error:
                log.warning("could not remove the layers of a failed build: %s", error)
                return
            if not remaining:
                return
        log.warning("layers of a failed build kept (still in use): %s", remaining)

    async def image_info(self, reference: str) -> ImageInfo:
        """Any local image, labelled or not (base images are nobody's)."""

        def inspect(client: _Client) -> ImageInfo:
            try:
                attrs = client.api.inspect_image(reference)
            except docker.errors.NotFound:
                raise NotFoundError(f"The image {reference} is not on this server.") from None
            config = attrs.get("Config") or {}
            ports = sorted(
                int(port)
                for port, protocol in (
                    key.partition("/")[::2] for key in (config.get("ExposedPorts") or {})
                )
                if protocol in ("tcp", "") and port.isdigit()
            )
            test = (config.get("Healthcheck") or {}).get("Test") or []
            return ImageInfo(
                id=attrs["Id"],
                exposed_ports=tuple(ports),
                has_healthcheck=bool(test) and test[0] != "NONE",
            )

        return await self._call(inspect)

    async def remove_image(self, reference: str) -> None:
        """Remove one of our images; a missing one is fine, one in use is kept (and logged)."""

        def remove(client: _Client) -> None:
            try:
                attrs = client.api.inspect_image(reference)
            except docker.errors.NotFound:
                return
            if not self._ours((attrs.get("Config") or {}).get("Labels")):
                log.warning("not removing image %s: it was not made by this panel", reference)
                return
            self._remove_image(client, reference)

        await self._call(remove)

    def _remove_image(self, client: _Client, reference: str, force: bool = False) -> None:
        try:
            client.api.remove_image(reference, force=force)
        except docker.errors.NotFound:
            pass
        except docker.errors.APIError as error:
            if error.status_code != 409:
                raise
            log.info("image %s kept: %s", reference, _explanation(error))

    async def images(
        self, labels: Mapping[str, str]
    ) -> list[tuple[str, tuple[str, ...], datetime]]:
        """(id, tags, created) of our images carrying all these labels, newest first."""

        def listing(client: _Client) -> list[tuple[str, tuple[str, ...], datetime]]:
            rows = [
                row
                for row in client.api.images(filters=self._filters(labels))
                if self._ours(row.get("Labels"))
            ]
            found = [
                (
                    row["Id"],
                    tuple(tag for tag in row.get("RepoTags") or () if tag != "<none>:<none>"),
                    _when(row["Created"]),
                )
                for row in rows
            ]
            return sorted(found, key=lambda row: row[2], reverse=True)

        return await self._call(listing)

    async def inspect_image(self, reference: str) -> dict[str, Any] | None:
        """dockerd's description of any local image (a name, a digest or an id), or None when
        it has no such image or the reference is not valid."""

        def inspect(client: _Client) -> dict[str, Any] | None:
            try:
                attrs: dict[str, Any] = client.api.inspect_image(reference)
            except docker.errors.NotFound:
                return None
            except docker.errors.APIError as error:
                if error.status_code is not None and error.status_code < 500:
                    return None  # not even a valid reference
                raise
            return attrs

        return await self._call(inspect)

    async def all_images(self) -> list[dict[str, Any]]:
        """Every local image, whoever made it, intermediate ones too (Id, ParentId, Labels,
        RepoTags, RepoDigests): for checking what a build used, never for changing anything."""
        return await self._call(lambda client: list(client.api.images(all=True)))

    async def pull_image(self, reference: str) -> None:
        """Fetch an image from its registry (only where the operator allows pulls)."""
        await self._call(lambda client: client.images.pull(reference))

    # ------------------------------------------------------------------------------------------
    # containers

    async def run(
        self,
        *,
        name: str,
        image: str,
        host_port: int,
        app_port: int,
        env: Mapping[str, str],
        labels: Mapping[str, str],
        limits: Limits,
        network: str,
        cgroup_parent: str = "",
    ) -> str:
        """Create and start a container from a local image; its id.

        Only 127.0.0.1:`host_port` is published (to `app_port`/tcp). A container that cannot
        start (the host port is taken, say) is removed again before the error is raised.
        """

        def create(client: _Client) -> str:
            options: dict[str, Any] = {}
            if network:
                options["network"] = network
            if cgroup_parent:  # a project's cgroup, whose limits hold for all its containers
                options["cgroup_parent"] = cgroup_parent
            try:
                container = client.containers.create(
                    image,
                    name=name,
                    detach=True,
                    environment=dict(env),
                    labels=self._labels(labels),
                    ports={f"{app_port}/tcp": ("127.0.0.1", host_port)},
                    init=True,
                    security_opt=["no-new-privileges:true"],
                    restart_policy={"Name": "unless-stopped"},
                    mem_limit=limits.memory_bytes,
                    memswap_limit=limits.memory_bytes,
                    nano_cpus=limits.nano_cpus,
                    pids_limit=limits.pids,
                    log_config=LogConfig(
                        type=LogConfig.types.JSON, config={"max-size": "10m", "max-file": "3"}
                    ),
                    **options,
                )
            except docker.errors.ImageNotFound:
                raise NotFoundError(f"The image {image} is not on this server.") from None
            except docker.errors.NotFound as error:  # the network
                raise NotFoundError(f"Cannot create {name}: {_explanation(error)}") from None
            except docker.errors.APIError as error:
                if error.status_code == 409:
                    raise ConflictError(f"A container named {name} already exists.") from None
                raise
            try:
                container.start()
            except BaseException:
                with contextlib.suppress(Exception):
                    container.remove(force=True)
                raise
            return str(container.id)

        return await self._call(create)

    def _state(self, attrs: Mapping[str, Any]) -> ContainerState:
        state = attrs.get("State") or {}
        status = state.get("Status", "")
        restarting = bool(state.get("Restarting"))
        exited = status in ("exited", "dead") or restarting
        health = state.get("Health") or {}
        return ContainerState(
            id=attrs["Id"],
            name=str(attrs.get("Name", "")).lstrip("/"),
            running=bool(state.get("Running")) and not restarting,
            exit_code=int(state.get("ExitCode", 0)) if exited else None,
            health=health.get("Status") or None,
            error=state.get("Error") or "",
            oom_killed=bool(state.get("OOMKilled")),
            labels=dict((attrs.get("Config") or {}).get("Labels") or {}),
        )

    async def state(self, container: str) -> ContainerState:
        return await self._call(
            lambda client: self._state(self._container(client, container).attrs)
        )

    async def containers(self, labels: Mapping[str, str]) -> list[ContainerState]:
        """Our containers carrying all these labels, stopped ones too."""

        def listing(client: _Client) -> list[ContainerState]:
            states = []
            for row in client.api.containers(all=True, filters=self._filters(labels)):
                if not self._ours(row.get("Labels")):
                    continue
                try:
                    states.append(self._state(client.api.inspect_container(row["Id"])))
                except docker.errors.NotFound:  # removed meanwhile
                    continue
            return states

        return await self._call(listing)

    async def container_labels(self, labels: Mapping[str, str]) -> list[dict[str, str]]:
        """The labels of each of our containers carrying all these labels, stopped ones too:
        one listing call, no inspection (cheap enough to run often)."""

        def listing(client: _Client) -> list[dict[str, str]]:
            rows = client.api.containers(all=True, filters=self._filters(labels))
            return [dict(row.get("Labels") or {}) for row in rows if self._ours(row.get("Labels"))]

        return await self._call(listing)

    async def instance_containers(self) -> list[ContainerState]:
        """Every container with this instance's label, whichever panel made it (to report, never
        to act on: `owns` tells which are ours)."""

        def listing(client: _Client) -> list[ContainerState]:
            states = []
            filters = {"label": [f"{INSTANCE_LABEL}={self.instance}"]}
            for row in client.api.containers(all=True, filters=filters):
                with contextlib.suppress(docker.errors.NotFound):
                    states.append(self._state(client.api.inspect_container(row["Id"])))
            return states

        return await self._call(listing)

    async def logs_tail(self, container: str, lines: int = 50) -> str:
        """The last `lines` lines of stdout and stderr, merged."""

        def tail(client: _Client) -> str:
            data = self._container(client, container).logs(
                stdout=True, stderr=True, tail=lines, timestamps=False
            )
            return clean_log_bytes(bytes(data))

        return await self._call(tail)

    async def start(self, container: str) -> None:
        await self._call(lambda client: self._container(client, container).start())

    async def container_limits(self, container: str) -> Limits:
        """The memory, CPU and pids limits the container has now (0: none)."""

        def read(client: _Client) -> Limits:
            host = self._container(client, container).attrs.get("HostConfig") or {}
            return Limits(
                memory_bytes=int(host.get("Memory") or 0),
                nano_cpus=int(host.get("NanoCpus") or 0),
                pids=int(host.get("PidsLimit") or 0),
            )

        return await self._call(read)

    async def update_limits(self, container: str, limits: Limits) -> None:
        """New memory, CPU and pids limits for a container, running or not (`docker update`):
        no restart, no rebuild. The SDK's update() knows neither NanoCpus nor PidsLimit."""

        def update(client: _Client) -> None:
            found = self._container(client, container)
            api = client.api
            body = {
                "Memory": limits.memory_bytes,
                "MemorySwap": limits.memory_bytes,
                "NanoCpus": limits.nano_cpus,
                "PidsLimit": limits.pids,
            }
            response = api._post_json(api._url("/containers/{0}/update", found.id), data=body)
            api._raise_for_status(response)

        await self._call(update)

    async def container_usage(self, container: str) -> Usage:
        """CPU and memory the container uses now, as `docker stats` counts them (memory without
        the page cache the kernel can drop; CPU over dockerd's last second); zero when it is
        not running."""

        def stats(client: _Client) -> Usage:
            found = self._container(client, container)
            if found.status != "running":
                return Usage(0, 0)
            data = client.api.stats(found.id, stream=False)
            return _usage(data)

        return await self._call(stats)

    async def volume_sizes(self, labels: Mapping[str, str]) -> dict[str, int]:
        """Bytes on disk of each of our volumes carrying these labels: their folders walked
        on this host (the panel runs beside dockerd), not dockerd's disk-usage call, which
        walks every volume of the machine."""

        def sizes(client: _Client) -> dict[str, int]:
            listed = client.api.volumes(filters=self._filters(labels)).get("Volumes") or []
            return {
                str(volume["Name"]): _folder_bytes(str(volume.get("Mountpoint") or ""))
                for volume in listed
                if self._ours(volume.get("Labels"))
            }

        return await self._call(sizes)

    async def stop(self, container: str, timeout: float = 5) -> None:  # noqa: ASYNC109
        """Stop (SIGTERM, then SIGKILL after `timeout` s); a stopped container is fine."""

        def stop(client: _Client) -> None:
            found = self._container(client, container)
            # dockerd waits `timeout` s before the SIGKILL; the HTTP call must outlast that.
            client.api.stop(found.id, timeout=max(0, round(timeout)))

        await self._call(stop)

    async def remove_container(self, container: str) -> None:
        """Remove (force: running or not); a missing one is fine."""

        def remove(client: _Client) -> None:
            try:
                found = self._container(client, container)
            except NotFoundError:
                return
            with contextlib.suppress(docker.errors.NotFound):
                # v: its anonymous volumes (a VOLUME line); named volumes are never removed so.
                found.remove(force=True, v=True)

        await self._call(remove)

    def follow_logs(
        self, containers: Sequence[str], tail: int = 200, *, since: datetime | None = None
    ) -> AsyncIterator[str]:
        """Lines of these containers' stdout and stderr: the last `tail` (of those written after
        `since`, if given), then new ones live.

        With several containers each line starts with "<name> | ". The iterator ends when every
        container's stream has ended (stopped containers), or when it is closed or cancelled:
        then the reader threads end at once, their HTTP responses closed under them.
        """
        return self._follow(list(containers), tail, since)

    async def _follow(
        self, containers: list[str], tail: int, since: datetime | None = None
    ) -> AsyncIterator[str]:
        def open_streams(client: _Client) -> list[tuple[str, CancellableStream]]:
            opened: list[tuple[str, CancellableStream]] = []
            try:
                for reference in containers:
                    found = self._container(client, reference)
                    stream = found.logs(
                        stdout=True,
                        stderr=True,
                        stream=True,
                        follow=True,
                        tail=tail,
                        **({"since": since} if since is not None else {}),
                    )
                    opened.append((found.name, stream))
            except BaseException:
                for _, stream in opened:
                    stream.close()
                raise
            return opened

        streams = await self._call(open_streams)
        pump = _LogPump(asyncio.get_running_loop(), [stream for _, stream in streams])
        self._pumps.add(pump)
        try:
            several = len(streams) > 1
            for name, stream in streams:
                prefix = f"{name} | " if several else ""
                threading.Thread(
                    target=pump.read, args=(stream, prefix), name="ghst-docker-logs", daemon=True
                ).start()
            while (batch := await pump.next_batch()) is not None:
                for line in batch:
                    yield line
        finally:
            pump.close()
            self._pumps.discard(pump)

    # ------------------------------------------------------------------------------------------
    # networks

    async def ensure_network(
        self, name: str, labels: Mapping[str, str], options: Mapping[str, str] | None = None
    ) -> None:
        """A bridge network of ours by this name, made if missing, with these driver options
        (e.g. the name of its host interface, which the firewall matches)."""
        driver_options = dict(options) if options else None

        def ensure(client: _Client) -> None:
            for _ in range(3):
                try:
                    attrs = client.api.inspect_network(name)
                except docker.errors.NotFound:
                    pass
                else:
                    if not self._ours(attrs.get("Labels")):
                        raise ConflictError(
                            f"A Docker network named {name} exists and was not made by this panel."
                        )
                    return
                try:
                    client.api.create_network(
                        name,
                        driver="bridge",
                        options=driver_options,
                        labels=self._labels(labels),
                        check_duplicate=True,
                    )
                    return
                except docker.errors.APIError as error:
                    # Made by someone else meanwhile (another process's build): look again.
                    # dockerd says so with 409, or, when both asked for the same host bridge
                    # name, with "networks have same bridge name".
                    if error.status_code != 409 and "same bridge name" not in _explanation(error):
                        raise
            raise ConflictError(f"The Docker network {name} could not be made.")

        # Builds of several projects start at once and all need the shared build network.
        lock = self._network_locks.setdefault(name, asyncio.Lock())
        async with lock:
            await self._call(ensure)

    async def remove_network(self, name: str) -> None:
        """Remove one of our networks; a missing one is fine, one still in use is logged."""

        def remove(client: _Client) -> None:
            try:
                attrs = client.api.inspect_network(name)
            except docker.errors.NotFound:
                return
            if not self._ours(attrs.get("Labels")):
                log.warning("not removing network %s: it was not made by this panel", name)
                return
            self._remove_network(client, attrs["Id"], name)

        await self._call(remove)

    def _remove_network(self, client: _Client, network_id: str, name: str) -> None:
        try:
            client.api.remove_network(network_id)
        except docker.errors.NotFound:
            pass
        except docker.errors.APIError as error:
            if error.status_code not in (403, 409):  # 403: containers still attached
                raise
            log.warning("network %s kept: %s", name, _explanation(error))

    async def networks(self, labels: Mapping[str, str]) -> list[str]:
        """Names of our networks carrying all these labels."""

        def listing(client: _Client) -> list[str]:
            rows = client.api.networks(filters=self._filters(labels))
            return sorted(row["Name"] for row in rows if self._ours(row.get("Labels")))

        return await self._call(listing)

    # ------------------------------------------------------------------------------------------
    # everything of a project at once

    async def remove_labelled(self, labels: Mapping[str, str]) -> None:
        """Remove our containers (running or not), images, networks and volumes with these labels."""

        def remove(client: _Client) -> None:
            filters = self._filters(labels)

            def ours(rows: Iterable[Any]) -> list[Any]:
                return [row for row in rows if self._ours(row.get("Labels"))]

            for row in ours(client.api.containers(all=True, filters=filters)):
                with contextlib.suppress(docker.errors.NotFound):
                    client.api.remove_container(row["Id"], force=True, v=True)
            # Newest first: an image built on another one goes before it.
            rows = sorted(ours(client.api.images(filters=filters)), key=lambda row: -row["Created"])
            for row in rows:
                self._remove_image(client, row["Id"], force=True)
            for row in ours(client.api.networks(filters=filters)):
                self._remove_network(client, row["Id"], row["Name"])
            volumes = ours(client.api.volumes(filters=filters).get("Volumes") or [])
            for row in volumes:
                try:
                    client.api.remove_volume(row["Name"])
                except docker.errors.NotFound:
                    pass
                except docker.errors.APIError as error:
                    if error.status_code != 409:
                        raise
                    log.warning("volume %s kept: %s", row["Name"], _explanation(error))

        await self._call(remove)


class _Build:
    """One classic build: read in its own thread, abortable from the event loop."""

    def __init__(self, loop: asyncio.AbstractEventLoop, on_log: Callable[[str], None]) -> None:
        self._loop = loop
        self._on_log = on_log
        # LABEL steps after the Dockerfile's own (see run); the log numbers the steps as the
        # user's Dockerfile counts them.
        self._label_steps = 0
        self._lock = threading.Lock()
        self._response: Any = None
        self.aborted = False
        self.finished = False  # set on the loop when build() returns: no more on_log calls
        self._partial = ""
        self._step: tuple[str, str] | None = None  # ("2/4", "RUN false")
        self._step_output: collections.deque[str] = collections.deque(maxlen=FAILURE_TAIL_LINES)
        self._error = ""
        self._image_id: str | None = None
        # Images committed by the steps (not FROM's base), for removal if the build fails.
        self.layers: list[str] = []
        self._from_step = False

    # on the loop ---------------------------------------------------------------------------

    def abort(self) -> None:
        with self._lock:
            self.aborted = True
            response = self._response
        if response is not None:
            _close_response(response)

    async def settle(self, future: asyncio.Future[str | None]) -> None:
        """Wait (boundedly) for the aborted thread to end; its outcome no longer matters."""
        await asyncio.wait([future], timeout=SETTLE_SECONDS)
        if future.done() and not future.cancelled():
            future.exception()  # retrieved, so asyncio does not log it

    def _deliver(self, line: str) -> None:
        if not self.finished:
            self._on_log(line)

    # in the build thread -------------------------------------------------------------------

    def _attach(self, response: Any) -> None:
        with self._lock:
            self._response = response
            aborted = self.aborted
        if aborted:
            _close_response(response)

    def run(
        self, source: tuple[Path, str], options: Mapping[str, Any], client: _Client
    ) -> str | None:
        """The built image's id, or None when aborted; BuildFailed when the build failed.

        `source` is (the app folder, the context's path in it).
        """
        root, context = source
        if not root.is_dir():
            raise BuildFailed(f"The build folder {root} does not exist.")
        # Spooled next to the app folder (the panel's own build folder), never held in memory.
        with tempfile.TemporaryFile(prefix="ghst-context-", dir=root.parent) as spool:
            # The classic builder turns each build label into a step of its own (~0.15 s each);
            # one LABEL line appended to the panel's copy of the Dockerfile does the same in one.
            labels = options["labels"]
            written = write_context(
                spool,
                root,
                context,
                options["dockerfile"],
                edit=functools.partial(_with_labels, labels=labels),
                private=options["dockerfile"].startswith(PINNED_PREFIX),
            )
            options = {
                **options,
                "fileobj": spool,
                "custom_context": True,
                "dockerfile": written.dockerfile,
            }
            if written.edited:
                options["labels"] = None
                self._label_steps = 1
            else:
                self._label_steps = len(labels)
            return self._stream(options, client)

    def _stream(self, options: Mapping[str, Any], client: _Client) -> str | None:
        api = client.api
        api.ghst_local.on_response = self._attach
        try:
            stream = api.build(**options)
            for chunk in stream:
                self._handle(chunk)
        except docker.errors.APIError as error:
            if self.aborted:
                return None
            # dockerd refused the request itself: a bad Dockerfile, a missing one, bad options.
            raise BuildFailed(f"The build could not start: {_explanation(error)}") from None
        except Exception:
            if self.aborted:
                return None
            raise
        finally:
            api.ghst_local.on_response = None
            response, self._response = self._response, None
            if response is not None:
                response.close()
        if self.aborted:
            return None
        if self._partial:
            self._line(self._partial)
        if self._error:
            raise BuildFailed(self._failure())
        if self._image_id is None:
            raise BuildFailed("The build ended without producing an image.")
        return self._image_id

    def _emit(self, line: str) -> None:
        with contextlib.suppress(RuntimeError):  # the loop is gone
            self._loop.call_soon_threadsafe(self._deliver, line)

    def _line(self, line: str) -> None:
        layer = _LAYER.match(line)
        if layer and not self._from_step:
            self.layers.append(layer.group(1))
        step = _STEP.match(line)
        if step:
            self._from_step = step.group(3).split(" ", 1)[0].upper() == "FROM"
            number, total = int(step.group(1)), int(step.group(2)) - self._label_steps
            instruction = step.group(3).strip()
            if number <= total:
                line = f"Step {number}/{total} : {instruction}"
            else:
                line = f"Labelling the image: {instruction.removeprefix('LABEL ')}"
            self._step = (f"{number}/{total}", instruction)
            self._step_output.clear()
        self._emit(line)
        if not step and line.strip() and not _BUILD_NOISE.match(line):
            self._step_output.append(_shorten(line.strip(), 200))

    def _handle(self, raw: Mapping[str, Any]) -> None:
        # The tenant's build prints what it likes: every text field is cleaned as it enters.
        chunk: dict[str, Any] = {
            key: clean_log_text(value) if isinstance(value, str) else value
            for key, value in raw.items()
        }
        if "stream" in chunk:
            text = str(chunk["stream"])
            if self._partial and _BUILDER_LINE.match(text):
                # Output of a step that did not end its last line: the builder's own message
                # still starts a line of its own.
                self._line(self._partial)
                self._partial = ""
            text = self._partial + text
            *lines, self._partial = text.split("\n")
            for line in lines:
                self._line(line)
            if len(self._partial) > MAX_LOG_LINE:
                self._line(self._partial)
                self._partial = ""
        if "aux" in chunk and isinstance(chunk["aux"], Mapping) and "ID" in chunk["aux"]:
            self._image_id = str(chunk["aux"]["ID"])
        if "status" in chunk:
            progress = chunk.get("progressDetail") or {}
            if not progress.get("current"):  # a download's progress bar: too chatty
                prefix = f"{chunk['id']}: " if chunk.get("id") else ""
                self._emit(f"{prefix}{chunk['status']}")
        if "error" in chunk:
            if self._partial:
                self._line(self._partial)
                self._partial = ""
            self._error = str(chunk["error"]).strip() or "unknown error"
            self._emit(f"ERROR: {self._error}")

    def _failure(self) -> str:
        if self._step is None:
            return f"The build failed: {self._error}"
        number, instruction = self._step
        words = instruction.split()
        if words and words[0].upper() == "FROM":
            image = next((word for word in words[1:] if not word.startswith("--")), "?")
            return (
                f"The build failed at step {number} ({_shorten(instruction, 80)}): the base image "
                f"{image} is not available on this server and could not be pulled "
                f"({self._error})."
            )
        message = f"The build failed at step {number} ({_shorten(instruction, 80)}): {self._error}"
        if self._step_output:
            message += "\n" + "\n".join(self._step_output)
        return message


class _LogPump:
    """Lines from reader threads to one async consumer, with back-pressure on the threads."""

    def __init__(
        self, loop: asyncio.AbstractEventLoop, streams: Iterable[CancellableStream]
    ) -> None:
        self._loop = loop
        self._streams = list(streams)
        self._live = len(self._streams)
        self._lines: collections.deque[str] = collections.deque()
        self._cond = threading.Condition()
        self._closed = False
        self._wake = asyncio.Event()

    def _notify_loop(self) -> None:
        with contextlib.suppress(RuntimeError):  # the loop is gone
            self._loop.call_soon_threadsafe(self._wake.set)

    # reader threads ------------------------------------------------------------------------

    def _put(self, lines: list[str]) -> bool:
        """Queue lines, waiting while the consumer is behind; False once closed."""
        with self._cond:
            while len(self._lines) >= LOG_BUFFER_LINES and not self._closed:
                self._cond.wait()
            if self._closed:
                return False
            was_empty = not self._lines
            self._lines.extend(lines)
        if was_empty:
            self._notify_loop()
        return True

    def read(self, stream: CancellableStream, prefix: str) -> None:
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        partial = ""
        try:
            for chunk in stream:
                partial += decoder.decode(chunk)
                *lines, partial = partial.split("\n")
                if len(partial) > MAX_LOG_LINE:
                    lines.append(partial)
                    partial = ""
                if lines and not self._put([prefix + clean_log_text(line) for line in lines]):
                    return
            partial += decoder.decode(b"", final=True)
            if partial:
                self._put([prefix + clean_log_text(partial)])
        except Exception as error:  # a stream torn down by close(), or dockerd gone
            log.debug("log stream ended: %s", error)
        finally:
            with self._cond:
                self._live -= 1
            self._notify_loop()
            with contextlib.suppress(Exception):
                stream.close()

    # the consumer (event loop) -------------------------------------------------------------

    async def next_batch(self) -> list[str] | None:
        """The lines queued so far (waiting for some), or None when every stream has ended."""
        while True:
            self._wake.clear()
            with self._cond:
                if self._lines:
                    batch = list(self._lines)
                    self._lines.clear()
                    self._cond.notify_all()
                    return batch
                if self._live == 0 or self._closed:
                    return None
            await self._wake.wait()

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._lines.clear()
            self._cond.notify_all()
        for stream in self._streams:
            with contextlib.suppress(Exception):
                stream.close()
        self._wake.set()
