"""What a bench needs on the machine, checked before it starts anything.

`./scripts/dev start` installs what the panel runs with; a bench may need more (OpenSSH's sshd
for a baseline, the SSH clients, busybox-static for a base image). Each bench names its needs
and `require()` stops it with one message saying what is missing and how to install it, instead
of a FileNotFoundError half-way through.
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

# `./scripts/dev test` installs every Debian package below; it is the one command to run.
HOW_TO_INSTALL = (
    "Install them as root with `apt-get install -y {packages}`, or run `./scripts/dev test` once"
    " (it installs everything the tests and benches use)."
)


@dataclass(frozen=True)
class Need:
    program: str  # an absolute path, a glob of paths, or a name looked up on PATH and in sbin
    package: str  # the Debian package that provides it
    purpose: str

    def found(self) -> bool:
        if "*" in self.program:
            return any(os.access(path, os.X_OK) for path in glob.glob(self.program))
        if self.program.startswith("/"):
            return os.access(self.program, os.X_OK)
        if shutil.which(self.program):
            return True
        return any(
            os.access(Path(folder, self.program), os.X_OK) for folder in ("/usr/sbin", "/sbin")
        )


SSH = Need("/usr/bin/ssh", "openssh-client", "the SSH client that is timed")
SSH_KEYGEN = Need("ssh-keygen", "openssh-client", "host keys for the OpenSSH baseline")
SFTP = Need("/usr/bin/sftp", "openssh-client", "the sftp client that is timed")
SCP = Need("/usr/bin/scp", "openssh-client", "the scp client that is timed")
SSHD = Need("/usr/sbin/sshd", "openssh-server", "OpenSSH's server, the baseline")
POSTGRES = Need("/usr/lib/postgresql/*/bin/pg_ctl", "postgresql", "the bench's own database")
REDIS = Need("redis-server", "redis-server", "the bench's own Redis")
NGINX = Need("nginx", "nginx", "the panel's nginx")
DOCKER = Need("docker", "docker.io", "builds and runs the apps (dockerd must be running)")
RCLONE = Need("rclone", "rclone", "the peer SFTP server that writes into S3")
BUSYBOX = Need("/bin/busybox", "busybox-static", "the base image of the apps")


def missing(needs: tuple[Need, ...]) -> list[Need]:
    return [need for need in needs if not need.found()]


def explain(bench: str, absent: list[Need]) -> str:
    lines = [f"{bench} needs programs that are not installed:"]
    lines += [
        f"  {need.program}: {need.purpose} (Debian package {need.package})" for need in absent
    ]
    packages = " ".join(dict.fromkeys(need.package for need in absent))
    lines.append(HOW_TO_INSTALL.format(packages=packages))
    return "\n".join(lines)


def dockerd_answers() -> bool:
    try:
        check = subprocess.run(["docker", "info"], capture_output=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return check.returncode == 0


def require(bench: str, needs: tuple[Need, ...]) -> None:
    """Exit with status 2 and a message naming what is missing, if anything is."""
    absent = missing(needs)
    if absent:
        print(explain(bench, absent), file=sys.stderr)
        sys.exit(2)
    if DOCKER in needs and not dockerd_answers():
        print(
            f"{bench} needs dockerd, which does not answer (`docker info` fails):"
            " `./scripts/dev start` or `./scripts/dev test` starts it.",
            file=sys.stderr,
        )
        sys.exit(2)
