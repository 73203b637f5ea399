"""Compose apps: a user's compose file, checked, rewritten by the panel, run with compose.

The seed panel ran users' compose files verbatim, so `privileged: true` or a mount of the Docker
socket gave any user root on the host. Here a compose file is untrusted text:

- `parse_compose` reads it (YAML, at most 1 MiB; anchors and merge keys are fine but their
  expansion is bounded), interpolates `${VAR}`, `${VAR:-default}`... from the variables it is
  given and the app's own `.env` file, never from the panel's environment, resolves `extends`,
  reads `env_file`s, and refuses everything that reaches outside the container with a
  `ComposeRejected` that names the service and the option; every path the file names (build
  contexts, Dockerfiles, env_files, `extends` files, `.env`) is resolved as the kernel resolves
  it, links and all, and never leaves the app folder (`core.confined`); a Dockerfile must lie
  inside its build context;
- `render_compose` writes a new file from an allow-list of keys: built images instead of
  `build`, no host ports but the web service's `127.0.0.1:<host_port>:<app_port>`, the plan's
  limits, `init`, a restart policy, `no-new-privileges`, bounded logs, ghst labels over the
  user's, the stack's own networks, and named volumes that outlive a deployment
  (`<instance>-<project>_<volume>`); every `$` in it is escaped, so compose interpolates nothing;
- `ComposeRunner` runs `docker compose` (v2) or `docker-compose` (v1) on that file with a clean
  environment and an empty env file, so neither the panel's variables nor a `.env` in the app
  folder (which v1 reads for DOCKER_HOST and COMPOSE_*) reach compose.

    ValidationError
    ├── ComposeRejected   not a compose file, or it asks for something this panel does not allow
    └── ComposeFailed     compose could not start the app: why, with the end of its output
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import logging
import os
import posixpath
import re
import shlex
import tempfile
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from core.confined import (
    APP_FOLDER,
    PathRefused,
    read_beneath_if_present,
    resolve_dir_beneath,
    resolve_file_beneath,
)
from core.errors import UnavailableError, ValidationError
from core.log_text import clean_log_bytes
from core.runtime.firewall import BRIDGE_NAME_OPTION, BRIDGE_PREFIX, network_options

log = logging.getLogger(__name__)

KiB = 1024
MiB = 1024 * KiB

MAX_COMPOSE_BYTES = 1 * MiB
MAX_ENV_FILE_BYTES = 256 * KiB
# Anchors let a small file stand for a huge tree ("billion laughs"): the expanded tree is bounded.
MAX_NODES = 100_000
MAX_DEPTH = 64
MAX_EXTENDS = 8  # `extends` steps from one service
MAX_SERVICES = 10  # services that start (the setting GHST_COMPOSE_MAX_SERVICES)
DEFAULT_TMPFS = 64 * MiB  # the size of a tmpfs that names none, at most a quarter of the memory
# tmpfs mount options a service may give (others, such as dev or suid, are refused).
_TMPFS_OPTIONS = frozenset({"size", "mode", "uid", "gid"})
_TMPFS_FLAGS = frozenset({"noexec", "exec", "nosuid", "nodev", "ro", "rw"})
MAX_NOFILE = 1_048_576  # the kernel's default nr_open
LOG_LINES = 20  # lines of compose's output quoted in a ComposeFailed
MAX_LINE = 1 * MiB  # longest line of compose's output read whole

_SERVICE_NAME = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,62}$")
_VOLUME_NAME = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,62}$")
_VARIABLE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_ENV_KEY = re.compile(r"^[^=\x00]+$")
_STACK = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")
_DRIVE = re.compile(r"^[A-Za-z]:[\\/]")
_DRIVE_BACKSLASH = re.compile(r"^[A-Za-z]:\\")  # "c:/x" is volume c at /x
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]?)i?b?\s*$", re.IGNORECASE)
_PORT = re.compile(r"^(\d{1,5})(?:-(\d{1,5}))?(?:/(tcp|udp|sctp))?$", re.IGNORECASE)
# Capabilities Docker gives every container anyway: asking for them changes nothing.
_DEFAULT_CAPS = frozenset(
    {
        "CHOWN",
        "DAC_OVERRIDE",
        "FSETID",
        "FOWNER",
        "MKNOD",
        "NET_RAW",
        "SETGID",
        "SETUID",
        "SETFCAP",
        "SETPCAP",
        "NET_BIND_SERVICE",
        "SYS_CHROOT",
        "KILL",
        "AUDIT_WRITE",
    }
)
# What `extends` does not inherit (as compose; a profile marks the base as a template only).
_NOT_INHERITED = frozenset({"extends", "depends_on", "links", "volumes_from", "profiles"})
_LIST_KEYS = frozenset(
    {"ports", "expose", "dns", "dns_search", "cap_add", "cap_drop", "devices", "security_opt"}
    | {"tmpfs", "env_file", "volumes", "external_links", "device_cgroup_rules", "configs"}
    | {"secrets", "profiles"}
)
_MAPPING_KEYS = frozenset({"environment", "labels", "ulimits", "healthcheck", "logging", "build"})
_WEB_NAMES = ("web", "app")
_OUR_LABEL_PREFIXES = ("ghst.", "com.docker.compose.")
_COMPOSE_NAMES = "compose.yaml, compose.yml, docker-compose.yaml or docker-compose.yml"


class ComposeRejected(ValidationError):
    """The compose file is unusable or asks for something the panel does not allow."""

    title = "Compose file refused"


class ComposeFailed(ValidationError):
    """Compose could not start (or stop) the app; the message ends with compose's last lines."""

    title = "Compose failed"


@dataclass(frozen=True)
class ServiceBuild:
    service: str
    context: str  # relative to the app folder, links resolved, inside it ("." for itself)
    dockerfile: str  # relative to context, links resolved, inside it
    args: tuple[tuple[str, str], ...] = ()  # build.args with a value
    target: str | None = None  # build.target


@dataclass(frozen=True)
class ComposeApp:
    document: dict[str, Any]  # parsed, interpolated, `extends` resolved, checked; not rewritten
    services: tuple[str, ...]  # in file order; services in a `profiles` are left out
    web_service: str  # the service nginx routes to
    app_port: int | None  # its container port if the file tells it (ports/expose)
    builds: tuple[ServiceBuild, ...]
    keeps_data: bool  # some service mounts a named volume
    # Variables read from each service's env_files (when parse_compose had the app folder).
    env_files: Mapping[str, Mapping[str, str]] = field(default_factory=dict)


# --- parsing ----------------------------------------------------------------------------------


def parse_compose(
    text: str,
    app_dir: Path | None = None,
    *,
    variables: Mapping[str, str] | None = None,
    max_services: int = MAX_SERVICES,
) -> ComposeApp:
    """Read and check a compose file; raise ComposeRejected with a message for the user.

    At most `max_services` services may start: the plan's limits hold for the project as a
    whole, and each container costs the server memory of its own besides.

    `app_dir` is the unpacked app folder: build contexts, env_files and files named by
    `extends` must exist inside it (with it, env_files are read here, so the app folder need
    not outlive the build). Interpolation uses `variables` (the project's env vars) over the
    app folder's `.env`; anything else is unset. Reads small files: call it in a thread.
    """
    dotenv: dict[str, str] = {}
    if app_dir is not None:
        data = _read_confined(app_dir, ".env", "The .env file", required=False)
        if data is not None:
            dotenv = _parse_env_file(data, ".env")
    interpolation = {**dotenv, **(variables or {})}
    raw = _load_yaml(text, "The compose file")
    document = _Copier(interpolation).copy(raw)
    return _Parser(document, app_dir, interpolation, max_services).parse()


