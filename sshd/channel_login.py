"""What a channel asks of its SSH connection before it serves anything: is the login still on?"""

from __future__ import annotations

import asyncio
from typing import Protocol

import asyncssh

from core.identity.sessions import Session


class ChannelLogin(Protocol):
    async def channel_login(self) -> Session | None:
        """The connection's login session, checked now (None: a visitor). Raises a PanelError
        with the user's message when it ended or cannot be checked."""
        ...

    def track(self, task: asyncio.Task[None], channel: asyncssh.SSHServerChannel[bytes]) -> None:
        """The channel's work and the channel, which the connection lets end (and close)
        before it closes itself."""
        ...
