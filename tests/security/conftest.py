"""Attacks by a hostile tenant, each through the door a stranger would use (OpenSSH scp/sftp/ssh,
a deploy of an uploaded archive), each checking that the attack fails with a clear message and
leaves nothing behind. Fixtures come from the shared conftest and the e2e suite."""

from __future__ import annotations

from tests.e2e.conftest import ssh_server

__all__ = ["ssh_server"]