class _Parser:
    def __init__(
        self,
        document: dict[str, Any],
        app_dir: Path | None,
        variables: Mapping[str, str],
        max_services: int = MAX_SERVICES,
    ) -> None:
        self.document = document
        self.app_dir = app_dir
        self.variables = variables
        self.max_services = max_services

    def parse(self) -> ComposeApp:
        document = self.document
        if "include" in document:
            raise ComposeRejected(
                "The compose file uses include:, which this panel does not support: "
                "put all services in one file."
            )
        services = document.get("services")
        if not isinstance(services, dict) or not services:
            raise ComposeRejected(
                "The compose file has no services: section. List your app's containers under "
                "services:, e.g. services: {web: {build: ., ports: ['8000']}}."
            )
        if len(services) > self.max_services * 4:  # before any work on each of them
            raise self._too_many(len(services))
        for name, service in services.items():
            if not _SERVICE_NAME.match(name):
                raise ComposeRejected(
                    f"The service name {_q(name)} is not valid: use letters, digits, '.', '_' "
                    "and '-', starting with a letter or digit."
                )
            if not isinstance(service, dict):
                raise ComposeRejected(f"Service {_q(name)} should be a mapping of options.")
            _normalise_service(name, service)
        volumes = self._top_level("volumes", "Volume")
        networks = self._top_level("networks", "Network")
        for kind in ("configs", "secrets"):
            self._check_files(kind)
        for name, volume in volumes.items():
            _check_volume(name, volume)
        for name, network in networks.items():
            _check_network(name, network)
        resolved = {name: self._resolve_extends(name, services, ".", []) for name in services}
        document["services"] = resolved
        active = tuple(name for name, service in resolved.items() if not service.get("profiles"))
        if not active:
            raise ComposeRejected(
                "Every service of the compose file is in a profile, so none would start."
            )
        if len(active) > self.max_services:
            raise self._too_many(len(active))
        env_files: dict[str, dict[str, str]] = {}
        builds: list[ServiceBuild] = []
        keeps_data = False
        for name in active:
            service = resolved[name]
            checker = _ServiceChecker(name, service, set(active), volumes, networks)
            checker.check()
            keeps_data = keeps_data or checker.named_volumes
            build = self._build(name, service)
            if build is not None:
                builds.append(build)
            elif not isinstance(service.get("image"), str) or not service["image"].strip():
                raise ComposeRejected(
                    f"Service {_q(name)} has neither an image: nor a build: section, so there "
                    "is nothing to run."
                )
            files = self._env_files(name, service)
            if files is not None:
                env_files[name] = files
        web = _web_service(active, resolved)
        return ComposeApp(
            document=document,
            services=active,
            web_service=web,
            app_port=_app_port(web, resolved[web]),
            builds=tuple(builds),
            keeps_data=keeps_data,
            env_files=env_files,
        )

    def _too_many(self, count: int) -> ComposeRejected:
        return ComposeRejected(
            f"The compose file has {count} services; this panel runs at most "
            f"{self.max_services} per project (they share the project's memory, CPU and "
            "processes): merge some, or move them into profiles."
        )

    def _top_level(self, key: str, what: str) -> dict[str, Any]:
        section = self.document.get(key)
        if section is None:
            return {}
        if not isinstance(section, dict):
            raise ComposeRejected(f"The top-level {key}: section should be a mapping of names.")
        for name, value in section.items():
            if not _VOLUME_NAME.match(name):
                raise ComposeRejected(
                    f"{what} name {_q(name)} is not valid: use letters, digits, '.', '_' and "
                    "'-', starting with a letter or digit."
                )
            if value is None:
                section[name] = {}
            elif not isinstance(value, dict):
                raise ComposeRejected(f"{what} {_q(name)} should be a mapping of options.")
        return section

    def _check_files(self, key: str) -> None:
        section = self.document.get(key)
        if not section:
            return
        what = key[:-1].capitalize()
        if not isinstance(section, dict):
            raise ComposeRejected(f"The top-level {key}: section should be a mapping of names.")
        for name, value in section.items():
            options = value if isinstance(value, dict) else {}
            if _flag(options.get("external")):
                raise ComposeRejected(
                    f"{what} {_q(name)} is external (it lives outside this app), which this "
                    "panel does not allow."
                )
            if "file" in options:
                raise ComposeRejected(
                    f"{what} {_q(name)} is read from a file ({key}: file:), which this panel "
                    "does not support: set the value as an environment variable of the project "
                    "instead."
                )
            raise ComposeRejected(
                f"{what} {_q(name)}: top-level {key}: are not supported by this panel; use "
                "environment variables of the project instead."
            )

    def _resolve_extends(
        self,
        name: str,
        services: Mapping[str, Any],
        folder: str,
        chain: list[tuple[str, str]],
    ) -> dict[str, Any]:
        service: dict[str, Any] = services[name]
        extends = service.get("extends")
        if extends is None:
            return service
        top = chain[0][1] if chain else name
        if isinstance(extends, str):
            extends = {"service": extends}
        if not isinstance(extends, dict) or not isinstance(extends.get("service"), str):
            raise ComposeRejected(
                f"Service {_q(top)}: extends: should name a service (extends: {{service: x}})."
            )
        base_name: str = extends["service"]
        file = extends.get("file")
        if len(chain) >= MAX_EXTENDS or (folder, name) in chain:
            raise ComposeRejected(
                f"Service {_q(top)} extends services in a loop (or more than {MAX_EXTENDS} deep)."
            )
        chain = [*chain, (folder, name)]
        if file is None:
            if base_name not in services:
                raise ComposeRejected(
                    f"Service {_q(top)} extends service {_q(base_name)}, which is not in the file."
                )
            base = self._resolve_extends(base_name, services, folder, chain)
        else:
            if not isinstance(file, str):
                raise ComposeRejected(f"Service {_q(top)}: extends.file should be a path.")
            if _is_absolute(file) or (
                self.app_dir is None and _relative_inside(posixpath.join(folder, file)) is None
            ):
                raise ComposeRejected(
                    f"Service {_q(top)} extends a service in {_q(file)}, which is outside the "
                    "app folder."
                )
            if self.app_dir is None:
                raise ComposeRejected(
                    f"Service {_q(top)} extends a service in {_q(file)}, which cannot be read here."
                )
            # Read as the kernel resolves the path, links and all, never leaving the app folder.
            # `folder` is a resolved path (no links), so joining `file` to it as text is exact.
            what = f"Service {_q(top)}: the extends file"
            joined = file if folder == "." else posixpath.join(folder, file)
            text = _read_confined(self.app_dir, joined, what)
            assert text is not None
            relative = _resolved_file(self.app_dir, joined, what)
            other = _Copier(self.variables).copy(_load_yaml(text, _q(file)))
            other_services = other.get("services")
            if not isinstance(other_services, dict) or not isinstance(
                other_services.get(base_name), dict
            ):
                raise ComposeRejected(
                    f"Service {_q(top)} extends service {_q(base_name)} of {_q(file)}, which "
                    "has no such service."
                )
            _normalise_service(base_name, other_services[base_name])
            base = self._resolve_extends(
                base_name, other_services, posixpath.dirname(relative) or ".", chain
            )
        inherited = {key: value for key, value in base.items() if key not in _NOT_INHERITED}
        own = {key: value for key, value in service.items() if key != "extends"}
        return _merge(inherited, own)

    def _build(self, name: str, service: dict[str, Any]) -> ServiceBuild | None:
        build = service.get("build")
        if build is None:
            return None
        if isinstance(build, str):
            build = {"context": build}
        if not isinstance(build, dict):
            raise ComposeRejected(f"Service {_q(name)}: build: should be a folder or a mapping.")
        network = build.get("network")
        if isinstance(network, str) and network.lower() == "host":
            raise ComposeRejected(
                f"Service {_q(name)} builds with the host's network (build.network: host), "
                "which this panel does not allow."
            )
        if "dockerfile_inline" in build:
            raise ComposeRejected(
                f"Service {_q(name)} uses build.dockerfile_inline, which this panel does not "
                "support: put a Dockerfile in the app folder."
            )
        context = build.get("context", ".")
        if not isinstance(context, str) or not context.strip():
            raise ComposeRejected(f"Service {_q(name)}: build.context should be a folder.")
        if "://" in context or context.startswith(("git@", "github.com/")):
            raise ComposeRejected(
                f"Service {_q(name)} builds from {_q(context)}, a remote context: this panel "
                "builds only from the uploaded app folder."
            )
        dockerfile = build.get("dockerfile", "Dockerfile")
        if not isinstance(dockerfile, str) or not dockerfile.strip():
            raise ComposeRejected(f"Service {_q(name)}: build.dockerfile should be a file name.")
        if _is_absolute(context):
            raise ComposeRejected(
                f"Service {_q(name)} builds from {_q(context)}, which is outside the app folder."
            )
        if _is_absolute(dockerfile):
            raise ComposeRejected(
                f"Service {_q(name)} builds with the Dockerfile {_q(dockerfile)}, an absolute "
                "path: name it relative to the build context, inside it."
            )
        if self.app_dir is None:  # the text alone (the folder is checked when it is there)
            relative = _relative_inside(context)
            if relative is None:
                raise ComposeRejected(
                    f"Service {_q(name)} builds from {_q(context)}, which is outside the app "
                    "folder."
                )
            inner = _relative_inside(dockerfile)
            if inner is None:
                raise ComposeRejected(
                    f"Service {_q(name)} builds with the Dockerfile {_q(dockerfile)}, which is "
                    "outside its build context folder: the Dockerfile must be inside it."
                )
        else:
            # As the kernel resolves them, links and all: the context inside the app folder,
            # the Dockerfile inside the context.
            folder = _resolved_dir(self.app_dir, context, f"Service {_q(name)}: the build context")
            relative = folder.relative_to(self.app_dir.resolve()).as_posix() or "."
            inner = _resolved_file(
                folder,
                dockerfile,
                f"Service {_q(name)}: the Dockerfile",
                inside="its build context folder",
            )
        target = build.get("target")
        if target is not None and not isinstance(target, str):
            raise ComposeRejected(f"Service {_q(name)}: build.target should be a stage name.")
        args = _string_mapping(build.get("args"), name, "build.args")
        return ServiceBuild(
            service=name,
            context=relative,
            dockerfile=inner,
            args=tuple((key, value) for key, value in args.items() if value is not None),
            target=target,
        )

    def _env_files(self, name: str, service: dict[str, Any]) -> dict[str, str] | None:
        entries = service.get("env_file")
        if entries is None:
            return None
        if isinstance(entries, (str, dict)):
            entries = [entries]
        if not isinstance(entries, list):
            raise ComposeRejected(f"Service {_q(name)}: env_file: should be a file or a list.")
        paths: list[tuple[str, bool]] = []
        for entry in entries:
            path, required = entry, True
            if isinstance(entry, dict):
                path, required = entry.get("path"), entry.get("required", True) is not False
            if not isinstance(path, str) or not path:
                raise ComposeRejected(f"Service {_q(name)}: env_file: entries should be paths.")
            normalised = _relative_inside(path)
            if _is_absolute(path) or (self.app_dir is None and normalised is None):
                raise ComposeRejected(
                    f"Service {_q(name)} reads env_file {_q(path)}, which is outside the app "
                    "folder."
                )
            # Without the folder, compose reads the file: the normalised text is what it gets.
            paths.append((path if self.app_dir is not None else (normalised or path), required))
        service["env_file"] = [path for path, _ in paths]
        if self.app_dir is None:
            return None
        values: dict[str, str] = {}
        for path, required in paths:
            what = f"Service {_q(name)}: the env_file"
            text = _read_confined(self.app_dir, path, what, required=required)
            if text is not None:
                values.update(_parse_env_file(text, path))
        return values


