"""`ghst serve --processes N`: N serving processes that share the SSH port.

One Python process builds every dashboard on one core. Here the parent prepares what is shared
(migrations, the host key, imports), then forks N children; each runs its own event loop, panel
and SSH listener on the same address with SO_REUSEPORT, so the kernel spreads new connections
over them. The first child ("primary") also runs the deployment worker and the panel's nginx,
and removes what a crashed run left of uploads; every child watches its own sessions for
revocation, so "log out everywhere" and blocking reach sessions in every process.

The parent only supervises: it says "listening" once every child listens, forwards SIGTERM and
SIGINT to the children, and exits once they all did. If a child dies on its own, the others are
stopped too and the parent exits non-zero: a service manager restarts the whole set.
"""

from __future__ import annotations

import contextlib
import gc
import logging
import os
import select
import signal
import socket
import sys
import time
from collections.abc import Callable
from types import FrameType

log = logging.getLogger("ghst")

# How long the children get to stop after the first SIGTERM before they are killed.
CHILD_STOP_TIMEOUT = 60.0
READY = b"r"

ChildMain = Callable[[int, int], int]


def reserve_port(host: str, port: int) -> socket.socket:
    """A bound (not listening) socket with SO_REUSEPORT: it fixes the port when `port` is 0, so
    every child binds the same one; the kernel only hands connections to listening sockets."""
    family, kind, proto, _, address = socket.getaddrinfo(
        host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    )[0]
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind(address)
    return sock


class Supervisor:
    """Fork the children, wait until they listen, relay stop signals, reap them."""

    def __init__(self, count: int, child_main: ChildMain) -> None:
        self.count = count
        self.child_main = child_main
        self.children: dict[int, int] = {}  # pid -> index
        self.stopping = False
        self.stop_requested_at = 0.0
        self.status = 0

    def run(self, announce: Callable[[], None]) -> int:
        ready_read, ready_write = os.pipe()
        previous = {
            signum: signal.signal(signum, self._on_signal)
            for signum in (signal.SIGTERM, signal.SIGINT)
        }
        try:
            # What the parent loaded is shared copy-on-write with every child: keep the
            # collector from touching (and so copying) it.
            gc.freeze()
            for index in range(self.count):
                if self.stopping:
                    break
                pid = os.fork()
                if pid == 0:
                    os.close(ready_read)
                    self._run_child(index, ready_write)  # never returns
                self.children[pid] = index
            os.close(ready_write)
            if self._wait_ready(ready_read):
                announce()
            self._reap()
        finally:
            os.close(ready_read)
            for signum, handler in previous.items():
                signal.signal(signum, handler)
        return self.status

    def _run_child(self, index: int, ready: int) -> None:
        status = 1
        try:
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            signal.signal(signal.SIGINT, signal.default_int_handler)
            status = self.child_main(index, ready)
        except KeyboardInterrupt:
            status = 130
        except BaseException:
            log.exception("serving process %d failed", index)
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(status)

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        if not self.stopping:
            self.stopping = True
            self.stop_requested_at = time.monotonic()
        # Ctrl+C in a terminal reaches the children too (one process group); a signal sent to
        # the parent alone must reach them as well. A second signal is harmless to them.
        self._signal_children(signum)

    def _signal_children(self, signum: int) -> None:
        for pid in list(self.children):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signum)

    def _wait_ready(self, ready: int) -> bool:
        """True once every child said it listens; False if one died first or a stop came."""
        said = 0
        while said < len(self.children) and not self.stopping:
            try:
                readable, _, _ = select.select([ready], [], [], 0.2)
            except InterruptedError:
                continue
            if readable:
                data = os.read(ready, 64)
                said += data.count(READY)
                if not data:
                    break
            if self._reap_exited():
                return False
        return said >= len(self.children) and not self.stopping

    def _reap_exited(self) -> bool:
        """Reap children that exited; True (and the rest are told to stop) if any did."""
        exited = False
        while self.children:
            try:
                pid, wait_status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                self.children.clear()
                return True
            if pid == 0:
                break
            exited = True
            self._record(pid, wait_status)
        if exited and not self.stopping:
            self.stopping = True
            self.stop_requested_at = time.monotonic()
            self._signal_children(signal.SIGTERM)
        return exited

    def _record(self, pid: int, wait_status: int) -> None:
        index = self.children.pop(pid, None)
        code = os.waitstatus_to_exitcode(wait_status)
        if code != 0:
            log.error("serving process %s (pid %d) exited with %d", index, pid, code)
            if self.status == 0:
                self.status = code if code > 0 else 128 - code
        elif not self.stopping:
            log.error("serving process %s (pid %d) stopped on its own", index, pid)
            self.status = 1

    def _reap(self) -> None:
        while self.children:
            if self.stopping and time.monotonic() - self.stop_requested_at > CHILD_STOP_TIMEOUT:
                log.error("serving processes did not stop in time: killing them")
                self._signal_children(signal.SIGKILL)
            self._reap_exited()
            if self.children:
                time.sleep(0.25)
