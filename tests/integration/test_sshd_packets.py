"""What the server writes to a client's socket: each SSH packet in one write.

asyncssh sends an empty IGNORE packet before every encrypted packet; written apart, each frame
of a dashboard cost two socket writes (sshd/packets.py)."""

from __future__ import annotations

from typing import Any

from core.panel import Panel
from sshd.packets import BatchedServerConnection
from tests.e2e.helpers import PASSWORD, create_user, running_server
from tests.e2e.terminal import AsyncsshTerminal

MSG_IGNORE = 2


async def test_each_frame_reaches_the_socket_in_one_write(panel: Panel) -> None:
    await create_user(panel, "alice")
    async with running_server(panel) as server:
        terminal = await AsyncsshTerminal.connect(
            server.port, "alice", password=PASSWORD, preferred_auth="password"
        )
        try:
            await terminal.wait_for("Signed in as alice")
            (conn,) = server.connections
            assert isinstance(conn, BatchedServerConnection)
            writes: list[bytes] = []
            packets: list[int] = []
            transport: Any = conn._transport
            write, send_packet = transport.write, conn.send_packet

            def written(data: bytes) -> None:
                writes.append(data)
                write(data)

            def sent(pkttype: int, *args: bytes, handler: Any = None) -> None:
                if pkttype != MSG_IGNORE:
                    packets.append(pkttype)
                send_packet(pkttype, *args, handler=handler)

            transport.write = written
            conn.send_packet = sent  # type: ignore[method-assign]
            terminal.send("j")  # the projects list: a frame or more
            await terminal.wait_for("Each project is a site")
            assert packets
            assert len(writes) == len(packets)
            # Encrypted and authenticated as before: the client read every frame.
            terminal.send("\x1b")
            await terminal.wait_for("Signed in as alice")
        finally:
            await terminal.close()