def _normalise_service(name: str, service: dict[str, Any]) -> None:
    """Lists of `K=V` become mappings, so `extends` and the panel's variables merge over them."""
    for key in ("environment", "labels"):
        if key in service:
            service[key] = _string_mapping(service[key], name, key)
    build = service.get("build")
    if isinstance(build, dict) and "args" in build:
        build["args"] = _string_mapping(build["args"], name, "build.args")


class _ServiceChecker:
    """Refuses, with its own message, each option that reaches outside the container."""

    def __init__(
        self,
        name: str,
        service: dict[str, Any],
        services: set[str],
        volumes: Mapping[str, Any],
        networks: Mapping[str, Any],
    ) -> None:
        self.name = name
        self.service = service
        self.services = services
        self.volumes = volumes
        self.networks = networks
        self.named_volumes = False

    def refuse(self, what: str, hint: str = "") -> ComposeRejected:
        return ComposeRejected(
            f"Service {_q(self.name)} {what}, which this panel does not allow{hint}."
        )

    def check(self) -> None:
        service = self.service
        if _flag(service.get("privileged")):
            raise self.refuse("asks for privileged mode")
        self._namespaces()
        if service.get("cgroup_parent"):
            raise self.refuse(
                f"asks for the cgroup parent {_q(str(service['cgroup_parent']))} (cgroup_parent)"
            )
        if service.get("devices"):
            raise self.refuse("asks for host devices (devices)")
        if service.get("device_cgroup_rules"):
            raise self.refuse("asks for device access rules (device_cgroup_rules)")
        added = [str(cap).upper().removeprefix("CAP_") for cap in _list(service, "cap_add")]
        extra = [cap for cap in added if cap not in _DEFAULT_CAPS]
        if extra:
            raise self.refuse(f"asks for extra capabilities (cap_add: {', '.join(extra)})")
        for option in _list(service, "security_opt"):
            self._security_opt(str(option))
        if service.get("sysctls"):
            raise self.refuse("sets kernel parameters (sysctls)")
        for entry in _list(service, "tmpfs"):
            _tmpfs_entry(self.name, entry)
        for entry in _list(service, "volumes"):
            self._volume(entry)
        for entry in _list(service, "volumes_from"):
            self._volumes_from(str(entry))
        if service.get("external_links"):
            raise self.refuse(
                "links to containers outside this app (external_links)",
            )
        for entry in _list(service, "links"):
            target = str(entry).split(":", 1)[0]
            if target not in self.services:
                raise ComposeRejected(
                    f"Service {_q(self.name)} links to {_q(target)}, which is not a service of "
                    "this file."
                )
        self._networks()
        self._depends_on()
        for key in ("configs", "secrets"):
            if service.get(key):
                raise self.refuse(
                    f"uses {key}:", ": set values as environment variables of the project instead"
                )

    def _namespaces(self) -> None:
        service = self.service
        mode = service.get("network_mode")
        if mode is not None:
            mode = str(mode)
            if mode == "host":
                raise self.refuse("asks for the host's network (network_mode: host)")
            if mode.startswith("container:"):
                raise self.refuse(
                    f"asks to join the network of another container (network_mode: {mode})",
                    ": only services of this file may share a network",
                )
            if mode.startswith("service:"):
                target = mode.removeprefix("service:")
                if target not in self.services:
                    raise ComposeRejected(
                        f"Service {_q(self.name)} uses the network of {_q(target)} "
                        "(network_mode), which is not a service of this file."
                    )
            elif mode not in {"none", "bridge", "default"}:
                raise self.refuse(f"asks for the network mode {_q(mode)}")
        names = {
            "pid": "process namespace",
            "ipc": "IPC namespace",
            "uts": "UTS namespace (hostname)",
            "userns_mode": "user namespace",
            "cgroup": "cgroup namespace",
        }
        for key, what in names.items():
            value = service.get(key)
            if value is None:
                continue
            value = str(value)
            if value == "host":
                raise self.refuse(f"asks for the host's {what} ({key}: host)")
            if value.startswith("container:"):
                raise self.refuse(f"asks to share the {what} of another container ({key}: {value})")
            if value.startswith("service:") and value.removeprefix("service:") not in (
                self.services
            ):
                raise ComposeRejected(
                    f"Service {_q(self.name)} shares the {what} of "
                    f"{_q(value.removeprefix('service:'))} ({key}), which is not a service of "
                    "this file."
                )

    def _security_opt(self, option: str) -> None:
        normal = option.strip().lower().replace("=", ":")
        if normal.startswith("no-new-privileges"):
            return  # the panel sets it anyway
        if "unconfined" in normal or normal == "label:disable":
            raise self.refuse(
                f"asks to turn off a security profile (security_opt: {option})",
            )
        raise self.refuse(f"asks for the security option {_q(option)} (security_opt)")

    def _volume(self, entry: Any) -> None:
        if isinstance(entry, str):
            source, target = _split_volume(entry)
            kind = "volume" if source is None or not _looks_like_path(source) else "bind"
        elif isinstance(entry, dict):
            kind = str(entry.get("type", ""))
            source = entry.get("source")
            source = None if source is None else str(source)
            target = str(entry.get("target", ""))
            if not target:
                raise ComposeRejected(
                    f"Service {_q(self.name)} mounts a volume without a target: path."
                )
        else:
            raise ComposeRejected(f"Service {_q(self.name)}: volumes: entries should be strings.")
        if source is not None and "docker.sock" in source:
            raise self.refuse(
                "mounts the Docker socket (/var/run/docker.sock), which would give it control "
                "of the whole server,"
            )
        if kind in {"bind", "npipe"}:
            raise self.refuse(
                f"mounts the host path {_q(source or '')} (volumes)",
                ": keep data in a named volume, or COPY files in the Dockerfile",
            )
        if kind == "tmpfs":
            options = entry.get("tmpfs") if isinstance(entry, dict) else None
            if options is not None and not isinstance(options, dict):
                raise ComposeRejected(f"Service {_q(self.name)}: volumes: tmpfs: should be a mapping.")
            if options and "size" in options and _size(options["size"]) is None:
                raise ComposeRejected(
                    f"Service {_q(self.name)}: the tmpfs size {_q(str(options['size']))} of "
                    f"{_q(target)} cannot be read; write it as 16m or 1g."
                )
            return
        if kind != "volume":
            raise self.refuse(f"mounts a volume of type {_q(kind)}")
        if source is None or source == "":
            return  # an anonymous volume
        if not _VOLUME_NAME.match(source):
            raise ComposeRejected(
                f"Service {_q(self.name)} mounts {_q(source)}, which is not a valid volume name."
            )
        if source not in self.volumes:
            raise ComposeRejected(
                f"Service {_q(self.name)} mounts the volume {_q(source)}, which is not declared "
                "under the top-level volumes: section."
            )
        self.named_volumes = True

    def _volumes_from(self, entry: str) -> None:
        if entry.startswith("container:"):
            raise self.refuse(
                f"takes volumes from the container {_q(entry.removeprefix('container:'))} "
                "(volumes_from), which is not part of this app;"
            )
        target = entry.removeprefix("service:").split(":", 1)[0]
        if target not in self.services:
            raise ComposeRejected(
                f"Service {_q(self.name)} takes volumes from {_q(target)} (volumes_from), which "
                "is not a service of this file."
            )

    def _networks(self) -> None:
        networks = self.service.get("networks")
        if networks is None:
            return
        if isinstance(networks, list):
            names = [str(name) for name in networks]
        elif isinstance(networks, dict):
            names = list(networks)
        else:
            raise ComposeRejected(f"Service {_q(self.name)}: networks: should be a list.")
        for network in names:
            if network != "default" and network not in self.networks:
                raise ComposeRejected(
                    f"Service {_q(self.name)} joins the network {_q(network)}, which is not "
                    "declared under the top-level networks: section."
                )

    def _depends_on(self) -> None:
        depends = self.service.get("depends_on")
        if depends is None:
            return
        if not isinstance(depends, (list, dict)):
            raise ComposeRejected(f"Service {_q(self.name)}: depends_on: should be a list.")
        for target in depends:
            if str(target) not in self.services:
                raise ComposeRejected(
                    f"Service {_q(self.name)} depends on {_q(str(target))}, which is not a "
                    "service of this file."
                )


