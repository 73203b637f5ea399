"""`ghst serve` as a bench runs it: isolated from any panel already running on the machine.

A bench's panel always has
- a Docker instance of its own (`bench-<random>`): a deployment worker sweeps the containers
  of its instance that its database does not know, so a bench on the default instance ("ghst")
  would remove a live panel's apps;
- the database of the bench's own PostgreSQL (given by the bench, never inherited: every
  GHST_* variable of the caller's environment is dropped);
- no deployment worker unless the bench deploys (`ghst serve --no-worker`).
"""

from __future__ import annotations

import asyncio
import secrets
import signal
import sys
from pathlib import Path

from core.settings import Settings

INSTANCE_PREFIX = "bench-"


def bench_instance() -> str:
    return f"{INSTANCE_PREFIX}{secrets.token_hex(4)}"


def panel_env(settings: Settings, base: dict[str, str], **extra: str) -> dict[str, str]:
    """The environment of a bench's `ghst serve`: `base` without any GHST_* variable, then the
    bench's database, Redis, data folder and instance, SSH on a free loopback port, then `extra`."""
    if not settings.instance.startswith(INSTANCE_PREFIX):
        raise ValueError(
            f"a bench's panel needs an instance of its own (bench_instance()), not"
            f" {settings.instance!r}: it could touch the containers of a live panel"
        )
    env = {key: value for key, value in base.items() if not key.startswith("GHST_")}
    env.update(
        GHST_DATABASE_URL=settings.database_url,
        GHST_REDIS_URL=settings.redis_url,
        GHST_DATA_DIR=str(settings.data_dir),
        GHST_INSTANCE=settings.instance,
        GHST_SSH_HOST="127.0.0.1",
        GHST_SSH_PORT="0",
        GHST_SHUTDOWN_GRACE="0",
    )
    env.update(extra)
    return env


def serve_command(*, worker: bool, processes: int = 1, profiled: bool = False) -> list[str]:
    """One serving process unless asked: the benches read the server's memory from its pid.
    `profiled`: under bench/profiled_serve.py (cProfile switched by signals)."""
    ghst = Path(sys.executable).parent / "ghst"
    program = (
        [sys.executable, str(Path(__file__).resolve().parent / "profiled_serve.py")]
        if profiled
        else [str(ghst)]
    )
    return [
        *(*program, "--log-level", "WARNING", "serve", "--processes", str(processes)),
        *(() if worker else ("--no-worker",)),
    ]


class GhstProcess:
    """`ghst serve` (the real entry point) as a subprocess; `port` once it listens."""

    def __init__(
        self,
        env: dict[str, str],
        *,
        worker: bool = False,
        processes: int = 1,
        profile: Path | None = None,
    ) -> None:
        if not env.get("GHST_INSTANCE", "").startswith(INSTANCE_PREFIX):
            raise ValueError("a bench's panel runs with panel_env(): an instance of its own")
        self.env = env
        if profile is not None:
            self.env = {**env, "BENCH_PROFILE": str(profile)}
        self.command = serve_command(worker=worker, processes=processes, profiled=bool(profile))
        self._profiles = profile
        self.process: asyncio.subprocess.Process | None = None
        self.port = 0

    async def start(self) -> None:
        self.process = await asyncio.create_subprocess_exec(
            *self.command,
            env=self.env,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
        )
        assert self.process.stderr is not None
        said: list[str] = []
        while not self.port:
            line = (await asyncio.wait_for(self.process.stderr.readline(), 60)).decode()
            if not line:
                raise RuntimeError("ghst serve exited before it listened:\n" + "".join(said))
            said.append(line)
            if "listening on" in line:
                self.port = int(line.rsplit(":", 1)[1])
        self._drain = asyncio.create_task(self._drain_stderr())

    async def _drain_stderr(self) -> None:
        assert self.process is not None and self.process.stderr is not None
        while line := await self.process.stderr.readline():
            sys.stderr.write("[ghst] " + line.decode())

    async def profile(self, name: str | None) -> None:
        """Start profiling (a name: the file the profile is written to, in the `profile=`
        folder, once stopped) or stop and write it (None); return once the server did."""
        assert self.process is not None and self._profiles is not None
        if name is not None:
            (self._profiles / "next").write_text(name)
        self.process.send_signal(signal.SIGUSR2 if name is None else signal.SIGUSR1)
        async with asyncio.timeout(60):
            while (self._profiles / "on").exists() != (name is not None):  # noqa: ASYNC110
                await asyncio.sleep(0.05)

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    async def stop(self) -> None:
        if self.process is not None and self.process.returncode is None:
            self.process.terminate()
            try:
                await asyncio.wait_for(self.process.wait(), 60)
            except TimeoutError:
                # Hundreds of sessions closing on a busy machine: the figures are taken, and
                # the bench's own PostgreSQL and Redis must still be stopped after this.
                sys.stderr.write("ghst serve did not stop within 60 s: killed\n")
                self.process.kill()
                await self.process.wait()
            await self._drain
