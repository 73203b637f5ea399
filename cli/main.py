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
import importlib
import logging
import os
import signal
import socket
import sys
from collections.abc import Callable, Iterator, Sequence

from cli.processes import READY, Supervisor, reserve_port
from commands.output import table
from core.actor import Actor
from core.admin.processes import Counts
from core.billing.webhooks import WebhookServer
from core.db.migrations import migrate
from core.db.pool import create_pool
from core.errors import PanelError, UnavailableError
from core.panel import Panel, nginx_router
from core.routing.nginx import NginxProcess
from core.settings import Settings

log = logging.getLogger("ghst")
# Whoever runs `ghst` on the host operates the panel: the admin commands act as the system.
OPERATOR = Actor.system("cli").acting_from("cli")


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
    serve.add_argument(
        "--processes",
        type=positive_int,
        default=None,
        help="serving processes sharing the SSH port (default: the number of CPUs); the first"
        " also runs the deployment worker and nginx",
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
    role = actions.add_parser(
        "role", help="grant a role: admin, operator (reads the admin app, changes nothing) or user"
    )
    role.add_argument("username")
    role.add_argument("role", choices=["admin", "operator", "user"])
    commands.add_parser("admin", help="the operators' app, in this terminal (acts as an admin)")
    add_billing_commands(commands)
    return parser


def add_billing_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    plan = commands.add_parser("plan", help="operators: list plans, add a plan version")
    plan_actions = plan.add_subparsers(dest="action", required=True, metavar="ACTION")
    listing = plan_actions.add_parser("list", help="the plans offered to new projects")
    listing.add_argument("--all", action="store_true", help="every version, retired ones too")
    add = plan_actions.add_parser(
        "add", help="a new version of a plan (projects on older versions keep theirs)"
    )
    add.add_argument("code", help="e.g. host-1 (lowercase letters, digits, dashes)")
    add.add_argument("--name", required=True)
    add.add_argument("--price-rub", required=True, help="monthly price, e.g. 1000 or 999.90")
    add.add_argument("--cpu", required=True, help="CPUs, e.g. 0.25 or 2")
    add.add_argument("--ram-mb", type=positive_int, required=True)
    add.add_argument("--disk-mb", type=positive_int, required=True)
    add.add_argument("--services", type=positive_int, required=True, help="most compose services")
    add.add_argument(
        "--pids",
        type=positive_int,
        help="processes of a project together (default: RAM MB / 8, at least 256)",
    )
    billing = commands.add_parser("billing", help="operators: record payments, run the charge")
    billing_actions = billing.add_subparsers(dest="action", required=True, metavar="ACTION")
    credit = billing_actions.add_parser(
        "credit", help="record a bank transfer or cash received from a user"
    )
    credit.add_argument("username")
    credit.add_argument("amount", help="in the installation's currency, e.g. 500 or 499.90")
    credit.add_argument("--reason", required=True)
    credit.add_argument(
        "--reference", help="the transfer's reference: recording it again credits nothing more"
    )
    balance = billing_actions.add_parser("balance", help="a user's balance and last entries")
    balance.add_argument("username")
    billing_actions.add_parser("charge", help="run the daily charge now (workers run it anyway)")
    promise = billing_actions.add_parser(
        "promise", help="give a user a promised payment (3 days of spend, twice in 28 days)"
    )
    promise.add_argument("username")
    billing_actions.add_parser(
        "suspend", help="suspend the accounts whose grace period is over now (workers do it too)"
    )


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    configure_logging(args.log_level)
    try:
        if args.command == "serve":
            processes = args.processes or os.cpu_count() or 1
            if processes == 1:
                return asyncio.run(serve(args.host, args.port, worker=not args.no_worker))
            return serve_processes(args.host, args.port, worker=not args.no_worker, count=processes)
        if args.command == "worker":
            return asyncio.run(run_worker())
        if args.command == "nginx":
            return asyncio.run(run_nginx())
        if args.command == "migrate":
            return asyncio.run(run_migrations())
        if args.command == "strays":
            return asyncio.run(list_strays())
        if args.command in ("plan", "billing"):
            from cli.billing import run_billing_command

            return asyncio.run(run_billing_command(args, OPERATOR))
        if args.command == "user":
            return asyncio.run(
                manage_users(
                    args.action, getattr(args, "username", None), getattr(args, "role", None)
                )
            )
        if args.command == "admin":
            from cli.admin import run_admin_app

            return run_admin_app()
    except PanelError as error:
        print(f"ghst: {error.message}", file=sys.stderr)
        return error.exit_code
    except KeyboardInterrupt:
        return 130
    raise AssertionError(f"unknown command {args.command!r}")


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be 1 or more")
    return value


def configure_logging(level: str) -> None:
    logging.basicConfig(
        stream=sys.stderr,
        level=getattr(logging, level),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    # asyncssh logs every packet exchange at INFO; its warnings are what an operator needs.
    if level != "DEBUG":
        logging.getLogger("asyncssh").setLevel(logging.WARNING)


async def serve(
    host: str | None = None,
    port: int | None = None,
    *,
    worker: bool = True,
    primary: bool = True,
    shared_port: bool = False,
    on_listening: Callable[[], None] | None = None,
) -> int:
    """One serving process. `primary`: this one also runs nginx (when the panel manages it)
    and cleans up after a crashed run; `shared_port`: other processes listen on the same port
    (SO_REUSEPORT) and the database was migrated before; `on_listening` replaces the
    "listening on" line (the supervisor says it once for all)."""
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
            panel = await Panel.open(settings, run_migrations=not shared_port)
            running.push_async_callback(panel.close)
            if primary and settings.nginx_managed:
                nginx = NginxProcess(panel.router)
                await nginx.start()
                running.push_async_callback(nginx.stop)
                where = f"{settings.nginx_listen}:{settings.nginx_port}"
                print(f"ghst: nginx serves <project>.{settings.domain} on {where}", file=sys.stderr)
            elif primary:
                # nginx is someone else's (e.g. `ghst nginx`); routing problems show at deploys.
                try:
                    await panel.router.prepare()
                except PanelError as error:
                    log.warning("nginx's prefix is not ready: %s", error)
            if primary and settings.payment_webhook_port:
                webhooks = WebhookServer(
                    panel.billing.payments, "127.0.0.1", settings.payment_webhook_port
                )
                try:
                    await webhooks.start()
                except OSError as error:  # SSH users need not wait for a busy port
                    log.error("the payment webhook endpoint did not start: %s", error)
                else:
                    running.push_async_callback(webhooks.close)
            server = GhstServer.for_panel(
                panel.services,
                host=host,
                port=port,
                reuse_port=shared_port,
                recover_uploads=primary,
            )
            await server.start()
            # `:system` in any process lists this one: its sessions, renewed every few seconds.
            beating = asyncio.create_task(
                panel.processes.heartbeat(
                    socket.gethostname(),
                    os.getpid(),
                    lambda: Counts(len(server.sessions), len(server.connections)),
                )
            )
            running.push_async_callback(stopped, beating)
            if worker:
                worker_task = asyncio.create_task(panel.worker().run(stop))
                running.push_async_callback(finished, worker_task)
            running.push_async_callback(server.close)
            running.callback(stop.set)
            # Everything loaded so far (modules, Textual's classes, the pool) lives as long
            # as the process: keep it out of the collector's way so sessions don't pay for it.
            gc.freeze()
            if on_listening is not None:
                on_listening()
            else:
                print(f"ghst: listening on {server.host}:{server.port}", file=sys.stderr)
            await stop.wait()
            log.info("stop signal received: shutting down")
    return 0


async def stopped(task: asyncio.Task[None]) -> None:
    """Cancel `task` and wait until it has cleaned up."""
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


async def finished(task: asyncio.Task[None]) -> None:
    """Wait for `task` to end (its error, if any, is raised here)."""
    await task


def serve_processes(host: str | None, port: int | None, *, worker: bool, count: int) -> int:
    """`count` serving processes on one port (see cli.processes); the first runs the worker."""
    os.environ.setdefault("TEXTUAL_COLOR_SYSTEM", "truecolor")
    settings = Settings.load()
    host = settings.ssh_host if host is None else host
    port = settings.ssh_port if port is None else port
    asyncio.run(prepare_shared(settings))
    preload_dashboard()
    try:
        reservation = reserve_port(host, port)
    except OSError as error:
        raise UnavailableError(f"cannot listen on {host}:{port}: {error.strerror}") from error
    port = reservation.getsockname()[1]

    def child(index: int, ready: int) -> int:
        reservation.close()

        def listening() -> None:
            os.write(ready, READY)

        try:
            return asyncio.run(
                serve(
                    host,
                    port,
                    worker=worker and index == 0,
                    primary=index == 0,
                    shared_port=True,
                    on_listening=listening,
                )
            )
        except PanelError as error:
            print(f"ghst: {error.message}", file=sys.stderr)
            return error.exit_code

    def announce() -> None:
        print(f"ghst: {count} serving processes, listening on {host}:{port}", file=sys.stderr)

    try:
        return Supervisor(count, child).run(announce)
    finally:
        reservation.close()


async def prepare_shared(settings: Settings) -> None:
    """What the serving processes would otherwise race for: migrations and the host key."""
    from sshd.hostkeys import load_or_create_host_key

    pool = await create_pool(settings.database_url, max_size=1)
    try:
        async with pool.acquire() as conn:
            for migration in await migrate(conn):
                log.info("applied migration %04d_%s", migration.version, migration.name)
    finally:
        await pool.close()
    await asyncio.to_thread(load_or_create_host_key, settings.data_dir)


def preload_dashboard() -> None:
    """Import the server and every screen before forking: the children share those pages."""
    import pkgutil

    import sshd.server  # noqa: F401
    import tui.app
    import tui.screens

    for module in pkgutil.iter_modules(tui.screens.__path__, "tui.screens."):
        importlib.import_module(module.name)


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
    rows = [
        [
            stray.name,
            stray.project,
            stray.deployment,
            "running" if stray.running else "stopped",
            stray.why,
        ]
        for stray in strays
    ]
    # The commands' table: the names come from Docker labels, so control characters are cut.
    sys.stdout.write(table(["CONTAINER", "PROJECT", "DEPL.", "STATE", "WHY"], rows))
    return 0


async def manage_users(action: str, username: str | None, role: str | None = None) -> int:
    panel = await Panel.open(Settings.load())
    try:
        accounts = panel.accounts
        if action == "list":
            print(f"{'USERNAME':<32} {'EMAIL':<40} {'CREATED':<10} STATE")
            for user in await accounts.list(OPERATOR):
                state = "blocked" if user.is_blocked else "active"
                if user.role != "user":
                    state += f", {user.role}"
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
        elif action == "role":
            assert username is not None and role is not None
            user = await accounts.set_role(OPERATOR, username, role)
            print(f"{user.username} is now {user.role}: their open sessions end within seconds")
    finally:
        await panel.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