def _check_volume(name: str, volume: Mapping[str, Any]) -> None:
    if _flag(volume.get("external")):
        raise ComposeRejected(
            f"Volume {_q(name)} is external (a volume outside this app), which this panel does "
            "not allow."
        )
    if volume.get("driver_opts"):
        raise ComposeRejected(
            f"Volume {_q(name)} sets driver_opts (which can mount host folders), which this "
            "panel does not allow."
        )
    driver = volume.get("driver")
    if driver not in (None, "local"):
        raise ComposeRejected(
            f"Volume {_q(name)} uses the driver {_q(str(driver))}; only the local driver is "
            "available."
        )


def _check_network(name: str, network: Mapping[str, Any]) -> None:
    if _flag(network.get("external")):
        raise ComposeRejected(
            f"Network {_q(name)} is external (a network outside this app), which this panel "
            "does not allow."
        )
    driver = network.get("driver")
    if driver not in (None, "bridge", "overlay", "default"):
        raise ComposeRejected(
            f"Network {_q(name)} uses the driver {_q(str(driver))}; only the default bridge "
            "driver is allowed."
        )
    options = network.get("driver_opts")
    # The panel names every bridge itself (the firewall knows them by name): one of its own
    # names is accepted and ignored, so a rendered file parses again.
    if options and not (
        isinstance(options, dict)
        and set(options) == {BRIDGE_NAME_OPTION}
        and str(options[BRIDGE_NAME_OPTION]).startswith(BRIDGE_PREFIX)
    ):
        raise ComposeRejected(
            f"Network {_q(name)} sets driver_opts, which this panel does not allow."
        )
    if network.get("ipam"):
        raise ComposeRejected(
            f"Network {_q(name)} sets its addresses (ipam), which this panel does not allow: "
            "the panel picks them."
        )


