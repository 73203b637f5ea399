"""The scp and sftp command lines a user pastes to upload a new version of a project.

Settings only know the address the SSH server listens on (`ssh_host`, `ssh_port`), not the name
users reach it by. The commands use `ssh_host` when it is an address or name a client can use,
and the panel's `domain` when it is a wildcard (0.0.0.0, ::) or a loopback address (127.0.0.1,
::1, localhost): a server bound there is reached through a name, and `domain` is the name the
panel serves projects under. The port is left out when it is 22, the clients' default.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from core.settings import Settings

SAMPLE_FILE = "app.zip"
DEFAULT_SSH_PORT = 22
WILDCARD_HOSTS = frozenset({"", "0.0.0.0", "::", "*"})


def _is_local(host: str) -> bool:
    if host in WILDCARD_HOSTS or host.lower() == "localhost":
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False  # a host name: use it as it is
    return address.is_loopback or address.is_unspecified


def public_ssh_address(settings: Settings) -> tuple[str, int]:
    """(host, port) a user's scp/sftp can reach the panel's SSH server at."""
    host = settings.ssh_host.strip()
    if _is_local(host):
        host = settings.domain
    return host, settings.ssh_port


@dataclass(frozen=True)
class UploadCommands:
    scp: str
    sftp: str
    sftp_put: str


def upload_commands(settings: Settings, username: str, project: str) -> UploadCommands:
    host, port = public_ssh_address(settings)
    if ":" in host:  # an IPv6 address: user@[2001:db8::1]:path
        host = f"[{host}]"
    port_option = "" if port == DEFAULT_SSH_PORT else f"-P {port} "
    target = f"{username}@{host}"
    return UploadCommands(
        scp=f"scp {port_option}{SAMPLE_FILE} {target}:{project}/",
        sftp=f"sftp {port_option}{target}",
        sftp_put=f"put {SAMPLE_FILE} {project}/",
    )
