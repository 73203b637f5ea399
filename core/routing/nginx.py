"""nginx in front of the apps: one file per project in a private prefix.

    NginxRouter     renders the templates in nginx/ into the prefix, one `vhosts/<project>.conf`
                    per project; each change is written atomically, validated with `nginx -t`,
                    reloaded, and confirmed by asking nginx itself
    NginxProcess    the nginx master for that prefix: the panel's child, or adopted from its pid
                    file when one already runs

    UnavailableError
    └── RoutingError    nginx refused a change, is missing, or did not take the change in time;
                        the previous configuration is still the one in use

Prefix layout: nginx.conf, vhosts/, pages/ (the 404/502/503 pages), logs/ (error and access log,
the master's own output), temp/ (request bodies and proxy buffers), nginx.pid.

nginx.conf has one server for every host; a project's file is one entry of its `$host` map
("127.0.0.1:<port> <deployment>" or "stopped"), so 1000 projects cost nginx a thousand map
entries rather than a thousand server blocks (each tens of KiB of module settings, parsed twice
per switch: `nginx -t`, then the reload). The proxy headers, timeouts, websocket upgrade, body
limit and the friendly pages are set once there.

The templates use `${name}` placeholders (string.Template with braces only), so nginx's own
`$variables` are written as they are. Every value is validated before it is rendered (a project
is a DNS label, ports and ids are integers), so nothing a user chooses can inject nginx syntax.

A switch is confirmed before `route()` returns, so the caller may stop the previous containers:
nginx starts new workers on a reload and tells the old ones to stop accepting 100 ms later, so
the router waits until every old worker says it is shutting down (its process title), then until
a probe carries the new `X-Ghst-Deployment`. The probe announces a body larger than the size
limit, so nginx itself answers it (413) and the app never sees it. nginx gives that header only
to a request carrying `X-Ghst-Probe: <secret>`, the secret kept in the prefix's `probe.key`
(0600, made once, shared by every panel process using the prefix): deployment ids are internal
and a public response never shows one. When no nginx runs for the
prefix (not managed by this panel), changes are written and validated only, and the skipped
confirmation is logged.

The access and error logs grow with every visitor of every tenant: `rotate_logs` moves one past
`log_max_mb` aside as `<name>.1` (replacing the previous one) and tells the master to reopen its
logs (USR1), so they never take more than twice that. `NginxProcess` does it every
LOG_CHECK_SECONDS while it runs nginx.

Changes of one router are serialised by an asyncio.Lock. File IO and /proc reads run in threads;
`nginx -t` runs as an async subprocess.
"""

from __future__ import annotations

import asyncio
import contextlib
import grp
import ipaddress
import logging
import os
import pwd
import re
import secrets
import signal
import stat
import string
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

from core.errors import UnavailableError, ValidationError

log = logging.getLogger(__name__)

TEMPLATES_DIR = Path(__file__).resolve().parents[2] / "nginx"
PAGES = ("404.html", "502.html", "503.html", "suspended.html", "held.html")
# What a project that does not run answers: its `$ghst_route` entry, a 503 page each.
STOPPED_PAGES = ("stopped", "stopped-free", "suspended", "held")
TEMP_DIRS = ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
CONF_NAME = "nginx.conf"
PID_NAME = "nginx.pid"
# The master's own stdout/stderr (start-up errors before the error log is open).
MASTER_LOG = "logs/nginx.out"

PROJECT_PATTERN = re.compile(r"^[a-z][a-z0-9-]{1,38}[a-z0-9]$")
DOMAIN_LABEL = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$")
SYSTEM_NAME = re.compile(r"^[a-z_][a-z0-9_-]{0,31}$")
# `2026/01/02 03:04:05 [emerg] 12#12: unknown directive ...` or `nginx: [emerg] ...`
LOG_LINE = re.compile(
    r"^(?:nginx: )?(?:\d{4}/\d\d/\d\d \d\d:\d\d:\d\d )?\[(?P<level>[a-z]+)\] "
    r"(?:\d+#\d+: )?(?:\*\d+ )?(?P<message>.*)$"
)
DEPLOYMENT_HEADER = "x-ghst-deployment"
PROBE_HEADER = "X-Ghst-Probe"
PROBE_KEY_NAME = "probe.key"
# Unprivileged accounts for the workers when the master runs as root, in order of preference.
WORKER_USERS = (("nobody", "nogroup"), ("nobody", "nobody"), ("www-data", "www-data"))