def _tmpfs_entry(service: str, entry: Any) -> tuple[str, int | None, list[str]]:
    """(target, size or None, other options) of a `tmpfs:` entry such as "/run:size=16m,mode=1777"."""
    if not isinstance(entry, str) or not entry.startswith("/"):
        raise ComposeRejected(
            f"Service {_q(service)}: tmpfs: entries should be absolute paths, such as "
            "/run:size=16m."
        )
    target, _, text = entry.partition(":")
    size: int | None = None
    options: list[str] = []
    for option in filter(None, (part.strip() for part in text.split(","))):
        name, sep, value = option.partition("=")
        if (sep and name not in _TMPFS_OPTIONS) or (not sep and name not in _TMPFS_FLAGS):
            raise ComposeRejected(
                f"Service {_q(service)}: the tmpfs option {_q(option)} of {_q(target)} is not "
                "allowed here (size, mode, uid, gid, noexec, nosuid, nodev, ro are)."
            )
        if name == "size":
            size = _size(value)
            if size is None:
                raise ComposeRejected(
                    f"Service {_q(service)}: the tmpfs size {_q(value)} of {_q(target)} cannot be "
                    "read; write it as 16m or 1g."
                )
        else:
            options.append(option)
    return target, size, options


def _web_service(active: tuple[str, ...], services: Mapping[str, Any]) -> str:
    with_ports = [name for name in active if services[name].get("ports")]
    if with_ports:
        web = with_ports[0]
    else:
        named = [name for name in _WEB_NAMES if name in active]
        if named:
            web = named[0]
        elif len(active) == 1:
            web = active[0]
        else:
            raise ComposeRejected(
                f"The compose file has {len(active)} services ({', '.join(active)}) and none "
                "publishes a port, so the panel cannot tell which one answers HTTP: give that "
                "service a ports: entry with its port, e.g. ports: ['8000']."
            )
    mode = services[web].get("network_mode")
    if isinstance(mode, str) and (mode == "none" or mode.startswith("service:")):
        raise ComposeRejected(
            f"Service {_q(web)} receives the web traffic, so it cannot use another service's "
            "network (network_mode)."
        )
    return web


def _app_port(name: str, service: Mapping[str, Any]) -> int | None:
    for entry in _list(service, "ports"):
        port = _container_port(entry)
        if port is None:
            raise ComposeRejected(
                f"Service {_q(name)}: the port entry {_q(str(entry))} cannot be read; write "
                "it as '8000' or '8080:8000'."
            )
        if port > 0:
            return port
    for entry in _list(service, "expose"):
        port = _container_port(entry)
        if port is None:
            raise ComposeRejected(
                f"Service {_q(name)}: the expose entry {_q(str(entry))} cannot be read."
            )
        if port > 0:
            return port
    return None


def _container_port(entry: Any) -> int | None:
    """The container side of a ports/expose entry; 0 for a UDP port; None if unreadable."""
    protocol = "tcp"
    if isinstance(entry, dict):
        target = entry.get("target")
        protocol = str(entry.get("protocol", "tcp")).lower()
        text = str(target) if isinstance(target, (int, str)) else ""
    elif isinstance(entry, (int, str)) and not isinstance(entry, bool):
        text = str(entry).strip()
        # [host ip:][host port:]container port[/protocol]; the IP may be [v6].
        text = re.sub(r"^\[[0-9a-fA-F:.]*\]:", "", text)
        text = text.rsplit(":", 1)[-1]
    else:
        return None
    match = _PORT.match(text)
    if match is None:
        return None
    port = int(match.group(1))
    if not 1 <= port <= 65535:
        return None
    if (match.group(3) or protocol).lower() != "tcp":
        return 0
    return port


# --- rendering --------------------------------------------------------------------------------


def render_compose(
    app: ComposeApp,
    *,
    stack: str,
    instance: str,
    project: str,
    deployment_id: int,
    user_id: int,
    installation: str = "",
    namespace: str = "",
    host_port: int,
    app_port: int,
    built_images: Mapping[str, str],
    env: Mapping[str, str],
    memory_bytes: int,
    cpus: float,
    pids: int,
    cgroup_parent: str = "",
) -> str:
    """The sanitized compose file (YAML) that the panel runs for one deployment of `app`.

    `env` (the project's variables, with PORT when the panel chose the port) goes to every
    service over the file's own environment. Write the result where compose can read it and
    keep it while the stack exists (stop, start and down use it).

    Every container gets the plan's limits, and with `cgroup_parent` (the project's cgroup)
    they hold for all of them together. Each tmpfs gets a size (DEFAULT_TMPFS, at most a
    quarter of the memory, when it names none); their sizes together must fit in the
    memory, as their contents are memory. The stack's networks get host interfaces the
    firewall knows (core.runtime.firewall).
    """
    ours = {
        "ghst.instance": instance,
        "ghst.project": project,
        "ghst.deployment": str(deployment_id),
        "ghst.user": str(user_id),
    }
    if installation:  # the panel's identity (core.installation): only it may remove these
        ours["ghst.installation"] = installation
    # Volumes outlive a deployment: no deployment label, so v1 never warns they changed.
    volume_labels = {key: value for key, value in ours.items() if key != "ghst.deployment"}
    document = app.document
    source_services: dict[str, Any] = document["services"]
    built = {build.service for build in app.builds}
    services: dict[str, Any] = {}
    for name in app.services:
        services[name] = _render_service(
            name,
            source_services[name],
            app,
            image=built_images[name] if name in built else str(source_services[name]["image"]),
            labels=ours,
            env=env,
            memory_bytes=memory_bytes,
            cpus=cpus,
            pids=pids,
        )
        if cgroup_parent:
            services[name]["cgroup_parent"] = cgroup_parent
    tmpfs_total = sum(_tmpfs_bytes(service) for service in services.values())
    if tmpfs_total > memory_bytes:
        raise ComposeRejected(
            f"The tmpfs mounts of the compose file take {tmpfs_total / MiB:.0f} MiB together "
            f"(one without a size counts as {min(DEFAULT_TMPFS, memory_bytes // 4) // MiB} "
            f"MiB), more than the project's memory ({memory_bytes // MiB} MiB), which their "
            "contents use: give them smaller sizes, e.g. tmpfs: ['/run:size=16m']."
        )
    services[app.web_service]["ports"] = [f"127.0.0.1:{host_port}:{app_port}"]
    networks: dict[str, Any] = {
        "default": {"labels": dict(ours), "driver_opts": network_options(f"{stack}_default")}
    }
    for name, network in (document.get("networks") or {}).items():
        rendered: dict[str, Any] = {
            "labels": {**_user_labels(network.get("labels")), **ours},
            "driver_opts": network_options(f"{stack}_{name}"),
        }
        if _flag(network.get("internal")):
            rendered["internal"] = True
        networks[name] = rendered
    volumes: dict[str, Any] = {}
    for name, volume in (document.get("volumes") or {}).items():
        volumes[name] = {
            "name": volume_name(namespace or instance, project, name),
            "labels": {**_user_labels(volume.get("labels")), **volume_labels},
        }
    output: dict[str, Any] = {"services": services, "networks": networks}
    if volumes:
        output["volumes"] = volumes
    header = (
        f"# Written by ghst for stack {stack} (project {project}, deployment {deployment_id}).\n"
        f"# Web traffic goes to service {app.web_service}: 127.0.0.1:{host_port} -> "
        f"port {app_port}.\n"
    )
    return header + yaml.safe_dump(
        _escape_dollars(output), sort_keys=False, default_flow_style=False, allow_unicode=True
    )


