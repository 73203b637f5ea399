"""The panel's own compose file for one deployment: `render_compose`.

Written from an allow-list of keys: built images instead of `build`, no host ports but the web
service's `127.0.0.1:<host_port>:<app_port>`, the plan's limits, `init`, a restart policy,
`no-new-privileges`, bounded logs, ghst labels over the user's, the stack's own networks, and
named volumes that outlive a deployment (`<instance>-<project>_<volume>`); every `$` in it is
escaped, so compose interpolates nothing.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import yaml

from core.runtime.compose.app import ComposeApp
from core.runtime.compose.errors import ComposeRejected
from core.runtime.compose.limits import DEFAULT_TMPFS, MAX_NOFILE, MiB
from core.runtime.compose.policy import tmpfs_entry
from core.runtime.compose.values import flag, list_option, size_bytes, string_mapping
from core.runtime.firewall import network_options

_OUR_LABEL_PREFIXES = ("ghst.", "com.docker.compose.")


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
    service over the file's own environment. Keep the result while the stack exists (stop,
    start and down run compose on it): the deployer saves it in its `StackState`.

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
        if flag(network.get("internal")):
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
            out[key] = flag(service[key])
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
    volumes = [_render_volume(entry) for entry in list_option(service, "volumes")]
    if volumes:
        out["volumes"] = volumes
    default_tmpfs = min(DEFAULT_TMPFS, memory_bytes // 4)
    tmpfs: list[str] = []
    for entry in list_option(service, "tmpfs"):
        target, size, options = tmpfs_entry(name, entry)
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
    shm = size_bytes(service.get("shm_size"))
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
        rendered["read_only"] = flag(entry["read_only"])
    volume = entry.get("volume")
    if isinstance(volume, dict) and volume.get("nocopy") is not None:
        rendered["volume"] = {"nocopy": flag(volume["nocopy"])}
    tmpfs = entry.get("tmpfs")
    if isinstance(tmpfs, dict):
        options = {"size": size_bytes(tmpfs.get("size")), "mode": tmpfs.get("mode")}
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
        rendered["disable"] = flag(healthcheck["disable"])
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
        labels = string_mapping(labels, "", "labels")
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