LOG_NAMES = ("logs/access.log", "logs/error.log")
LOG_CHECK_SECONDS = 60.0

NOT_INSTALLED = "nginx is not installed on this server (no {binary!r} program found)."


class RoutingError(UnavailableError):
    title = "Routing failed"


class _Template(string.Template):
    """`${name}` is a placeholder; `$name` (nginx's variables) and a lone `$` stay as written."""

    pattern = r"""
    \$(?:
      (?P<escaped>(?!))
      | \{(?P<braced>[a-z_]+)\}
      | (?P<named>(?!))
      | (?P<invalid>(?!))
    )
    """  # type: ignore[assignment]  # string.Template compiles it in __init_subclass__


def render(template: str, values: dict[str, object]) -> str:
    """Fill `template` (a file name in nginx/) with `values`; every placeholder must be given."""
    text = (TEMPLATES_DIR / template).read_text(encoding="utf-8")
    try:
        return _Template(text).substitute({key: str(value) for key, value in values.items()})
    except KeyError as error:
        raise RuntimeError(
            f"nginx/{template} has a placeholder ghst does not fill: {error}"
        ) from error


def validate_project(project: str) -> str:
    if not isinstance(project, str) or not PROJECT_PATTERN.match(project):
        raise ValidationError(
            f"{project!r} cannot be routed: a project name is 3 to 40 lowercase letters, digits"
            " and dashes, starting with a letter and not ending with a dash."
        )
    return project


def validate_domain(domain: str) -> str:
    name = domain.strip().lower().rstrip(".")
    labels = name.split(".")
    if len(name) > 200 or not all(DOMAIN_LABEL.match(label) for label in labels):
        raise ValidationError(f"{domain!r} is not a valid domain for the panel's sites.")
    return name


def validate_listen(listen: str) -> str:
    """An IP address or a host name; IPv6 addresses come back in brackets, as nginx writes them."""
    bare = listen.strip().strip("[]")
    try:
        address = ipaddress.ip_address(bare)
    except ValueError:
        if validate_domain(bare) != bare:
            raise ValidationError(f"{listen!r} is not an address nginx can listen on.") from None
        return bare
    return f"[{address}]" if address.version == 6 else str(address)


def validate_port(port: int, what: str = "port") -> int:
    if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
        raise ValidationError(f"{what} {port!r} is not a TCP port (1-65535).")
    return port