def volume_name(instance: str, project: str, volume: str) -> str:
    """The Docker volume that keeps `volume` of a project across deployments.

    Project names hold no '_', so `<instance>-<project>_<volume>` never names another project's
    volume (with '-' there, project "a-b" volume "c" would be project "a" volume "b-c").
    """
    return f"{instance}-{project}_{volume}"


def _render_service(
    name: str,
    service: Mapping[str, Any],
    app: ComposeApp,
    *,
    image: str,
    labels: Mapping[str, str],
    env: Mapping[str, str],
    memory_bytes: int,
    cpus: float,
    pids: int,
) -> dict[str, Any]:
    out: dict[str, Any] = {"image": image}
    for key in ("command", "entrypoint"):
        if service.get(key) is not None:
            value = service[key]
            out[key] = [str(part) for part in value] if isinstance(value, list) else str(value)
    for key in ("working_dir", "user", "hostname", "domainname", "stop_signal"):
        if service.get(key) is not None:
            out[key] = str(service[key])
    if service.get("stop_grace_period") is not None:
        out["stop_grace_period"] = str(service["stop_grace_period"])
    for key in ("tty", "stdin_open", "read_only"):
        if service.get(key) is not None:
            out[key] = _flag(service[key])
    environment: dict[str, str] = dict(app.env_files.get(name, {}))
    environment.update(
        (key, value)
        for key, value in (service.get("environment") or {}).items()
        if value is not None
    )
    environment.update(env)
    if name not in app.env_files and service.get("env_file"):
        out["env_file"] = list(service["env_file"])
    if environment:
        out["environment"] = environment
    mode = service.get("network_mode")
    own_network = isinstance(mode, str) and (mode == "none" or mode.startswith("service:"))
    if own_network:
        out["network_mode"] = mode
    else:
        networks = _render_networks(service.get("networks"))
        if networks is not None:
            out["networks"] = networks
        if service.get("expose"):
            out["expose"] = [str(port) for port in service["expose"]]
        hosts = service.get("extra_hosts")
        if hosts:
            out["extra_hosts"] = (
                [f"{host}:{address}" for host, address in hosts.items()]
                if isinstance(hosts, dict)
                else [str(entry) for entry in hosts]
            )
    for key in ("pid", "ipc"):
        value = service.get(key)
        if isinstance(value, str) and value.startswith("service:"):
            out[key] = value
    if service.get("ipc") in ("private", "shareable"):
        out["ipc"] = service["ipc"]
    if service.get("depends_on"):
        out["depends_on"] = _render_depends_on(service["depends_on"])
    if service.get("links"):
        out["links"] = [str(link) for link in service["links"]]
    if service.get("volumes_from"):
        out["volumes_from"] = [str(entry) for entry in service["volumes_from"]]
    volumes = [_render_volume(entry) for entry in _list(service, "volumes")]
    if volumes:
        out["volumes"] = volumes
    default_tmpfs = min(DEFAULT_TMPFS, memory_bytes // 4)
    tmpfs: list[str] = []
    for entry in _list(service, "tmpfs"):
        target, size, options = _tmpfs_entry(name, entry)
        tmpfs.append(f"{target}:" + ",".join([f"size={size or default_tmpfs}", *options]))
    if tmpfs:
        out["tmpfs"] = tmpfs
    for volume in volumes:
        if isinstance(volume, dict) and volume["type"] == "tmpfs":
            volume.setdefault("tmpfs", {}).setdefault("size", default_tmpfs)
    healthcheck = service.get("healthcheck")
    if isinstance(healthcheck, dict):
        out["healthcheck"] = _render_healthcheck(healthcheck)
    if service.get("cap_drop"):
        out["cap_drop"] = [str(cap) for cap in service["cap_drop"]]
    shm = _size(service.get("shm_size"))
    if shm is not None:
        out["shm_size"] = min(shm, memory_bytes)
    nofile = _render_nofile(service.get("ulimits"))
    if nofile is not None:
        out["ulimits"] = {"nofile": nofile}
    out["labels"] = {**_user_labels(service.get("labels")), **labels}
    out["init"] = True
    out["restart"] = "unless-stopped"
    out["mem_limit"] = memory_bytes
    out["memswap_limit"] = memory_bytes
    out["cpus"] = cpus
    out["pids_limit"] = pids
    out["security_opt"] = ["no-new-privileges:true"]
    out["logging"] = {"driver": "json-file", "options": {"max-size": "10m", "max-file": "3"}}
    return out


def _render_networks(networks: Any) -> list[str] | dict[str, Any] | None:
    if networks is None:
        return None
    if isinstance(networks, list):
        return [str(network) for network in networks]
    rendered: dict[str, Any] = {}
    for network, options in networks.items():
        aliases = options.get("aliases") if isinstance(options, dict) else None
        rendered[network] = {"aliases": [str(alias) for alias in aliases]} if aliases else None
    return rendered


def _render_depends_on(depends: Any) -> list[str] | dict[str, Any]:
    if isinstance(depends, list):
        return [str(target) for target in depends]
    rendered: dict[str, Any] = {}
    for target, options in depends.items():
        condition = options.get("condition") if isinstance(options, dict) else None
        rendered[str(target)] = {"condition": str(condition or "service_started")}
    return rendered


def _render_volume(entry: Any) -> Any:
    if isinstance(entry, str):
        return entry
    rendered: dict[str, Any] = {"type": str(entry["type"]), "target": str(entry["target"])}
    if entry.get("source"):
        rendered["source"] = str(entry["source"])
    if entry.get("read_only") is not None:
        rendered["read_only"] = _flag(entry["read_only"])
    volume = entry.get("volume")
    if isinstance(volume, dict) and volume.get("nocopy") is not None:
        rendered["volume"] = {"nocopy": _flag(volume["nocopy"])}
    tmpfs = entry.get("tmpfs")
    if isinstance(tmpfs, dict):
        options = {"size": _size(tmpfs.get("size")), "mode": tmpfs.get("mode")}
        kept = {key: value for key, value in options.items() if isinstance(value, int)}
        if kept:
            rendered["tmpfs"] = kept
    return rendered


def _tmpfs_bytes(service: Mapping[str, Any]) -> int:
    """The sizes of a rendered service's tmpfs mounts, added up."""
    total = 0
    for entry in service.get("tmpfs") or []:
        for option in entry.partition(":")[2].split(","):
            if option.startswith("size="):
                total += int(option.removeprefix("size="))
    for volume in service.get("volumes") or []:
        if isinstance(volume, dict) and volume["type"] == "tmpfs":
            total += int(volume["tmpfs"]["size"])
    return total


def _render_healthcheck(healthcheck: Mapping[str, Any]) -> dict[str, Any]:
    rendered: dict[str, Any] = {}
    test = healthcheck.get("test")
    if test is not None:
        rendered["test"] = [str(part) for part in test] if isinstance(test, list) else str(test)
    for key in ("interval", "timeout", "start_period"):
        if healthcheck.get(key) is not None:
            rendered[key] = str(healthcheck[key])
    if isinstance(healthcheck.get("retries"), int):
        rendered["retries"] = healthcheck["retries"]
    if healthcheck.get("disable") is not None:
        rendered["disable"] = _flag(healthcheck["disable"])
    return rendered


def _render_nofile(ulimits: Any) -> int | dict[str, int] | None:
    if not isinstance(ulimits, dict) or "nofile" not in ulimits:
        return None
    nofile = ulimits["nofile"]
    if isinstance(nofile, int):
        return min(nofile, MAX_NOFILE)
    if isinstance(nofile, dict) and all(isinstance(nofile.get(k), int) for k in ("soft", "hard")):
        hard = min(int(nofile["hard"]), MAX_NOFILE)
        return {"soft": min(int(nofile["soft"]), hard), "hard": hard}
    return None


def _user_labels(labels: Any) -> dict[str, str]:
    """The user's labels without any that look like the panel's or compose's own."""
    if isinstance(labels, list):
        labels = _string_mapping(labels, "", "labels")
    if not isinstance(labels, dict):
        return {}
    return {
        str(key): "" if value is None else str(value)
        for key, value in labels.items()
        if not str(key).startswith(_OUR_LABEL_PREFIXES)
    }


def _escape_dollars(value: Any) -> Any:
    if isinstance(value, str):
        return value.replace("$", "$$")
    if isinstance(value, dict):
        return {key: _escape_dollars(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_escape_dollars(item) for item in value]
    return value


# --- running ----------------------------------------------------------------------------------


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
                services = ", ".join(f"{_q(svc)} ({_q(image)})" for svc, image in missing)
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


# --- helpers ----------------------------------------------------------------------------------


def _q(value: str) -> str:
    """A user's string quoted for a message: escaped, and cut if long."""
    text = value if len(value) <= 80 else value[:77] + "..."
    return "'" + text.encode("unicode_escape").decode("ascii").replace("'", "\\'") + "'"


def _load_yaml(text: str, what: str) -> dict[str, Any]:
    if len(text.encode(errors="replace")) > MAX_COMPOSE_BYTES:
        raise ComposeRejected(f"{what} is larger than 1 MiB; a compose file is much smaller.")
    try:
        data = _bounded_load(text, what)
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        raise ComposeRejected(f"{what} is not valid YAML{where}: {error.problem}.") from None
    except yaml.YAMLError as error:
        raise ComposeRejected(f"{what} is not valid YAML: {error}.") from None
    except RecursionError:
        raise ComposeRejected(f"{what} nests too deeply.") from None
    if data is None:
        raise ComposeRejected(f"{what} is empty.")
    if not isinstance(data, dict):
        raise ComposeRejected(
            f"{what} is not a compose file: its top level should be a mapping with a services: "
            "section."
        )
    return data


def _bounded_load(text: str, what: str) -> Any:
    """yaml.safe_load, refusing a document whose expanded tree is too large before building it.

    Composing the node graph costs time in proportion to the text (aliases are references to
    one node); building Python objects from it costs time in proportion to the tree with every
    alias and merge key expanded, which a few kilobytes can make astronomical (merge keys of
    merge keys took minutes of CPU). So that expanded size is counted on the graph first.
    """
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        _ExpansionCounter(what).count(node)
        return loader.construct_document(node)
    finally:
        loader.dispose()


class _ExpansionCounter:
    """The size of a YAML node graph with every alias and merge expanded, bounded."""

    def __init__(self, what: str) -> None:
        self.what = what
        self.sizes: dict[int, int] = {}
        self.open: set[int] = set()

    def too_large(self) -> ComposeRejected:
        return ComposeRejected(
            f"{self.what} is too large once its anchors are expanded (merge keys included: more "
            f"than {MAX_NODES:,} values); write the repeated parts out, or share less."
        )

    def count(self, node: yaml.Node, depth: int = 0) -> int:
        key = id(node)
        known = self.sizes.get(key)
        if known is not None:
            return known
        if depth > MAX_DEPTH:
            raise ComposeRejected(f"{self.what} nests more than {MAX_DEPTH} levels deep.")
        if key in self.open:
            raise ComposeRejected(f"{self.what} refers to itself (an anchor inside its own alias).")
        self.open.add(key)
        total = 1
        if isinstance(node, yaml.MappingNode):
            for item_key, item_value in node.value:
                total += self.count(item_key, depth + 1) + self.count(item_value, depth + 1)
                if total > MAX_NODES:
                    raise self.too_large()
        elif isinstance(node, yaml.SequenceNode):
            for item in node.value:
                total += self.count(item, depth + 1)
                if total > MAX_NODES:
                    raise self.too_large()
        self.open.discard(key)
        self.sizes[key] = total
        return total


class _Copier:
    """Copies a loaded YAML tree: bounded (anchors expanded), scalars normalised, `$` expanded."""

    def __init__(self, variables: Mapping[str, str]) -> None:
        self.variables = variables
        self.nodes = 0

    def copy(self, value: Any, depth: int = 0) -> Any:
        self.nodes += 1
        if self.nodes > MAX_NODES or depth > MAX_DEPTH:
            raise ComposeRejected(
                "The compose file is too large once its anchors are expanded (or it refers to "
                "itself)."
            )
        if isinstance(value, dict):
            return {
                _key(key): self.copy(item, depth + 1)
                for key, item in value.items()
                if key != "<<"  # merge keys are already merged by the loader
            }
        if isinstance(value, list):
            return [self.copy(item, depth + 1) for item in value]
        if isinstance(value, str):
            return self.interpolate(value)
        if value is None or isinstance(value, (bool, int, float)):
            return value
        if isinstance(value, (datetime.date, datetime.datetime)):
            return value.isoformat()
        raise ComposeRejected(
            f"The compose file holds a {type(value).__name__} value, which compose does not use."
        )

    def interpolate(self, text: str) -> str:
        if "$" not in text:
            return text
        out: list[str] = []
        index, end = 0, len(text)
        while index < end:
            char = text[index]
            following = text[index + 1] if index + 1 < end else ""
            if char != "$":
                out.append(char)
                index += 1
            elif following == "$":
                out.append("$")
                index += 2
            elif following == "{":
                closing = _closing_brace(text, index + 2)
                if closing < 0:
                    raise ComposeRejected(
                        f"The value {_q(text)} has a '${{' without its '}}'; write '$$' for a "
                        "literal '$'."
                    )
                out.append(self._expand(text[index + 2 : closing], text))
                index = closing + 1
            else:
                match = _VARIABLE.match(text, index + 1)
                if match is None:
                    out.append("$")
                    index += 1
                else:
                    out.append(self.variables.get(match.group(), ""))
                    index = match.end()
        return "".join(out)

    def _expand(self, inner: str, whole: str) -> str:
        match = _VARIABLE.match(inner)
        if match is None:
            raise ComposeRejected(f"The value {_q(whole)} has an invalid ${{...}} substitution.")
        name, rest = match.group(), inner[match.end() :]
        value = self.variables.get(name)
        if not rest:
            return value or ""
        for operator in (":-", ":?", ":+", "-", "?", "+"):
            if not rest.startswith(operator):
                continue
            argument = self.interpolate(rest[len(operator) :])
            present = bool(value) if operator.startswith(":") else value is not None
            if operator.endswith("-"):
                return value if present and value is not None else argument
            if operator.endswith("?"):
                if present and value is not None:
                    return value
                raise ComposeRejected(
                    f"The compose file needs the variable {name}: {argument or 'it is not set'}. "
                    "Set it in the project's environment variables."
                )
            return argument if present else ""
        raise ComposeRejected(f"The value {_q(whole)} has an invalid ${{...}} substitution.")


def _closing_brace(text: str, start: int) -> int:
    depth, index = 1, start
    while index < len(text):
        if text.startswith("${", index):
            depth += 1
            index += 2
            continue
        if text[index] == "}":
            depth -= 1
            if depth == 0:
                return index
        index += 1
    return -1


def _key(key: Any) -> str:
    if isinstance(key, bool):
        return "true" if key else "false"
    if isinstance(key, (str, int, float)):
        return str(key)
    raise ComposeRejected("The compose file has a mapping key that is not a plain name.")


def _merge(base: Mapping[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in over.items():
        old = merged.get(key)
        if key in _MAPPING_KEYS and isinstance(old, dict) and isinstance(value, dict):
            merged[key] = _merge(old, value) if key != "environment" else {**old, **value}
        elif key in _LIST_KEYS and isinstance(old, list) and isinstance(value, list):
            merged[key] = old + [item for item in value if item not in old]
        else:
            merged[key] = value
    return merged


def _string_mapping(value: Any, service: str, key: str) -> dict[str, str | None]:
    """environment/labels/args as a mapping; `K` alone (take it from the host) maps to None."""
    if value is None:
        return {}
    result: dict[str, str | None] = {}
    if isinstance(value, list):
        for entry in value:
            if not isinstance(entry, str):
                raise ComposeRejected(
                    f"Service {_q(service)}: {key}: entries should be KEY=value strings."
                )
            name, sep, text = entry.partition("=")
            result[name.strip()] = text if sep else None
    elif isinstance(value, dict):
        for name, item in value.items():
            if isinstance(item, (dict, list)):
                raise ComposeRejected(
                    f"Service {_q(service)}: {key}: {_q(name)} should be a plain value."
                )
            result[name] = _scalar_text(item)
    else:
        raise ComposeRejected(f"Service {_q(service)}: {key}: should be a mapping or a list.")
    for name in result:
        if not _ENV_KEY.match(name):
            raise ComposeRejected(f"Service {_q(service)}: {key}: {_q(name)} is not a valid name.")
    return result


def _flag(value: Any) -> bool:
    """A compose boolean: true/false, or a string such as "false" left by interpolation."""
    if isinstance(value, str):
        return value.strip().lower() in {"true", "yes", "on", "1", "y"}
    if isinstance(value, dict):
        return True  # `external: {name: x}`, the old form
    return bool(value)


def _scalar_text(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _list(service: Mapping[str, Any], key: str) -> list[Any]:
    value = service.get(key)
    if value is None:
        return []
    if isinstance(value, (str, int)):
        return [value]
    if isinstance(value, dict) and key in {"cap_add", "security_opt", "devices"}:
        return list(value)
    if not isinstance(value, list):
        raise ComposeRejected(f"Option {key}: should be a list.")
    return value


def _split_volume(entry: str) -> tuple[str | None, str]:
    """(source, target) of a short volume entry; source None for an anonymous volume."""
    if _DRIVE_BACKSLASH.match(entry):
        return entry, ""
    parts = entry.split(":")
    if len(parts) == 1:
        return None, parts[0]
    return parts[0], parts[1]


def _looks_like_path(source: str) -> bool:
    return (
        source == ""
        or source.startswith((".", "/", "~", "\\", "$"))
        or "/" in source
        or "\\" in source
        or bool(_DRIVE_BACKSLASH.match(source))
    )


def _is_absolute(path: str) -> bool:
    return path.startswith(("/", "\\", "~")) or bool(_DRIVE.match(path))


def _relative_inside(path: str) -> str | None:
    """`path` normalised as text, relative to the app folder; None if the text leads out of it.

    Only for a compose file parsed without its folder: with the folder, paths are resolved as
    the kernel does (`_read_confined`, `_resolved_dir`, `_resolved_file`).
    """
    if not path or "\x00" in path or _is_absolute(path):
        return None
    parts: list[str] = []
    for part in path.replace("\\", "/").split("/"):
        if part in ("", "."):
            continue
        if part == "..":
            if not parts:
                return None
            parts.pop()
        else:
            parts.append(part)
    return "/".join(parts) or "."


def _read_confined(app_dir: Path, path: str, what: str, *, required: bool = True) -> str | None:
    """The text of `path`, read as the kernel resolves it without leaving the app folder; None
    when it is missing and not `required`."""
    try:
        data = read_beneath_if_present(app_dir, path, limit=MAX_COMPOSE_BYTES, what=what)
    except PathRefused as refused:
        raise ComposeRejected(refused.message) from None
    if data is None:
        if required:
            raise ComposeRejected(f"{what} {_q(path)} is not in the app folder.")
        return None
    return data.decode(errors="replace")


def _resolved_dir(app_dir: Path, path: str, what: str) -> Path:
    try:
        return resolve_dir_beneath(app_dir, path, what=what)
    except PathRefused as refused:
        raise ComposeRejected(refused.message) from None


def _resolved_file(root: Path, path: str, what: str, *, inside: str = APP_FOLDER) -> str:
    try:
        return resolve_file_beneath(root, path, what=what, inside=inside)
    except PathRefused as refused:
        raise ComposeRejected(refused.message) from None


def _parse_env_file(text: str, shown: str) -> dict[str, str]:
    """KEY=value lines (comments, blank lines, `export` and quotes as compose reads them).

    A bare `KEY` (which compose would take from the panel's own environment) is skipped.
    """
    if len(text) > MAX_ENV_FILE_BYTES:
        raise ComposeRejected(f"The env file {_q(shown)} is larger than 256 KiB.")
    values: dict[str, str] = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        line = line.removeprefix("export ").lstrip()
        name, sep, value = line.partition("=")
        name = name.strip()
        if not sep or not name:
            continue
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
            if line.partition("=")[2].strip()[0] == '"':
                value = value.replace("\\n", "\n").replace('\\"', '"')
        elif " #" in value:
            value = value.split(" #", 1)[0].rstrip()
        values[name] = value
    return values


def _size(value: Any) -> int | None:
    """Bytes from 67108864, '64m', '1gb', '512k'; None if unreadable."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int):
        return value if value > 0 else None
    match = _SIZE.match(str(value))
    if match is None:
        return None
    factor = {"": 1, "k": KiB, "m": MiB, "g": 1024 * MiB, "t": 1024 * 1024 * MiB}
    return int(float(match.group(1)) * factor[match.group(2).lower()])
