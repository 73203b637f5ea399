"""The `ghst` command: `ghst serve` runs the panel's SSH server (with a deployment worker and the
panel's own nginx), `ghst worker` a deployment worker alone, `ghst migrate` the migrations,
`ghst user list|block|unblock` lets an operator manage accounts, `ghst strays` lists the
containers under the panel's instance label that it leaves alone.

Errors the user can act on (`PanelError`) print their message on stderr and exit with the
error's `exit_code`; anything else is a bug and shows a traceback.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import logging
import os
import signal
import sys
from collections.abc import Iterator, Sequence

from core.actor import Actor
from core.db.migrations import migrate
from core.db.pool import create_pool
from core.errors import PanelError
from core.panel import Panel, nginx_router
from core.routing.nginx import NginxProcess
from core.settings import Settings

log = logging.getLogger("ghst")
# Whoever runs `ghst` on the host operates the panel: the admin commands act as the system.
OPERATOR = Actor.system("cli")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ghst",
        description="ghst: a hosting panel you use over SSH. Settings come from GHST_* "
        "environment variables and the TOML file named by GHST_CONFIG.",
    )
    parser.add_argument(
        "--log-level",
        default="INFO",
        choices=["DEBUG", "INFO", "WARNING", "ERROR"],
        help="how much to log on stderr (default INFO)",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    serve = commands.add_parser(
        "serve", help="run the SSH server until SIGTERM/SIGINT (migrates the database first)"
    )
    serve.add_argument("--host", help="listen address (default: GHST_SSH_HOST)")
    serve.add_argument("--port", type=int, help="listen port, 0 for any (default: GHST_SSH_PORT)")
    serve.add_argument(
        "--no-worker",
        action="store_true",
        help="do not run deployments in this process (run `ghst worker` elsewhere)",
    )
    commands.add_parser("worker", help="run deployments only (no SSH server) until SIGTERM/SIGINT")
    commands.add_parser(
        "nginx",
        help="run the panel's nginx in the foreground (when `ghst serve` does not start it)",
    )
    commands.add_parser("migrate", help="apply pending database migrations and list them")
    commands.add_parser(
        "strays",
        help="containers under this instance's label that the panel leaves alone (other panels',"
        " or of deployments its database does not know)",
    )
    users = commands.add_parser("user", help="operators: list, block or unblock accounts")
    actions = users.add_subparsers(dest="action", required=True, metavar="ACTION")
    actions.add_parser("list", help="every account, with its state")
    block = actions.add_parser("block", help="refuse the user's logins and end their sessions")
    block.add_argument("username")
    unblock = actions.add_parser("unblock", help="let a blocked user log in again")
    unblock.add_argument("username")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    configure_logging(args.log_level)
    try:
        if args.command == "serve":
            return asyncio.run(serve(args.host, args.port, worker=not args.no_worker))
        if args.command == "worker":
            return asyncio.run(run_worker())
        if args.command == "nginx":
            return asyncio.run(run_nginx())
        if args.command == "migrate":
            return asyncio.run(run_migrations())
        if args.command == "strays":
            return asyncio.run(list_strays())
        if args.command == "user":
            return asyncio.run(manage_users(args.action, getattr(args, "username", None)))
    except PanelError as error:
        print(f"ghst: {error.message}", file=sys.stderr)
        return error.exit_code
    except KeyboardInterrupt:
        return 130
    raise AssertionError(f"unknown command {args.command!r}")


def configure_logging(level: str) -> None:
    logging.basicConfig(
        stream=sys.stderr,
        level=getattr(logging, level),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    # asyncssh logs every packet exchange at INFO; its warnings are what an operator needs.
    if level != "DEBUG":
        logging.getLogger("asyncssh").setLevel(logging.WARNING)


async def serve(host: str | None = None, port: int | None = None, *, worker: bool = True) -> int:
    # Before Textual is imported: it reads its colour system once (see sshd.driver).
    os.environ.setdefault("TEXTUAL_COLOR_SYSTEM", "truecolor")
    # Imported here: `ghst migrate` needs neither asyncssh nor textual.
    from sshd.server import GhstServer

    settings = Settings.load()
    stop = asyncio.Event()
    # Started in order; on the way out (a stop signal, or a step that failed) each is undone in
    # reverse: stop the worker, close the SSH server, wait for the worker, stop nginx, close
    # the panel.
    with stop_signals(stop):
        async with contextlib.AsyncExitStack() as running:
            panel = await Panel.open(settings)
            running.push_async_callback(panel.close)
            if settings.nginx_managed:
                nginx = NginxProcess(panel.router)
                await nginx.start()
                running.push_async_callback(nginx.stop)
                where = f"{settings.nginx_listen}:{settings.nginx_port}"
                print(f"ghst: nginx serves <project>.{settings.domain} on {where}", file=sys.stderr)
            else:
                # nginx is someone else's (e.g. `ghst nginx`); routing problems show at deploys.
                try:
                    await panel.router.prepare()
                except PanelError as error:
                    log.warning("nginx's prefix is not ready: %s", error)
            server = GhstServer.for_panel(panel.services, host=host, port=port)
            await server.start()
            if worker:
                worker_task = asyncio.create_task(panel.worker().run(stop))
                running.push_async_callback(finished, worker_task)
            running.push_async_callback(server.close)
            running.callback(stop.set)
            # Everything loaded so far (modules, Textual's classes, the pool) lives as long
            # as the process: keep it out of the collector's way so sessions don't pay for it.
            gc.freeze()
            print(f"ghst: listening on {server.host}:{server.port}", file=sys.stderr)
            await stop.wait()
            log.info("stop signal received: shutting down")
    return 0


async def finished(task: asyncio.Task[None]) -> None:
    """Wait for `task` to end (its error, if any, is raised here)."""
    await task


async def run_worker() -> int:
    settings = Settings.load()
    stop = asyncio.Event()
    with stop_signals(stop):
        panel = await Panel.open(settings)
        try:
            await panel.engine.ping()
            worker = panel.worker()
            print(f"ghst: deployment worker {worker.name} running", file=sys.stderr)
            await worker.run(stop)
        finally:
            await panel.close()
    return 0


async def run_nginx() -> int:
    """nginx for the panel's prefix, until SIGTERM; exits non-zero if nginx dies on its own."""
    settings = Settings.load()
    router = nginx_router(settings)
    process = NginxProcess(router)
    stop = asyncio.Event()
    with stop_signals(stop):
        await process.start()
        print(
            f"ghst: nginx serves <project>.{settings.domain} on port {router.port}", file=sys.stderr
        )
        try:
            while not stop.is_set():
                if not process.running:
                    print("ghst: nginx stopped on its own", file=sys.stderr)
                    return 1
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), 1.0)
        finally:
            await process.stop()
    return 0


