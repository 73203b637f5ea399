"""Runs one deployment: archive -> image -> containers -> healthy -> nginx switch -> old drained.

The running version is never touched until the new one answers: a failed build, a refused
compose file or an app that never gets healthy removes what this attempt made and leaves the
live version serving. After the switch the old containers keep running for `drain_seconds`, so
requests already on their way finish, then they are removed; their image stays for rollback
(the last `keep_images` per project).

Also the `Runtime` of DeploymentService: stop, start, follow logs, remove a project's things.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import logging
import os
import shutil
from collections.abc import AsyncIterator, Coroutine
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from core.archives.checks import ArchiveLimits, extract_archive
from core.archives.quota import DiskRoom
from core.archives.service import ArchiveService
from core.archives.storage import ObjectStorage
from core.confined import read_beneath
from core.db.unit import reading
from core.deploy.build_log import JobLog, step_line
from core.deploy.limits import (
    LimitsSource,
    MiB,
    ProjectLimits,
    RuntimeUsage,
    default_limits,
)
from core.deploy.live_check import Missing, find_missing
from core.deploy.model import SUCCEEDED_STATES, Deployment, State
from core.deploy.queue import DeploymentQueue
from core.deploy.store import DeploymentStore
from core.errors import NotFoundError, UnavailableError, ValidationError
from core.installation import (
    DEPLOYMENT_LABEL,
    INSTALLATION_LABEL,
    PROJECT_LABEL,
    Installation,
)
from core.projects.env_vars import EnvService
from core.projects.service import Project, ProjectService
from core.routing.health import NotReady, Probe, Unhealthy, http_status, wait_until_ready
from core.routing.nginx import NginxRouter
from core.routing.ports import PortAllocator
from core.runtime.cgroups import GroupLimits, ParentCgroups, app_group, build_group
from core.runtime.compose.app import ComposeApp
from core.runtime.compose.limits import MAX_COMPOSE_BYTES
from core.runtime.compose.load import parse_compose
from core.runtime.compose.render import render_compose
from core.runtime.compose.runner import ComposeRunner, compose_file_on_disk
from core.runtime.compose.stacks import ComposeStacks
from core.runtime.compose.state import StackState
from core.runtime.engine import ContainerState, DockerEngine, Limits
from core.runtime.firewall import HostFirewall, network_options, parse_blocked, resolvers
from core.runtime.image_policy import ImagePolicy, ImageRefused, Owner, PinnedBuild, parse_patterns
from core.settings import Settings

log = logging.getLogger(__name__)
DEFAULT_APP_PORT = 8080
START_DEADLINE = 30.0
# Containers of a deployment that ended (or was replaced) longer ago than this are leftovers.
SWEEP_GRACE = 120.0  # `start` of a stopped app waits this long for it to answer again


@dataclass(frozen=True)
class Parents:
    """A project's parent cgroups (docker `cgroup_parent` values): its containers', its builds';
    and the limits they were made with (its plan's)."""

    app: str
    build: str
    limits: ProjectLimits


@dataclass(frozen=True)
class Stray:
    """A container the panel does not touch although it carries the instance label."""

    name: str
    project: str
    deployment: str
    running: bool
    why: str


@dataclass(frozen=True)
class Target:
    """The project as the worker sees it (no owner check: the job was queued by its owner)."""

    id: int
    name: str
    user_id: int
    app_port: int | None


class Deployer:
    def __init__(
        self,
        settings: Settings,
        store: DeploymentStore,
        projects: ProjectService,
        archives: ArchiveService,
        queue: DeploymentQueue,
        ports: PortAllocator,
        storage: ObjectStorage,
        env: EnvService,
        engine: DockerEngine,
        compose: ComposeRunner,
        stacks: ComposeStacks,
        router: NginxRouter,
        installation: Installation,
    ) -> None:
        self._settings = settings
        self._installation = installation
        # Every name this panel gives a Docker object starts with it (see core.installation).
        self.namespace = installation.namespace(settings.instance)
        self._store = store
        self._projects = projects
        self._archives = archives
        self._queue = queue
        self._ports = ports
        self._storage = storage
        self._env = env
        self._engine = engine
        self._compose = compose
        self._router = router
        self._drains: set[asyncio.Task[None]] = set()
        # What a compose deployment needs later (rollback, stop, start, down), in PostgreSQL.
        self._stacks = stacks
        self.cgroups = ParentCgroups()
        self._firewall: HostFirewall | None = None
        if settings.firewall:
            self._firewall = HostFirewall(parse_blocked(settings.firewall_blocked), dns=resolvers())
        self._cgroup_driver = ""
        self._limits_of: LimitsSource | None = None
        self.policy = ImagePolicy(
            engine,
            base_patterns=parse_patterns(settings.base_images),
            allow_remote_add=settings.build_remote_add,
            allow_pull=settings.docker_pull,
            instance=settings.instance,
        )

    # --- names --------------------------------------------------------------------------------

    def _labels(self, target: Target, deployment_id: int | None = None) -> dict[str, str]:
        labels = {"ghst.project": target.name, "ghst.user": str(target.user_id)}
        if deployment_id is not None:
            labels["ghst.deployment"] = str(deployment_id)
        return labels

    def _owner(self, target: Target) -> Owner:
        """Whose images a build of `target` may use (see core/runtime/image_policy.py)."""
        return Owner(self._settings.instance, target.name, str(target.user_id), self._installation)

    def _image(self, target: Target, deployment_id: int) -> str:
        return f"{self.namespace}/{target.name}:{deployment_id}"

    def _stack(self, target: Target, deployment_id: int) -> str:
        return f"{self.namespace}-{target.name}-{deployment_id}"

    def _network(self, target: Target) -> str:
        return f"{self.namespace}-{target.name}"

    def app_cgroup(self, project: str) -> str:
        """The parent cgroup of a project's containers (see core.runtime.cgroups)."""
        return app_group(self.namespace, project)

    def build_cgroup(self, project: str) -> str:
        """The parent cgroup of a project's RUN steps."""
        return build_group(self.namespace, project)

    def _build_network(self) -> str:
        """The network of every build's RUN steps (its containers cannot see each other)."""
        return f"{self.namespace}-build"

    async def _confine(self, target: Target) -> Parents:
        """Check the host's firewall rules and make the project's parent cgroups (see
        core.runtime.cgroups) with the plan's and the build limits. Once per deployment."""
        if self._firewall is not None:
            await self._firewall.ensure()
        if not self._cgroup_driver:
            self._cgroup_driver = await self._engine.cgroup_driver()
        if self._cgroup_driver != "cgroupfs":
            raise UnavailableError(
                f"dockerd uses the {self._cgroup_driver or 'unknown'} cgroup driver; this panel "
                "holds each project to its limits with parent cgroups of the cgroupfs driver: "
                "start dockerd with --exec-opt native.cgroupdriver=cgroupfs."
            )
        settings = self._settings
        limits = await self.limits(target.id)
        build = GroupLimits(
            settings.build_memory_mb << 20, settings.build_cpus, settings.build_pids
        )
        app_parent = await asyncio.to_thread(
            self.cgroups.ensure, self.app_cgroup(target.name), limits.group()
        )
        build_parent = await asyncio.to_thread(
            self.cgroups.ensure, self.build_cgroup(target.name), build
        )
        return Parents(app_parent, build_parent, limits)

    def attach_limits(self, source: LimitsSource) -> None:
        """Where each project's limits come from (billing's plans; see core.deploy.limits)."""
        self._limits_of = source

    async def limits(self, project_id: int) -> ProjectLimits:
        """The project's plan's limits, or the settings' defaults for a project without one."""
        found = await self._limits_of(project_id) if self._limits_of is not None else None
        return found if found is not None else default_limits(self._settings)

    async def apply_limits(self, project: str, limits: ProjectLimits) -> None:
        """New limits for a project at once, without a rebuild: its parent cgroup and each of
        its containers (`docker update`, running or not), so `docker inspect` shows them.

        The kernel keeps a child's CPU quota within its parent's, so the group first rises to
        cover both the old and the new limits, then the containers move, then the group
        settles on the new ones: every step is valid, whichever way each limit moves."""
        group = self.app_cgroup(project)
        containers = await self._engine.containers({"ghst.project": project})
        current = [await self._engine.container_limits(c.id) for c in containers]
        wanted = limits.container()
        cover = GroupLimits(
            max([wanted.memory_bytes, *(c.memory_bytes for c in current)]),
            max([wanted.nano_cpus, *(c.nano_cpus for c in current)]) / 1e9,
            max([wanted.pids, *(c.pids for c in current)]),
        )
        await asyncio.to_thread(self.cgroups.ensure, group, cover)
        for container in containers:
            await self._engine.update_limits(container.id, wanted)
        await asyncio.to_thread(self.cgroups.ensure, group, limits.group())

    async def measure(self, project: str) -> RuntimeUsage:
        """The project's containers' CPU and memory now, how many run, its volumes' bytes."""
        running = [
            container
            for container in await self._engine.containers({"ghst.project": project})
            if container.running
        ]
        samples = await asyncio.gather(
            *(self._engine.container_usage(container.id) for container in running)
        )
        return RuntimeUsage(
            cpu_millicores=sum(sample.cpu_millicores for sample in samples),
            memory_bytes=sum(sample.memory_bytes for sample in samples),
            services_running=len(running),
            volume_bytes=await self.volume_bytes(project),
        )

    async def _check_disk(self, target: Target, limits: ProjectLimits) -> None:
        """Deploy's door of the plan's disk: a project whose versions and volumes already fill
        it deploys nothing more (volumes have no size of their own on ext4: see README)."""
        if limits.disk_mb is None:
            return
        room = DiskRoom(
            limits.plan,
            limits.disk_mb * MiB,
            await self._archives.stored_bytes(target.id),
            await self.volume_bytes(target.name),
        )
        if room.free <= 0:
            raise room.full()

    async def volume_bytes(self, project: str) -> int:
        """Bytes in the project's named volumes (the data its apps keep across deployments)."""
        return sum((await self._engine.volume_sizes({"ghst.project": project})).values())

    async def confine_running(self) -> None:
        """The firewall rules and the parent cgroups of every project with containers: a reboot
        (or a dockerd restart) empties them, while docker restarts the containers by itself."""
        projects = {
            name
            for container in await self._engine.containers({})
            if (name := container.labels.get("ghst.project"))
        }
        for name in sorted(projects):
            project = await self._projects.by_name(name)
            try:
                await self._confine(
                    Target(id=project.id if project else 0, name=name, user_id=0, app_port=None)
                )
            except UnavailableError as error:  # e.g. more memory in use than a lowered limit
                log.warning("cannot restore the limits of project %s: %s", name, error)

    async def _build_options(self, parents: Parents) -> dict[str, Any]:
        """Where a project's RUN steps run: its build cgroup and the build network."""
        network = self._build_network()
        await self._engine.ensure_network(network, {}, network_options(network, isolated=True))
        return {
            "cgroup_parent": parents.build,
            "cpus": self._settings.build_cpus,
            "network": network,
        }

    def app_limits(self) -> Limits:
        """Each container's limits for a project without a plan (the settings' defaults)."""
        return default_limits(self._settings).container()

    # --- one deployment -----------------------------------------------------------------------

    async def deploy(self, job: Deployment, worker: str, joblog: JobLog) -> None:
        """Take `job` (claimed by `worker`) to running, or raise; the caller records failures
        and calls `discard` to remove what this attempt made."""
        # A heal (queued by the lost-container check, not through the service) or a job queued
        # just before a suspension must not bring a suspended project back up.
        async with reading(self._store.pool) as db:
            await self._projects.holds.refuse(db, job.project_id, job.reason)
        target = await self._target(job.project_id)
        env = await self._env.as_mapping(target.id)
        parents = await self._confine(target)
        if job.reason != "heal":  # a lost app comes back whatever its disk holds
            await self._check_disk(target, parents.limits)
        build_dir = self._settings.builds_dir / str(job.id)
        try:
            if job.source_id is not None:
                source = await self._deployment(job.source_id)
                if job.reason == "heal":
                    joblog.step(
                        f"The containers of live deployment #{source.id} were gone (removed"
                        " outside the panel, or lost with Docker): the panel starts it again."
                    )
                joblog.step(
                    f"Reusing the image of deployment #{source.id} ({source.archive_name}):"
                    " no build."
                )
                if source.kind == "compose":
                    # The user's compose file as parsed while the archive was unpacked (env
                    # files and .env read in), saved by whichever worker deployed it.
                    saved = await self._stacks.get(source.id)
                    if saved is None:
                        raise ValidationError(
                            f"Deployment #{source.id}'s compose file is gone: deploy its"
                            " archive again instead."
                        )
                    await self._run_compose(
                        job, worker, joblog, target, env, saved.app, source, parents
                    )
                else:
                    assert source.image is not None
                    await self._run_image(job, worker, joblog, target, env, source.image, parents)
            else:
                app_dir = await self._unpack(job, joblog, build_dir)
                compose_file = await asyncio.to_thread(_compose_file, app_dir)
                if await asyncio.to_thread(_present, app_dir, "Dockerfile"):
                    if compose_file is not None:
                        joblog.step(
                            f"Found a Dockerfile and {compose_file}: building the"
                            " Dockerfile (remove it to deploy the compose stack instead)."
                        )
                    image = await self._build(job, worker, joblog, target, app_dir, parents)
                    await self._run_image(job, worker, joblog, target, env, image, parents)
                elif compose_file is not None:
                    text = await asyncio.to_thread(_read_compose_file, app_dir, compose_file)
                    # It reads .env, env files and extends files: a thread.
                    app = await asyncio.to_thread(
                        functools.partial(
                            parse_compose,
                            text,
                            app_dir,
                            variables=env,
                            max_services=parents.limits.max_services,
                        )
                    )
                    app = await self._pin_images(joblog, target, app)
                    await self._build_services(job, worker, joblog, target, app, app_dir, parents)
                    await self._run_compose(job, worker, joblog, target, env, app, None, parents)
                else:  # the upload checks make this impossible, unless files changed since
                    raise ValidationError("The archive has no Dockerfile and no compose file.")
        finally:
            await asyncio.to_thread(shutil.rmtree, build_dir, True)

    async def _unpack(self, job: Deployment, joblog: JobLog, build_dir: Path) -> Path:
        if job.archive_id is None:
            raise ValidationError(f"The archive {job.archive_name} was deleted before the build.")
        key = await self._archives.storage_key(job.archive_id)
        if key is None:
            raise ValidationError(f"The archive {job.archive_name} was deleted before the build.")
        joblog.step(f"Unpacking {job.archive_name}")
        app_dir = build_dir / "app"

        def unpack() -> None:
            build_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
            with self._storage.open_seekable(key) as fileobj:
                extract_archive(fileobj, app_dir, ArchiveLimits())

        await asyncio.to_thread(unpack)
        return app_dir

    async def _build(
        self,
        job: Deployment,
        worker: str,
        joblog: JobLog,
        target: Target,
        app_dir: Path,
        parents: Parents,
    ) -> str:
        image = self._image(target, job.id)
        pinned = await self.policy.pin_build(app_dir, app_dir, "Dockerfile", self._owner(target))
        joblog.step(f"Building {image}")
        await self._queue.record(job.id, worker, kind="dockerfile", image=image)
        await self._engine.build(
            app_dir,
            tag=image,
            labels=self._labels(target, job.id),
            on_log=joblog.line,
            timeout=self._settings.build_timeout,
            memory_bytes=self._settings.build_memory_mb << 20,
            **await self._build_options(parents),
            dockerfile=pinned.dockerfile,
            cache_from=pinned.cache_from,
        )
        await self._verify_built(target, image, pinned)
        return image

    async def _verify_built(self, target: Target, image: str, pinned: PinnedBuild) -> None:
        """Check what the build really used; a refused image is removed at once."""
        try:
            await self.policy.verify_built(image, self._owner(target), pinned)
        except ImageRefused:
            await self._engine.remove_image(image)
            raise

    async def _pin_images(self, joblog: JobLog, target: Target, app: ComposeApp) -> ComposeApp:
        """The app with each service's `image:` replaced by the id of the local image it names,
        once the policy allowed it: compose then runs exactly the checked image."""
        built = {build.service for build in app.builds}
        services = dict(app.document["services"])
        for name in app.services:
            if name in built:
                continue
            reference = str(services[name]["image"]).strip()
            image_id = await self.policy.check_reference(
                reference, self._owner(target), f"Service {name!r}"
            )
            joblog.step(f"Service {name!r} runs {reference} ({image_id[:19]})")
            services[name] = {**services[name], "image": image_id}
        return dataclasses.replace(app, document={**app.document, "services": services})

    async def _build_services(
        self,
        job: Deployment,
        worker: str,
        joblog: JobLog,
        target: Target,
        app: ComposeApp,
        app_dir: Path,
        parents: Parents,
    ) -> None:
        image = self._image(target, job.id)
        await self._queue.record(
            job.id, worker, kind="compose", image=image, stack=self._stack(target, job.id)
        )
        options = await self._build_options(parents) if app.builds else {}
        for build in app.builds:
            tag = f"{image}-{build.service}"
            pinned = await self.policy.pin_build(
                app_dir,
                app_dir / build.context,
                build.dockerfile,
                self._owner(target),
                build_args=dict(build.args),
                target=build.target,
            )
            joblog.step(f"Building {tag} for service {build.service!r}")
            await self._engine.build(
                app_dir / build.context,
                root=app_dir,
                tag=tag,
                dockerfile=pinned.dockerfile,
                build_args=dict(build.args),
                target=build.target,
                labels=self._labels(target, job.id),
                on_log=joblog.line,
                timeout=self._settings.build_timeout,
                memory_bytes=self._settings.build_memory_mb << 20,
                **options,
                cache_from=pinned.cache_from,
            )
            await self._verify_built(target, tag, pinned)

    async def _app_port(self, target: Target, image: str, joblog: JobLog) -> int:
        if target.app_port:
            return target.app_port
        exposed = (await self._engine.image_info(image)).exposed_ports
        if len(exposed) == 1:
            return exposed[0]
        if exposed:
            joblog.step(
                f"The image exposes ports {', '.join(map(str, exposed))}: using {exposed[0]}."
                " Set the app port in the project's settings to choose another."
            )
            return exposed[0]
        return DEFAULT_APP_PORT

    async def _run_image(
        self,
        job: Deployment,
        worker: str,
        joblog: JobLog,
        target: Target,
        env: dict[str, str],
        image: str,
        parents: Parents,
    ) -> None:
        app_port = await self._app_port(target, image, joblog)
        port = await self._ports.allocate(target.id, job.id)
        await self._queue.record(
            job.id,
            worker,
            kind="dockerfile",
            image=image,
            port=port,
            app_port=app_port,
            state=State.STARTING,
        )
        network = self._network(target)
        await self._engine.ensure_network(network, self._labels(target), network_options(network))
        name = self._stack(target, job.id)
        joblog.step(f"Starting {name} (app port {app_port}, published on 127.0.0.1:{port})")
        container = await self._engine.run(
            name=name,
            image=image,
            host_port=port,
            app_port=app_port,
            env={**env, "PORT": str(app_port)},
            labels=self._labels(target, job.id),
            limits=parents.limits.container(),
            network=network,
            cgroup_parent=parents.app,
        )
        await self._wait_healthy(joblog, target, [container], port)
        await self._switch(job, worker, joblog, target, port)

    async def _run_compose(
        self,
        job: Deployment,
        worker: str,
        joblog: JobLog,
        target: Target,
        env: dict[str, str],
        app: ComposeApp,
        source: Deployment | None,
        parents: Parents,
    ) -> None:
        base_image = (source.image if source else None) or self._image(target, job.id)
        built = {build.service: f"{base_image}-{build.service}" for build in app.builds}
        app_port = target.app_port or app.app_port
        if app_port is None and app.web_service in built:
            app_port = await self._app_port(target, built[app.web_service], joblog)
        app_port = app_port or DEFAULT_APP_PORT
        stack = self._stack(target, job.id)
        port = await self._ports.allocate(target.id, job.id)
        await self._queue.record(
            job.id,
            worker,
            kind="compose",
            image=base_image,
            stack=stack,
            port=port,
            app_port=app_port,
            state=State.STARTING,
        )
        rendered = render_compose(
            app,
            stack=stack,
            instance=self._settings.instance,
            installation=self._installation.id,
            namespace=self.namespace,
            project=target.name,
            deployment_id=job.id,
            user_id=target.user_id,
            host_port=port,
            app_port=app_port,
            built_images=built,
            env={**env, "PORT": str(app_port)},
            memory_bytes=parents.limits.memory_bytes,
            cpus=parents.limits.cpus,
            pids=parents.limits.pids,
            cgroup_parent=parents.app,
        )
        # Saved before anything starts: stop, start, down and a later rollback to this
        # deployment read it, on whichever worker runs them.
        await self._stacks.save(job.id, StackState(app, rendered))
        live = await self._live(target.id)
        paused: Deployment | None = None
        if app.keeps_data and live is not None:
            # Two copies of a database must never share a volume: stop the old stack first.
            joblog.step(
                "The stack keeps data in volumes: stopping the running version first"
                " (it is started again if this deployment fails)."
            )
            await self._stop_containers(live)
            paused = live
        try:
            joblog.step(f"Starting stack {stack} (web service {app.web_service!r})")
            async with compose_file_on_disk(rendered) as file:
                await self._compose.up(stack, file, joblog.line)
            containers = [c.id for c in await self._engine.containers(self._labels(target, job.id))]
            await self._wait_healthy(joblog, target, containers, port)
            await self._switch(job, worker, joblog, target, port)
        except BaseException:
            if paused is not None:
                with contextlib.suppress(Exception):
                    await self._start_containers(paused)
            raise

    async def _wait_healthy(
        self, joblog: JobLog, target: Target, containers: list[str], port: int
    ) -> None:
        joblog.step(f"Waiting for the app to answer (up to {self._settings.health_timeout:.0f} s)")
        with_healthcheck = []
        for container in containers:
            state = await self._engine.state(container)
            if state.health is not None:
                with_healthcheck.append(container)
        host = f"{target.name}.{self._settings.domain}"

        async def check() -> None:
            for container in containers:
                state = await self._engine.state(container)
                if not state.running:
                    tail = await self._engine.logs_tail(container, 20)
                    why = (
                        "it ran out of memory"
                        if state.oom_killed
                        else f"exit code {state.exit_code}"
                    )
                    raise Unhealthy(
                        f"The app stopped right after starting ({why}). Its last lines:\n{tail}"
                    )
                if state.health == "unhealthy":
                    raise Unhealthy("The app's HEALTHCHECK says it is unhealthy.")
                if state.health == "starting":
                    raise NotReady("its HEALTHCHECK has not passed yet")
            if not with_healthcheck:
                status = await http_status(port, host)
                if status >= 500:
                    raise NotReady(f"it answers HTTP {status}")

        took = await wait_until_ready(Probe(check), self._settings.health_timeout)
        joblog.step(f"The app answers ({took:.1f} s)")

    async def _switch(
        self, job: Deployment, worker: str, joblog: JobLog, target: Target, port: int
    ) -> None:
        """Route nginx to the new version and record it as live, as one step: a cancel that
        arrives meanwhile (shutdown, lost lease) waits for the switch, so nginx and the
        database never disagree about which version is live."""
        switching = asyncio.ensure_future(self._switch_now(job, worker, joblog, target, port))
        try:
            await asyncio.shield(switching)
        except asyncio.CancelledError:
            await switching
            raise

    async def _switch_now(
        self, job: Deployment, worker: str, joblog: JobLog, target: Target, port: int
    ) -> None:
        joblog.step(f"Switching {self._router.url(target.name)} to deployment #{job.id}")
        await self._router.route(target.name, port, job.id)
        written = await joblog.take()
        try:
            live_line = step_line(f"Live at {self._router.url(target.name)}")
            previous = await self._queue.go_live(job.id, worker, written + live_line)
        except Exception:  # not ours any more (lease lost), or not recorded: route back
            joblog.line(written)
            await self._route_back(target)
            raise
        if previous is not None:
            self._spawn(self._retire(previous, target))
        self._spawn(self._prune(target))

    async def _route_back(self, target: Target) -> None:
        """Point nginx at what the database says is live again (or nothing, or the stopped
        page) after a switch that did not go through."""
        try:
            flags = (await self._projects.deploy_flags([target.id])).get(target.id)
            stopped = flags is not None and flags.stopped
            live = await self._live(target.id)
            if live is None or live.port is None:
                await self._router.remove(target.name)
            elif stopped:
                page = await self._projects.holds.stopped_page(target.id)
                await self._router.route_stopped(target.name, page)
            else:
                await self._router.route(target.name, live.port, live.id)
        except Exception:
            log.exception("could not route %s back to its live version", target.name)

    # --- after the switch ---------------------------------------------------------------------

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(work)
        self._drains.add(task)
        task.add_done_callback(self._drains.discard)

    async def _retire(self, previous: Deployment, target: Target) -> None:
        """Let requests already sent to the old version finish, then remove its containers."""
        try:
            await asyncio.sleep(self._settings.drain_seconds)
            await self.remove_containers(previous)
        except asyncio.CancelledError:
            await self.remove_containers(previous)
            raise
        except Exception:
            log.exception("could not remove the containers of deployment %s", previous.id)

    async def _prune(self, target: Target) -> None:
        """Keep the images of the last `keep_images` successful deployments (and the live one)."""
        try:
            flags = (await self._projects.deploy_flags([target.id])).get(target.id)
            rows = await self._store.kept_images(target.id, flags.live_id if flags else None)
            for row in rows[max(0, self._settings.keep_images - 1) :]:
                # Rollbacks and restarts share their source's image: only drop unused ones.
                if await self._store.image_in_use(row["image"], row["id"]):
                    continue
                await self._queue.forget_image(row["id"])
                still_named = await self._image_still_recorded(row["image"])
                if not still_named:
                    for reference in await self._images_of(row["image"]):
                        await self._engine.remove_image(reference)
        except Exception:
            log.exception("could not prune old images of %s", target.name)

    async def _image_still_recorded(self, image: str) -> bool:
        return await self._store.image_recorded(image)

    async def _images_of(self, image: str) -> list[str]:
        """The image, and for compose stacks the service images tagged `<image>-<service>`."""
        found = [image]
        repository, _, tag = image.rpartition(":")
        for _id, tags, _created in await self._engine.images({}):
            for name in tags:
                if name.startswith(f"{repository}:{tag}-"):
                    found.append(name)
        return found

    async def close(self) -> None:
        """Finish pending drains now (shutdown): the old versions are removed without waiting."""
        for task in list(self._drains):
            task.cancel()
        await asyncio.gather(*self._drains, return_exceptions=True)

    async def sweep(self, grace: float = SWEEP_GRACE) -> list[int]:
        """Remove containers no deployment needs any more: those a crash left behind (a drain
        that never ran, a clean-up cut short). Returns the deployment ids swept. Live and
        in-progress deployments are never touched, nor ones that ended less than `grace` seconds
        ago (another worker may be draining them). Only this panel's containers are looked at,
        and of those, one whose deployment this database does not know is left alone and
        reported (`strays`): it may belong to a database restored from a backup, say."""
        by_deployment: dict[int, list[str]] = {}
        for container in await self._engine.containers({}):
            label = container.labels.get(DEPLOYMENT_LABEL, "")
            if label.isdigit():
                by_deployment.setdefault(int(label), []).append(container.id)
        if not by_deployment:
            return []
        kept, known = await self._store.to_keep(
            list(by_deployment), await self._projects.live_deployment_ids(), grace
        )
        swept = []
        unknown = []
        for deployment_id in sorted(by_deployment):
            if deployment_id in kept:
                continue
            if deployment_id not in known:
                unknown.append(deployment_id)
                continue
            await self.remove_containers(await self._deployment(deployment_id))
            swept.append(deployment_id)
        if swept:
            log.info("removed the leftover containers of deployments %s", swept)
        if unknown:
            log.warning(
                "left alone: containers of deployments %s, which this panel's database does not"
                " know (`ghst strays` lists them)",
                unknown,
            )
        return swept

    async def strays(self) -> list[Stray]:
        """Containers under this instance's label that the panel leaves alone: another
        installation's (another panel on this dockerd), or its own of deployments its database
        does not know. For an operator to look at; the panel never removes them."""
        containers = await self._engine.instance_containers()
        ours = {
            int(label)
            for c in containers
            if self._engine.owns(c.labels)
            and (label := c.labels.get(DEPLOYMENT_LABEL, "")).isdigit()
        }
        known = await self._store.known(sorted(ours))
        found = []
        for container in sorted(containers, key=lambda c: c.name):
            labels = container.labels
            deployment = labels.get(DEPLOYMENT_LABEL, "")
            if not self._engine.owns(labels):
                mark = labels.get(INSTALLATION_LABEL)
                why = (
                    f"made by another panel (installation {mark})"
                    if mark
                    else "made before installations were labelled, for no deployment this panel knows"
                )
            elif not deployment.isdigit() or int(deployment) not in known:
                why = "its deployment is not in this panel's database"
            else:
                continue
            found.append(
                Stray(
                    container.name,
                    labels.get(PROJECT_LABEL, ""),
                    deployment,
                    container.running,
                    why,
                )
            )
        return found

    async def check_live(self) -> list[Missing]:
        """Live deployments found without containers just now; a heal is queued for each."""
        return await find_missing(self._store, self._projects, self._engine)

    # --- clean-up of an attempt ---------------------------------------------------------------

    async def discard(self, job: Deployment) -> None:
        """Remove everything a failed or cancelled attempt made; the live version is untouched."""
        current = await self._deployment(job.id)
        if current.state in SUCCEEDED_STATES:  # an interrupt that came too late: it is live now
            log.warning("deployment %s went live: nothing of it is discarded", job.id)
            return
        await self.remove_containers(current)
        if current.kind == "compose":
            await self._stacks.forget(current.id)
        if current.source_id is None and current.image:
            for reference in await self._images_of(current.image):
                await self._engine.remove_image(reference)
        await asyncio.to_thread(shutil.rmtree, self._settings.builds_dir / str(job.id), True)

    async def remove_containers(self, deployment: Deployment) -> None:
        """Containers (and for compose, the stack's networks) of one deployment, and its port."""
        if deployment.kind == "compose" and deployment.stack:
            with contextlib.suppress(Exception):
                saved = await self._stacks.get(deployment.id)
                if saved is not None:
                    async with compose_file_on_disk(saved.compose_file) as file:
                        await self._compose.down(deployment.stack, file)
        for container in await self._containers_of(deployment):
            await self._engine.remove_container(container.id)
        await self._ports.release(deployment.id)

    # --- Runtime: what DeploymentService asks of live deployments -----------------------------

    async def stop(self, deployment: Deployment) -> None:
        page = await self._projects.holds.stopped_page(deployment.project_id)
        await self._router.route_stopped(deployment.project, page)
        await self._stop_containers(deployment)

    async def start(self, deployment: Deployment) -> None:
        await self._start_containers(deployment)
        target = await self._target(deployment.project_id)
        containers = [c.id for c in await self._containers_of(deployment)]
        assert deployment.port is not None
        host = f"{target.name}.{self._settings.domain}"

        async def check() -> None:
            if (await http_status(deployment.port or 0, host)) >= 500:
                raise NotReady("not yet")

        if containers:
            await wait_until_ready(Probe(check), START_DEADLINE)
        await self._router.route(deployment.project, deployment.port, deployment.id)

    async def _stop_containers(self, deployment: Deployment) -> None:
        if deployment.kind == "compose" and deployment.stack:
            saved = await self._stacks.get(deployment.id)
            if saved is not None:  # else a stack from before states were saved: its containers
                async with compose_file_on_disk(saved.compose_file) as file:
                    await self._compose.stop(deployment.stack, file)
                return
        for container in await self._containers_of(deployment):
            await self._engine.stop(container.id)

    async def _start_containers(self, deployment: Deployment) -> None:
        if deployment.kind == "compose" and deployment.stack:
            saved = await self._stacks.get(deployment.id)
            if saved is not None:  # else a stack from before states were saved: its containers
                async with compose_file_on_disk(saved.compose_file) as file:
                    await self._compose.start(deployment.stack, file)
                return
        containers = await self._containers_of(deployment)
        if not containers:
            raise NotFoundError(
                f"The containers of deployment #{deployment.id} are gone: redeploy the project."
            )
        for container in containers:
            await self._engine.start(container.id)

    def follow_logs(
        self, deployment: Deployment, tail: int, *, since: datetime | None = None
    ) -> AsyncIterator[str]:
        async def lines() -> AsyncIterator[str]:
            containers = await self._containers_of(deployment)
            if not containers:
                raise NotFoundError("The app's containers are gone: redeploy the project.")
            stream = self._engine.follow_logs([c.id for c in containers], tail, since=since)
            try:
                async for line in stream:
                    yield line
            finally:
                await stream.aclose()  # type: ignore[attr-defined]

        return lines()

    async def remove_project(self, project: Project) -> None:
        """Containers, images, networks and volumes labelled with the project; its vhost."""
        if project.name in await asyncio.to_thread(self._router.projects):
            await self._router.remove(project.name)
        await self._engine.remove_labelled({"ghst.project": project.name})
        for group in (self.app_cgroup(project.name), self.build_cgroup(project.name)):
            await asyncio.to_thread(self.cgroups.remove, group)

    # --- lookups ------------------------------------------------------------------------------

    async def _target(self, project_id: int) -> Target:
        project = await self._projects.by_id(project_id)
        if project is None:
            raise NotFoundError("The project was deleted.")
        return Target(project.id, project.name, project.user_id, project.app_port)

    async def _deployment(self, deployment_id: int) -> Deployment:
        found = await self._store.get(deployment_id)
        if found is None:
            raise NotFoundError(f"Deployment #{deployment_id} is gone.")
        return found

    async def _live(self, project_id: int) -> Deployment | None:
        flags = (await self._projects.deploy_flags([project_id])).get(project_id)
        if flags is None or flags.live_id is None:
            return None
        return await self._store.get(flags.live_id)

    async def _containers_of(self, deployment: Deployment) -> list[ContainerState]:
        return await self._engine.containers({"ghst.deployment": str(deployment.id)})


COMPOSE_NAMES = ("compose.yaml", "compose.yml", "docker-compose.yaml", "docker-compose.yml")


def _present(app_dir: Path, name: str) -> bool:
    """Whether the app folder has an entry `name`, whatever it is (a link is not followed): what
    it is gets checked, with a message, when it is read."""
    try:
        os.lstat(app_dir / name)
    except FileNotFoundError:
        return False
    return True


def _compose_file(app_dir: Path) -> str | None:
    return next((name for name in COMPOSE_NAMES if _present(app_dir, name)), None)


def _read_compose_file(app_dir: Path, name: str) -> str:
    """The compose file, read as the kernel resolves its name, never leaving the app folder."""
    data = read_beneath(app_dir, name, limit=MAX_COMPOSE_BYTES, what="The compose file")
    return data.decode(errors="replace")
