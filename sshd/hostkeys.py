"""The server's persistent host key: generated on first start, then the same on every start.

Clients pin the host key on first contact (`known_hosts`), so it must survive restarts and
upgrades: it lives in the data directory, readable by the owner only (mode 0600).
"""

from __future__ import annotations

import logging
from pathlib import Path

import asyncssh

from core import secrets

log = logging.getLogger(__name__)

HOST_KEY_NAME = "ssh_host_ed25519_key"


def _generate_ed25519() -> bytes:
    key = asyncssh.generate_private_key("ssh-ed25519", comment="ghst host key")
    return bytes(key.export_private_key("openssh"))


def host_key_path(data_dir: Path) -> Path:
    return data_dir / HOST_KEY_NAME


def load_or_create_host_key(data_dir: Path) -> asyncssh.SSHKey:
    """The ed25519 host key in `data_dir`, created (mode 0600) on first use."""
    path = host_key_path(data_dir)
    existed = path.exists()
    data = secrets.load_or_create(path, _generate_ed25519)
    key = asyncssh.import_private_key(data)
    fingerprint = key.get_fingerprint("sha256")
    if existed:
        log.info("host key %s (%s)", path, fingerprint)
    else:
        log.info("generated host key %s (%s)", path, fingerprint)
    return key
