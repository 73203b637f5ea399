"""One socket write per SSH packet that asyncssh sends.

Before each encrypted packet, asyncssh sends an empty SSH_MSG_IGNORE packet of its own, and
each of the two is written to the socket apart: two `send` system calls (and two wake-ups of
the client) for every dashboard frame. `BatchedServerConnection` gathers what one
`send_packet` writes and writes it at once: the same bytes, in the same order, one call. With
hundreds of screens redrawing on one event, the writes were a sixth of the process's CPU.
"""

from __future__ import annotations

from asyncssh.connection import SSHServerConnection
from asyncssh.packet import SSHPacketLogger


class BatchedServerConnection(SSHServerConnection):
    """asyncssh's server connection, writing each packet (with its IGNORE) in one call."""

    _batch: list[bytes] | None = None

    def send_packet(
        self, pkttype: int, *args: bytes, handler: SSHPacketLogger | None = None
    ) -> None:
        if self._batch is not None:  # the IGNORE packet, sent from within the outer call
            super().send_packet(pkttype, *args, handler=handler)
            return
        self._batch = []
        try:
            super().send_packet(pkttype, *args, handler=handler)
        finally:
            data, self._batch = self._batch, None
            if data:
                super()._send(data[0] if len(data) == 1 else b"".join(data))

    def _send(self, data: bytes) -> None:
        if self._batch is not None:
            self._batch.append(data)
        else:
            super()._send(data)


def batch_writes(conn: SSHServerConnection) -> None:
    """Make `conn` (made by asyncssh's server) write each packet in one call."""
    if type(conn) is SSHServerConnection:
        conn.__class__ = BatchedServerConnection