def validate_positive(value: int, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValidationError(f"{what} must be a positive whole number, not {value!r}.")
    return value


def first_error_line(output: str) -> str:
    """What nginx says is wrong: its first error line, without the time, pid and level."""
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    for level in ("emerg", "alert", "crit", "error"):
        for line in lines:
            found = LOG_LINE.match(line)
            if found and found["level"] == level:
                return found["message"]
    return lines[0].removeprefix("nginx: ") if lines else "no reason given"


def write_atomically(path: Path, data: bytes, mode: int = 0o644) -> None:
    """Write `path` so that readers see the old file or the new one, never a part."""
    fd, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as file:
            file.write(data)
            file.flush()
            os.fchmod(file.fileno(), mode)
            os.fsync(file.fileno())
        os.replace(temp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temp)
        raise
    _fsync_dir(path.parent)


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _read(path: Path) -> bytes | None:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        return None


def _restore(path: Path, previous: bytes | None) -> None:
    if previous is None:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
    else:
        write_atomically(path, previous)


def _cmdline(pid: int) -> str:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return ""
    return raw.replace(b"\0", b" ").decode(errors="replace").strip()


def _alive(pid: int) -> bool:
    """Whether `pid` is a process that has not ended (a zombie has ended)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return True
    return state not in ("Z", "X")


def _children(pid: int) -> list[int]:
    """The processes whose parent is `pid` (nginx's workers, for a master)."""
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
        return [int(child) for child in text.split()]
    except OSError:
        pass
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[1]) == pid:
            found.append(int(entry.name))
    return found


def _accepting_workers(master: int) -> set[int]:
    """The master's workers that still accept connections (not told to shut down yet)."""
    return {child for child in _children(master) if _cmdline(child) == "nginx: worker process"}


def _worker_account() -> tuple[str, str, int, int] | None:
    """(user, group, uid, gid) for nginx's workers when the master runs as root, else None."""
    if os.geteuid() != 0:
        return None
    for user, group in WORKER_USERS:
        try:
            uid = pwd.getpwnam(user).pw_uid
            gid = grp.getgrnam(group).gr_gid
        except KeyError:
            continue
        return user, group, uid, gid
    raise RoutingError(
        "nginx would run its workers as root: create a 'nobody' user and group for them."
    )


def _unreachable_folder(path: Path, uid: int, gid: int) -> Path | None:
    """The first folder on the way to `path` that user `uid` cannot enter, if any."""
    for folder in [path, *path.parents]:
        info = folder.stat()
        if info.st_uid == uid:
            allowed = info.st_mode & stat.S_IXUSR
        elif info.st_gid == gid:
            allowed = info.st_mode & stat.S_IXGRP
        else:
            allowed = info.st_mode & stat.S_IXOTH
        if not allowed:
            return folder
    return None


class NginxRouter:
    """Routes `<project>.<domain>` to an app's port through the nginx running in `prefix`."""

    confirm_timeout = 5.0  # seconds for nginx to show a change after the reload
    validate_timeout = 30.0  # seconds for `nginx -t`
    probe_interval = 0.005

    def __init__(
        self,
        *,
        prefix: Path,
        domain: str,
        listen: str = "127.0.0.1",
        port: int = 8080,
        body_limit_mb: int = 64,
        binary: str = "nginx",
        log_max_mb: int = 64,
        webhook_port: int = 8089,
    ) -> None:
        self.prefix = Path(prefix).absolute()
        self.log_max_bytes = validate_positive(log_max_mb, "The nginx log size limit") << 20
        self.domain = validate_domain(domain)
        self.listen = validate_listen(listen)
        self.port = validate_port(port, "The nginx port")
        self.body_limit_mb = validate_positive(body_limit_mb, "The body size limit")
        self.binary = binary
        # Where the panel's payment webhook endpoint listens (0: none; nginx answers 404).
        self.webhook_port = (
            0 if webhook_port == 0 else validate_port(webhook_port, "The webhook port")
        )
        self._lock = asyncio.Lock()
        self._probe_secret: str | None = None

    # Paths and names.

    @property
    def conf_path(self) -> Path:
        return self.prefix / CONF_NAME

    @property
    def vhosts_dir(self) -> Path:
        return self.prefix / "vhosts"

    @property
    def pages_dir(self) -> Path:
        return self.prefix / "pages"

    @property
    def pid_path(self) -> Path:
        return self.prefix / PID_NAME

    def probe_secret(self) -> str:
        """The secret that makes nginx tell the panel's probe which deployment answered
        (blocking: made in the prefix on first use, then kept)."""
        if self._probe_secret is None:
            path = self.prefix / PROBE_KEY_NAME
            self.prefix.mkdir(parents=True, exist_ok=True)
            try:
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
            except FileExistsError:
                secret = path.read_text().strip()
            else:
                secret = secrets.token_hex(32)
                with os.fdopen(fd, "w") as file:
                    file.write(secret + "\n")
            if not re.fullmatch(r"[0-9a-f]{64}", secret):
                raise RoutingError(f"{path} does not hold a probe secret: remove it.")
            self._probe_secret = secret
        return self._probe_secret

    def probe_headers(self) -> dict[str, str]:
        """Headers that make nginx say which deployment answered (blocking, see probe_secret)."""
        return {PROBE_HEADER: self.probe_secret()}

    def vhost_path(self, project: str) -> Path:
        return self.vhosts_dir / f"{validate_project(project)}.conf"

    def host(self, project: str) -> str:
        return f"{validate_project(project)}.{self.domain}"

    def url(self, project: str) -> str:
        port = "" if self.port == 80 else f":{self.port}"
        return f"http://{self.host(project)}{port}/"

    def projects(self) -> list[str]:
        """Projects that have a vhost file (routed or stopped), sorted."""
        try:
            names = [path.stem for path in self.vhosts_dir.glob("*.conf")]
        except OSError:
            return []
        return sorted(name for name in names if PROJECT_PATTERN.match(name))

    @property
    def probe_address(self) -> str:
        """Where to connect to reach nginx: the listen address, loopback for a wildcard."""
        bare = self.listen.strip("[]")
        if bare == "0.0.0.0":
            return "127.0.0.1"
        if bare == "::":
            return "::1"
        return bare

    # Rendering (pure; no files are written).

    def _common(self) -> dict[str, object]:
        return {"listen": self.listen, "port": self.port, "domain": self.domain}

    def render_main(self) -> str:
        account = _worker_account()
        user = "" if account is None else f"user {account[0]} {account[1]};"
        if account is not None and not all(SYSTEM_NAME.match(name) for name in account[:2]):
            raise RoutingError(f"{account[0]}:{account[1]} is not a usable account for nginx.")
        values = {
            **self._common(),
            "user_directive": user,
            "body_limit_mb": self.body_limit_mb,
            "probe_secret": self.probe_secret(),
            # nginx cannot proxy to port 0: a closed port makes it answer 502 instead.
            "webhook_port": self.webhook_port or 9,
        }
        return render("nginx.conf.template", values)

    def render_vhost(self, project: str, port: int, deployment_id: int) -> str:
        return render(
            "vhost.conf.template",
            {
                **self._common(),
                "project": validate_project(project),
                "upstream_port": validate_port(port, "The app's port"),
                "deployment_id": validate_positive(deployment_id, "The deployment id"),
            },
        )

    def render_stopped(self, project: str, page: str = "stopped") -> str:
        if page not in STOPPED_PAGES:
            raise ValidationError(f"{page!r} is not a page for a project that does not run.")
        return render(
            "stopped.conf.template",
            {**self._common(), "project": validate_project(project), "page": page},
        )

    # Files.

    async def prepare(self) -> None:
        """Create the prefix's folders, write nginx.conf and the pages. Starts nothing."""
        await asyncio.to_thread(self._prepare)

    def _prepare(self) -> None:
        main = self.render_main().encode()
        for folder in (self.prefix, self.vhosts_dir, self.pages_dir, self.prefix / "logs"):
            folder.mkdir(parents=True, exist_ok=True)
            folder.chmod(0o755)
        # nginx makes (and hands to its workers) the folders inside temp/, not temp/ itself.
        (self.prefix / "temp").mkdir(exist_ok=True)
        (self.prefix / "temp").chmod(0o755)
        account = _worker_account()
        if account is not None:
            blocked = _unreachable_folder(self.pages_dir, account[2], account[3])
            if blocked is not None:
                raise RoutingError(
                    f"nginx's workers run as {account[0]} and cannot enter {blocked}: allow"
                    f" others to enter it (chmod o+x {blocked}), or give nginx a prefix"
                    f" they can reach (GHST_NGINX_PREFIX), outside a private data folder."
                )
        for page in PAGES:
            data = (TEMPLATES_DIR / "pages" / page).read_bytes()
            if _read(self.pages_dir / page) != data:
                write_atomically(self.pages_dir / page, data)
        if _read(self.conf_path) != main:
            write_atomically(self.conf_path, main, mode=0o600)  # it holds the probe secret

    # Changes.

    async def route(self, project: str, port: int, deployment_id: int) -> None:
        """Send `<project>.<domain>` to 127.0.0.1:`port`; returns once nginx does so."""
        content = await asyncio.to_thread(self.render_vhost, project, port, deployment_id)
        expected = str(deployment_id)

        def switched(status: int, headers: dict[str, str]) -> bool:
            return status == 413 and headers.get(DEPLOYMENT_HEADER) == expected

        await self._change(project, content, switched, f"deployment {deployment_id}", True)

    async def route_stopped(self, project: str, page: str = "stopped") -> None:
        """`<project>.<domain>` answers a 503 page: stopped by its owner ("stopped", or
        "stopped-free" with the free plan's badge), "suspended" for non-payment, or "held" by
        the operators."""
        content = await asyncio.to_thread(self.render_stopped, project, page)

        def stopped(status: int, headers: dict[str, str]) -> bool:
            return status == 503 and DEPLOYMENT_HEADER not in headers

        await self._change(project, content, stopped, "the stopped page", False)

    async def remove(self, project: str) -> None:
        """No vhost any more: the host answers the unknown-host 404 page."""
        validate_project(project)

        def gone(status: int, headers: dict[str, str]) -> bool:
            return status == 404 and DEPLOYMENT_HEADER not in headers

        await self._change(project, None, gone, "the unknown-host page", False)

    async def validate(self) -> None:
        """Run `nginx -t` on the prefix; RoutingError with nginx's reason when it fails."""
        try:
            process = await asyncio.create_subprocess_exec(
                self.binary,
                "-t",
                "-q",
                *("-p", f"{self.prefix}/", "-c", CONF_NAME),
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.STDOUT,
            )
        except (FileNotFoundError, PermissionError) as error:
            raise RoutingError(NOT_INSTALLED.format(binary=self.binary)) from error
        try:
            output, _ = await asyncio.wait_for(process.communicate(), self.validate_timeout)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            await process.wait()
            raise RoutingError(
                f"nginx took more than {self.validate_timeout:.0f} s to check its configuration."
            ) from None
        if process.returncode != 0:
            reason = first_error_line(output.decode(errors="replace"))
            raise RoutingError(
                f"nginx refused the new configuration: {reason}; the previous one is still in use."
            )

    def master_pid(self) -> int | None:
        """The pid of the nginx master running for this prefix, from its pid file (blocking)."""
        try:
            pid = int(self.pid_path.read_text().strip())
        except (OSError, ValueError):
            return None
        if pid <= 1 or not _alive(pid):
            return None
        command = _cmdline(pid)
        if command and not command.startswith("nginx: master process"):
            return None  # a stale pid file whose number now belongs to another program
        return pid

    async def rotate_logs(self) -> list[Path]:
        """Move each log past `log_max_bytes` aside and make nginx reopen its logs; the logs
        moved (now `<name>.1`)."""
        return await asyncio.to_thread(self._rotate_logs)

    def _rotate_logs(self) -> list[Path]:
        moved = []
        for name in LOG_NAMES:
            path = self.prefix / name
            try:
                if path.stat().st_size <= self.log_max_bytes:
                    continue
                os.replace(path, path.with_name(path.name + ".1"))
            except FileNotFoundError:
                continue
            moved.append(path)
        master = self.master_pid() if moved else None
        if master is not None:
            # Workers write what they buffered to the moved file, then open a new one.
            with contextlib.suppress(ProcessLookupError):
                os.kill(master, signal.SIGUSR1)
        return moved

    async def reload(self) -> None:
        """Validate, then make the running master (if any) load the configuration again."""
        async with self._lock:
            await self.validate()
            await asyncio.to_thread(self._signal_reload)

    def _signal_reload(self) -> tuple[int, set[int]] | None:
        """HUP the master; returns (master, workers that served the old configuration)."""
        master = self.master_pid()
        if master is None:
            return None
        old = _accepting_workers(master)
        try:
            os.kill(master, signal.SIGHUP)
        except ProcessLookupError:
            return None
        return master, old

    async def _change(
        self,
        project: str,
        content: str | None,
        confirmed: Callable[[int, dict[str, str]], bool],
        what: str,
        oversized: bool,
    ) -> None:
        path = self.vhost_path(project)
        async with self._lock:
            data = None if content is None else content.encode()
            previous = await asyncio.to_thread(self._write, path, data)
            reloaded: tuple[int, set[int]] | None = None
            if previous != data:
                try:
                    await self.validate()
                except BaseException:
                    await asyncio.to_thread(_restore, path, previous)
                    raise
                reloaded = await asyncio.to_thread(self._signal_reload)
            elif await asyncio.to_thread(self.master_pid) is not None:
                reloaded = (0, set())  # nothing to change: only confirm what nginx serves
            if reloaded is None:
                log.warning("nginx is not running for %s: %s not confirmed", self.prefix, project)
                return
            master, old = reloaded
            if not await self._confirm(project, master, old, confirmed, oversized):
                await asyncio.to_thread(_restore, path, previous)
                with contextlib.suppress(RoutingError):
                    await asyncio.to_thread(self._signal_reload)
                raise RoutingError(
                    f"nginx did not switch {self.host(project)} to {what} within"
                    f" {self.confirm_timeout:.0f} s; the previous configuration is kept."
                )

    def _write(self, path: Path, data: bytes | None) -> bytes | None:
        """Put `data` at `path` (None: remove it); returns what was there before."""
        if not self.conf_path.exists():
            self._prepare()
        previous = _read(path)
        if previous == data:
            return previous
        if data is None:
            path.unlink()
            _fsync_dir(path.parent)
        else:
            write_atomically(path, data)
        return previous

    async def _confirm(
        self,
        project: str,
        master: int,
        old_workers: set[int],
        confirmed: Callable[[int, dict[str, str]], bool],
        oversized: bool,
    ) -> bool:
        """Wait until no worker with the old configuration accepts and nginx answers as expected."""
        deadline = time.monotonic() + self.confirm_timeout
        pending = set(old_workers)
        while time.monotonic() < deadline:
            if pending:
                pending &= await asyncio.to_thread(_accepting_workers, master)
            if not pending:
                budget = deadline - time.monotonic()
                answer = await self._probe(self.host(project), budget, oversized)
                if answer is not None and confirmed(*answer):
                    return True
            await asyncio.sleep(self.probe_interval)
        return False

    async def _probe(
        self, host: str, budget: float, oversized: bool
    ) -> tuple[int, dict[str, str]] | None:
        """One request through nginx: (status, lower-cased headers). `oversized` announces a
        body over the limit (and sends none): nginx answers 413 itself, the app sees nothing."""
        if budget <= 0:
            return None
        length = f"Content-Length: {(self.body_limit_mb << 20) + 1}\r\n" if oversized else ""
        secret = await asyncio.to_thread(self.probe_secret)
        request = (
            f"GET / HTTP/1.1\r\nHost: {host}\r\n{PROBE_HEADER}: {secret}\r\n{length}"
            "Connection: close\r\n\r\n"
        ).encode()
        try:
            async with asyncio.timeout(min(budget, 2.0)):
                reader, writer = await asyncio.open_connection(self.probe_address, self.port)
                try:
                    writer.write(request)
                    await writer.drain()
                    head = await reader.readuntil(b"\r\n\r\n")
                finally:
                    writer.close()
                    with contextlib.suppress(OSError):
                        await writer.wait_closed()
        except (OSError, TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            return None
        lines = head.decode("latin-1").split("\r\n")
        try:
            status = int(lines[0].split()[1])
        except (IndexError, ValueError):
            return None
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            if name:
                headers[name.strip().lower()] = value.strip()
        return status, headers


class NginxProcess:
    """The nginx master for a router's prefix, started as the panel's child or adopted."""

    start_timeout = 10.0
    stop_timeout = 10.0

    def __init__(self, router: NginxRouter) -> None:
        self.router = router
        self._process: asyncio.subprocess.Process | None = None
        self._adopted: int | None = None
        self._rotator: asyncio.Task[None] | None = None

    @property
    def pid(self) -> int | None:
        process = self._process
        if process is not None and process.returncode is None and _alive(process.pid):
            return process.pid  # (an exit not yet collected by asyncio shows as a zombie)
        if self._adopted is not None and self._adopted == self.router.master_pid():
            return self._adopted
        return None

    @property
    def running(self) -> bool:
        return self.pid is not None

    async def start(self) -> None:
        """Prepare the prefix and start nginx (or adopt the one running there); returns once
        its port accepts connections."""
        if self.running:
            return
        router = self.router
        await router.prepare()
        existing = await asyncio.to_thread(router.master_pid)
        if existing is not None:
            log.info("adopting the nginx master %d running for %s", existing, router.prefix)
            self._adopted = existing
            await router.reload()  # the templates may have changed since it started
            await self._wait_until_serving(existing, None)
            self._start_rotator()
            return
        await router.validate()
        output = await asyncio.to_thread(open, router.prefix / MASTER_LOG, "ab")
        try:
            process = await asyncio.create_subprocess_exec(
                router.binary,
                *("-p", f"{router.prefix}/", "-c", CONF_NAME, "-g", "daemon off;"),
                stdin=asyncio.subprocess.DEVNULL,
                stdout=output,
                stderr=output,
                start_new_session=True,  # the panel's terminal signals are not nginx's
            )
        except (FileNotFoundError, PermissionError) as error:
            raise RoutingError(NOT_INSTALLED.format(binary=router.binary)) from error
        finally:
            output.close()
        self._process = process
        try:
            await self._wait_until_serving(process.pid, process)
        except BaseException:
            await self.stop()
            raise
        self._start_rotator()

    def _start_rotator(self) -> None:
        if self._rotator is None or self._rotator.done():
            self._rotator = asyncio.get_running_loop().create_task(self._rotate_forever())

    async def _rotate_forever(self) -> None:
        while True:
            await asyncio.sleep(LOG_CHECK_SECONDS)
            try:
                await self.router.rotate_logs()
            except OSError as error:
                log.warning("cannot rotate nginx's logs: %s", error)

    async def _wait_until_serving(
        self, pid: int, process: asyncio.subprocess.Process | None
    ) -> None:
        router = self.router
        deadline = time.monotonic() + self.start_timeout
        while time.monotonic() < deadline:
            if process is not None and process.returncode is not None:
                break
            # The pid file is written once the listening sockets are open.
            if await asyncio.to_thread(router.master_pid) == pid and await self._accepts():
                return
            await asyncio.sleep(0.02)
        reason = await asyncio.to_thread(self._last_error)
        raise RoutingError(
            f"nginx could not start on {router.listen}:{router.port}"
            + (f": {reason}" if reason else ".")
        )

    async def _accepts(self) -> bool:
        router = self.router
        try:
            async with asyncio.timeout(1.0):
                _, writer = await asyncio.open_connection(router.probe_address, router.port)
        except (OSError, TimeoutError):
            return False
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
        return True

    def _last_error(self) -> str:
        text = _read(self.router.prefix / MASTER_LOG) or b""
        lines = text.decode(errors="replace").splitlines()[-20:]
        return first_error_line("\n".join(lines)) if lines else ""

    async def stop(self) -> None:
        """QUIT (finish the requests under way), then KILL the master and its workers after
        `stop_timeout`. Stops whatever master runs for the prefix, ours or adopted."""
        rotator, self._rotator = self._rotator, None
        if rotator is not None:
            rotator.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await rotator
        process = self._process
        pid = self.pid or await asyncio.to_thread(self.router.master_pid)
        self._process, self._adopted = None, None
        if pid is None:
            if process is not None:
                await process.wait()
            return
        workers = await asyncio.to_thread(_children, pid)
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGQUIT)
        if await self._exited(pid, process, self.stop_timeout):
            return
        log.warning("nginx %d did not stop within %.0f s: killing it", pid, self.stop_timeout)
        workers += await asyncio.to_thread(_children, pid)
        for victim in (pid, *workers):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(victim, signal.SIGKILL)
        await self._exited(pid, process, 5.0)
        # Killed workers close their listening sockets only once they are gone.
        await _poll(lambda: asyncio.to_thread(lambda: not any(map(_alive, workers))), 5.0)

    async def _exited(
        self, pid: int, process: asyncio.subprocess.Process | None, seconds: float
    ) -> bool:
        if process is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(process.wait(), seconds)
            return process.returncode is not None
        return await _poll(lambda: asyncio.to_thread(lambda: not _alive(pid)), seconds)


async def _poll(check: Callable[[], Awaitable[bool]], seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if await check():
            return True
        await asyncio.sleep(0.05)
    return await check()
