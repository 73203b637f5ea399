"""What the panel refuses in a compose file, each with a message that names the service and the
option: everything that reaches outside the container (privileged mode, host namespaces, extra
capabilities, devices, host paths, the Docker socket, security profiles off, external volumes and
networks, driver options, addresses), and anything else the panel cannot honour.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from core.runtime.compose.errors import ComposeRejected
from core.runtime.compose.values import (
    OBJECT_NAME,
    flag,
    list_option,
    looks_like_path,
    quoted,
    size_bytes,
    split_volume,
)
from core.runtime.firewall import BRIDGE_NAME_OPTION, BRIDGE_PREFIX

# tmpfs mount options a service may give (others, such as dev or suid, are refused).
_TMPFS_OPTIONS = frozenset({"size", "mode", "uid", "gid"})
_TMPFS_FLAGS = frozenset({"noexec", "exec", "nosuid", "nodev", "ro", "rw"})
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


class ServiceChecker:
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
            f"Service {quoted(self.name)} {what}, which this panel does not allow{hint}."
        )

    def check(self) -> None:
        service = self.service
        if flag(service.get("privileged")):
            raise self.refuse("asks for privileged mode")
        self._namespaces()
        if service.get("cgroup_parent"):
            raise self.refuse(
                f"asks for the cgroup parent {quoted(str(service['cgroup_parent']))} (cgroup_parent)"
            )
        if service.get("devices"):
            raise self.refuse("asks for host devices (devices)")
        if service.get("device_cgroup_rules"):
            raise self.refuse("asks for device access rules (device_cgroup_rules)")
        added = [str(cap).upper().removeprefix("CAP_") for cap in list_option(service, "cap_add")]
        extra = [cap for cap in added if cap not in _DEFAULT_CAPS]
        if extra:
            raise self.refuse(f"asks for extra capabilities (cap_add: {', '.join(extra)})")
        for option in list_option(service, "security_opt"):
            self._security_opt(str(option))
        if service.get("sysctls"):
            raise self.refuse("sets kernel parameters (sysctls)")
        for entry in list_option(service, "tmpfs"):
            tmpfs_entry(self.name, entry)
        for entry in list_option(service, "volumes"):
            self._volume(entry)
        for entry in list_option(service, "volumes_from"):
            self._volumes_from(str(entry))
        if service.get("external_links"):
            raise self.refuse(
                "links to containers outside this app (external_links)",
            )
        for entry in list_option(service, "links"):
            target = str(entry).split(":", 1)[0]
            if target not in self.services:
                raise ComposeRejected(
                    f"Service {quoted(self.name)} links to {quoted(target)}, which is not a service of "
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
                        f"Service {quoted(self.name)} uses the network of {quoted(target)} "
                        "(network_mode), which is not a service of this file."
                    )
            elif mode not in {"none", "bridge", "default"}:
                raise self.refuse(f"asks for the network mode {quoted(mode)}")
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
                    f"Service {quoted(self.name)} shares the {what} of "
                    f"{quoted(value.removeprefix('service:'))} ({key}), which is not a service of "
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
        raise self.refuse(f"asks for the security option {quoted(option)} (security_opt)")

    def _volume(self, entry: Any) -> None:
        if isinstance(entry, str):
            source, target = split_volume(entry)
            kind = "volume" if source is None or not looks_like_path(source) else "bind"
        elif isinstance(entry, dict):
            kind = str(entry.get("type", ""))
            source = entry.get("source")
            source = None if source is None else str(source)
            target = str(entry.get("target", ""))
            if not target:
                raise ComposeRejected(
                    f"Service {quoted(self.name)} mounts a volume without a target: path."
                )
        else:
            raise ComposeRejected(
                f"Service {quoted(self.name)}: volumes: entries should be strings."
            )
        if source is not None and "docker.sock" in source:
            raise self.refuse(
                "mounts the Docker socket (/var/run/docker.sock), which would give it control "
                "of the whole server,"
            )
        if kind in {"bind", "npipe"}:
            raise self.refuse(
                f"mounts the host path {quoted(source or '')} (volumes)",
                ": keep data in a named volume, or COPY files in the Dockerfile",
            )
        if kind == "tmpfs":
            options = entry.get("tmpfs") if isinstance(entry, dict) else None
            if options is not None and not isinstance(options, dict):
                raise ComposeRejected(
                    f"Service {quoted(self.name)}: volumes: tmpfs: should be a mapping."
                )
            if options and "size" in options and size_bytes(options["size"]) is None:
                raise ComposeRejected(
                    f"Service {quoted(self.name)}: the tmpfs size {quoted(str(options['size']))} of "
                    f"{quoted(target)} cannot be read; write it as 16m or 1g."
                )
            return
        if kind != "volume":
            raise self.refuse(f"mounts a volume of type {quoted(kind)}")
        if source is None or source == "":
            return  # an anonymous volume
        if not OBJECT_NAME.match(source):
            raise ComposeRejected(
                f"Service {quoted(self.name)} mounts {quoted(source)}, which is not a valid volume name."
            )
        if source not in self.volumes:
            raise ComposeRejected(
                f"Service {quoted(self.name)} mounts the volume {quoted(source)}, which is not declared "
                "under the top-level volumes: section."
            )
        self.named_volumes = True

    def _volumes_from(self, entry: str) -> None:
        if entry.startswith("container:"):
            raise self.refuse(
                f"takes volumes from the container {quoted(entry.removeprefix('container:'))} "
                "(volumes_from), which is not part of this app;"
            )
        target = entry.removeprefix("service:").split(":", 1)[0]
        if target not in self.services:
            raise ComposeRejected(
                f"Service {quoted(self.name)} takes volumes from {quoted(target)} (volumes_from), which "
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
            raise ComposeRejected(f"Service {quoted(self.name)}: networks: should be a list.")
        for network in names:
            if network != "default" and network not in self.networks:
                raise ComposeRejected(
                    f"Service {quoted(self.name)} joins the network {quoted(network)}, which is not "
                    "declared under the top-level networks: section."
                )

    def _depends_on(self) -> None:
        depends = self.service.get("depends_on")
        if depends is None:
            return
        if not isinstance(depends, (list, dict)):
            raise ComposeRejected(f"Service {quoted(self.name)}: depends_on: should be a list.")
        for target in depends:
            if str(target) not in self.services:
                raise ComposeRejected(
                    f"Service {quoted(self.name)} depends on {quoted(str(target))}, which is not a "
                    "service of this file."
                )


def check_volume(name: str, volume: Mapping[str, Any]) -> None:
    if flag(volume.get("external")):
        raise ComposeRejected(
            f"Volume {quoted(name)} is external (a volume outside this app), which this panel does "
            "not allow."
        )
    if volume.get("driver_opts"):
        raise ComposeRejected(
            f"Volume {quoted(name)} sets driver_opts (which can mount host folders), which this "
            "panel does not allow."
        )
    driver = volume.get("driver")
    if driver not in (None, "local"):
        raise ComposeRejected(
            f"Volume {quoted(name)} uses the driver {quoted(str(driver))}; only the local driver is "
            "available."
        )


def check_network(name: str, network: Mapping[str, Any]) -> None:
    if flag(network.get("external")):
        raise ComposeRejected(
            f"Network {quoted(name)} is external (a network outside this app), which this panel "
            "does not allow."
        )
    driver = network.get("driver")
    if driver not in (None, "bridge", "overlay", "default"):
        raise ComposeRejected(
            f"Network {quoted(name)} uses the driver {quoted(str(driver))}; only the default bridge "
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
            f"Network {quoted(name)} sets driver_opts, which this panel does not allow."
        )
    if network.get("ipam"):
        raise ComposeRejected(
            f"Network {quoted(name)} sets its addresses (ipam), which this panel does not allow: "
            "the panel picks them."
        )


def tmpfs_entry(service: str, entry: Any) -> tuple[str, int | None, list[str]]:
    """(target, size or None, other options) of a `tmpfs:` entry such as "/run:size=16m,mode=1777"."""
    if not isinstance(entry, str) or not entry.startswith("/"):
        raise ComposeRejected(
            f"Service {quoted(service)}: tmpfs: entries should be absolute paths, such as "
            "/run:size=16m."
        )
    target, _, text = entry.partition(":")
    size: int | None = None
    options: list[str] = []
    for option in filter(None, (part.strip() for part in text.split(","))):
        name, sep, value = option.partition("=")
        if (sep and name not in _TMPFS_OPTIONS) or (not sep and name not in _TMPFS_FLAGS):
            raise ComposeRejected(
                f"Service {quoted(service)}: the tmpfs option {quoted(option)} of {quoted(target)} is not "
                "allowed here (size, mode, uid, gid, noexec, nosuid, nodev, ro are)."
            )
        if name == "size":
            size = size_bytes(value)
            if size is None:
                raise ComposeRejected(
                    f"Service {quoted(service)}: the tmpfs size {quoted(value)} of {quoted(target)} cannot be "
                    "read; write it as 16m or 1g."
                )
        else:
            options.append(option)
    return target, size, options
