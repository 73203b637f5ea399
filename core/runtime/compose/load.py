"""Reading a user's compose file: `parse_compose`.

The YAML (bounded), interpolated from the project's variables over the app's `.env`, `extends`
resolved, `env_file`s read in; then every service goes through the policy (`policy.py`) and the
web service is chosen (`web.py`). Every path the file names (build contexts, Dockerfiles,
env_files, `extends` files, `.env`) is resolved as the kernel resolves it, links and all, and
never leaves the app folder (`core.confined`); a Dockerfile must lie inside its build context.
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from core.confined import (
    APP_FOLDER,
    PathRefused,
    read_beneath_if_present,
    resolve_dir_beneath,
    resolve_file_beneath,
)
from core.runtime.compose.app import ComposeApp, ServiceBuild
from core.runtime.compose.bounded_yaml import load_yaml
from core.runtime.compose.errors import ComposeRejected
from core.runtime.compose.interpolation import Interpolator
from core.runtime.compose.limits import (
    MAX_COMPOSE_BYTES,
    MAX_ENV_FILE_BYTES,
    MAX_EXTENDS,
    MAX_SERVICES,
)
from core.runtime.compose.policy import ServiceChecker, check_network, check_volume
from core.runtime.compose.values import (
    OBJECT_NAME,
    flag,
    is_absolute,
    quoted,
    relative_inside,
    string_mapping,
)
from core.runtime.compose.web import declared_app_port, pick_web_service

_SERVICE_NAME = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,62}$")
# What `extends` does not inherit (as compose; a profile marks the base as a template only).
_NOT_INHERITED = frozenset({"extends", "depends_on", "links", "volumes_from", "profiles"})
_LIST_KEYS = frozenset(
    {"ports", "expose", "dns", "dns_search", "cap_add", "cap_drop", "devices", "security_opt"}
    | {"tmpfs", "env_file", "volumes", "external_links", "device_cgroup_rules", "configs"}
    | {"secrets", "profiles"}
)
_MAPPING_KEYS = frozenset({"environment", "labels", "ulimits", "healthcheck", "logging", "build"})


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
    raw = load_yaml(text, "The compose file")
    document = Interpolator(interpolation).copy(raw)
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
                    f"The service name {quoted(name)} is not valid: use letters, digits, '.', '_' "
                    "and '-', starting with a letter or digit."
                )
            if not isinstance(service, dict):
                raise ComposeRejected(f"Service {quoted(name)} should be a mapping of options.")
            _normalise_service(name, service)
        volumes = self._top_level("volumes", "Volume")
        networks = self._top_level("networks", "Network")
        for kind in ("configs", "secrets"):
            self._check_files(kind)
        for name, volume in volumes.items():
            check_volume(name, volume)
        for name, network in networks.items():
            check_network(name, network)
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
            checker = ServiceChecker(name, service, set(active), volumes, networks)
            checker.check()
            keeps_data = keeps_data or checker.named_volumes
            build = self._build(name, service)
            if build is not None:
                builds.append(build)
            elif not isinstance(service.get("image"), str) or not service["image"].strip():
                raise ComposeRejected(
                    f"Service {quoted(name)} has neither an image: nor a build: section, so there "
                    "is nothing to run."
                )
            files = self._env_files(name, service)
            if files is not None:
                env_files[name] = files
        web = pick_web_service(active, resolved)
        return ComposeApp(
            document=document,
            services=active,
            web_service=web,
            app_port=declared_app_port(web, resolved[web]),
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
            if not OBJECT_NAME.match(name):
                raise ComposeRejected(
                    f"{what} name {quoted(name)} is not valid: use letters, digits, '.', '_' and "
                    "'-', starting with a letter or digit."
                )
            if value is None:
                section[name] = {}
            elif not isinstance(value, dict):
                raise ComposeRejected(f"{what} {quoted(name)} should be a mapping of options.")
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
            if flag(options.get("external")):
                raise ComposeRejected(
                    f"{what} {quoted(name)} is external (it lives outside this app), which this "
                    "panel does not allow."
                )
            if "file" in options:
                raise ComposeRejected(
                    f"{what} {quoted(name)} is read from a file ({key}: file:), which this panel "
                    "does not support: set the value as an environment variable of the project "
                    "instead."
                )
            raise ComposeRejected(
                f"{what} {quoted(name)}: top-level {key}: are not supported by this panel; use "
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
                f"Service {quoted(top)}: extends: should name a service (extends: {{service: x}})."
            )
        base_name: str = extends["service"]
        file = extends.get("file")
        if len(chain) >= MAX_EXTENDS or (folder, name) in chain:
            raise ComposeRejected(
                f"Service {quoted(top)} extends services in a loop (or more than {MAX_EXTENDS} deep)."
            )
        chain = [*chain, (folder, name)]
        if file is None:
            if base_name not in services:
                raise ComposeRejected(
                    f"Service {quoted(top)} extends service {quoted(base_name)}, which is not in the file."
                )
            base = self._resolve_extends(base_name, services, folder, chain)
        else:
            if not isinstance(file, str):
                raise ComposeRejected(f"Service {quoted(top)}: extends.file should be a path.")
            if is_absolute(file) or (
                self.app_dir is None and relative_inside(posixpath.join(folder, file)) is None
            ):
                raise ComposeRejected(
                    f"Service {quoted(top)} extends a service in {quoted(file)}, which is outside the "
                    "app folder."
                )
            if self.app_dir is None:
                raise ComposeRejected(
                    f"Service {quoted(top)} extends a service in {quoted(file)}, which cannot be read here."
                )
            # Read as the kernel resolves the path, links and all, never leaving the app folder.
            # `folder` is a resolved path (no links), so joining `file` to it as text is exact.
            what = f"Service {quoted(top)}: the extends file"
            joined = file if folder == "." else posixpath.join(folder, file)
            text = _read_confined(self.app_dir, joined, what)
            assert text is not None
            relative = _resolved_file(self.app_dir, joined, what)
            other = Interpolator(self.variables).copy(load_yaml(text, quoted(file)))
            other_services = other.get("services")
            if not isinstance(other_services, dict) or not isinstance(
                other_services.get(base_name), dict
            ):
                raise ComposeRejected(
                    f"Service {quoted(top)} extends service {quoted(base_name)} of {quoted(file)}, which "
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
            raise ComposeRejected(
                f"Service {quoted(name)}: build: should be a folder or a mapping."
            )
        network = build.get("network")
        if isinstance(network, str) and network.lower() == "host":
            raise ComposeRejected(
                f"Service {quoted(name)} builds with the host's network (build.network: host), "
                "which this panel does not allow."
            )
        if "dockerfile_inline" in build:
            raise ComposeRejected(
                f"Service {quoted(name)} uses build.dockerfile_inline, which this panel does not "
                "support: put a Dockerfile in the app folder."
            )
        context = build.get("context", ".")
        if not isinstance(context, str) or not context.strip():
            raise ComposeRejected(f"Service {quoted(name)}: build.context should be a folder.")
        if "://" in context or context.startswith(("git@", "github.com/")):
            raise ComposeRejected(
                f"Service {quoted(name)} builds from {quoted(context)}, a remote context: this panel "
                "builds only from the uploaded app folder."
            )
        dockerfile = build.get("dockerfile", "Dockerfile")
        if not isinstance(dockerfile, str) or not dockerfile.strip():
            raise ComposeRejected(
                f"Service {quoted(name)}: build.dockerfile should be a file name."
            )
        if is_absolute(context):
            raise ComposeRejected(
                f"Service {quoted(name)} builds from {quoted(context)}, which is outside the app folder."
            )
        if is_absolute(dockerfile):
            raise ComposeRejected(
                f"Service {quoted(name)} builds with the Dockerfile {quoted(dockerfile)}, an absolute "
                "path: name it relative to the build context, inside it."
            )
        if self.app_dir is None:  # the text alone (the folder is checked when it is there)
            relative = relative_inside(context)
            if relative is None:
                raise ComposeRejected(
                    f"Service {quoted(name)} builds from {quoted(context)}, which is outside the app "
                    "folder."
                )
            inner = relative_inside(dockerfile)
            if inner is None:
                raise ComposeRejected(
                    f"Service {quoted(name)} builds with the Dockerfile {quoted(dockerfile)}, which is "
                    "outside its build context folder: the Dockerfile must be inside it."
                )
        else:
            # As the kernel resolves them, links and all: the context inside the app folder,
            # the Dockerfile inside the context.
            folder = _resolved_dir(
                self.app_dir, context, f"Service {quoted(name)}: the build context"
            )
            relative = folder.relative_to(self.app_dir.resolve()).as_posix() or "."
            inner = _resolved_file(
                folder,
                dockerfile,
                f"Service {quoted(name)}: the Dockerfile",
                inside="its build context folder",
            )
        target = build.get("target")
        if target is not None and not isinstance(target, str):
            raise ComposeRejected(f"Service {quoted(name)}: build.target should be a stage name.")
        args = string_mapping(build.get("args"), name, "build.args")
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
            raise ComposeRejected(f"Service {quoted(name)}: env_file: should be a file or a list.")
        paths: list[tuple[str, bool]] = []
        for entry in entries:
            path, required = entry, True
            if isinstance(entry, dict):
                path, required = entry.get("path"), entry.get("required", True) is not False
            if not isinstance(path, str) or not path:
                raise ComposeRejected(f"Service {quoted(name)}: env_file: entries should be paths.")
            normalised = relative_inside(path)
            if is_absolute(path) or (self.app_dir is None and normalised is None):
                raise ComposeRejected(
                    f"Service {quoted(name)} reads env_file {quoted(path)}, which is outside the app "
                    "folder."
                )
            # Without the folder, compose reads the file: the normalised text is what it gets.
            paths.append((path if self.app_dir is not None else (normalised or path), required))
        service["env_file"] = [path for path, _ in paths]
        if self.app_dir is None:
            return None
        values: dict[str, str] = {}
        for path, required in paths:
            what = f"Service {quoted(name)}: the env_file"
            text = _read_confined(self.app_dir, path, what, required=required)
            if text is not None:
                values.update(_parse_env_file(text, path))
        return values


def _normalise_service(name: str, service: dict[str, Any]) -> None:
    """Lists of `K=V` become mappings, so `extends` and the panel's variables merge over them."""
    for key in ("environment", "labels"):
        if key in service:
            service[key] = string_mapping(service[key], name, key)
    build = service.get("build")
    if isinstance(build, dict) and "args" in build:
        build["args"] = string_mapping(build["args"], name, "build.args")


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


def _read_confined(app_dir: Path, path: str, what: str, *, required: bool = True) -> str | None:
    """The text of `path`, read as the kernel resolves it without leaving the app folder; None
    when it is missing and not `required`."""
    try:
        data = read_beneath_if_present(app_dir, path, limit=MAX_COMPOSE_BYTES, what=what)
    except PathRefused as refused:
        raise ComposeRejected(refused.message) from None
    if data is None:
        if required:
            raise ComposeRejected(f"{what} {quoted(path)} is not in the app folder.")
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
        raise ComposeRejected(f"The env file {quoted(shown)} is larger than 256 KiB.")
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