@contextlib.contextmanager
def stop_signals(stop: asyncio.Event) -> Iterator[None]:
    """SIGTERM and SIGINT set `stop`, for a graceful shutdown."""
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    try:
        yield
    finally:
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(signum)


async def run_migrations() -> int:
    settings = Settings.load()
    pool = await create_pool(settings.database_url, max_size=1)
    try:
        async with pool.acquire() as conn:
            applied = await migrate(conn)
    finally:
        await pool.close()
    if applied:
        for migration in applied:
            print(f"applied {migration.version:04d}_{migration.name}")
    else:
        print("the database is up to date")
    return 0


async def list_strays() -> int:
    panel = await Panel.open(Settings.load())
    try:
        strays = await panel.deployer.strays()
    finally:
        await panel.close()
    print(f"this panel: installation {panel.installation.id}, names {panel.deployer.namespace}-*")
    if not strays:
        print("no stray containers")
        return 0
    print(f"{'CONTAINER':<40} {'PROJECT':<24} {'DEPL.':<6} {'STATE':<8} WHY")
    for stray in strays:
        state = "running" if stray.running else "stopped"
        print(f"{stray.name:<40} {stray.project:<24} {stray.deployment:<6} {state:<8} {stray.why}")
    return 0


async def manage_users(action: str, username: str | None) -> int:
    panel = await Panel.open(Settings.load())
    try:
        accounts = panel.accounts
        if action == "list":
            print(f"{'USERNAME':<32} {'EMAIL':<40} {'CREATED':<10} STATE")
            for user in await accounts.list(OPERATOR):
                state = "blocked" if user.is_blocked else "active"
                if user.is_admin:
                    state += ", admin"
                created = user.created_at.date().isoformat()
                print(f"{user.username:<32} {user.email:<40} {created:<10} {state}")
        elif action == "block":
            assert username is not None
            user = await accounts.block(OPERATOR, username)
            print(f"blocked {user.username}: logins refused, open sessions end within seconds")
        elif action == "unblock":
            assert username is not None
            user = await accounts.unblock(OPERATOR, username)
            print(f"unblocked {user.username}")
    finally:
        await panel.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
