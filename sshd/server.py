"""The SSH server: listener, authentication, live sessions, revocation watcher, shutdown.

Authentication (per connection, `PanelConnection`):

- a username with an account: public key (the key must be registered to *that* account, and the
  account not blocked), password, or keyboard-interactive with one password prompt. Passwords
  go through `AccountService.authenticate` (bcrypt in a thread, throttled per user and address);
- a username without an account: a visitor, let in to sign up. Any public key they prove they
  hold is accepted and remembered (`Visitor.presented_key`) so sign-up can attach it;
  without a key, keyboard-interactive with no prompt lets them in. Passwords never do.

Which method succeeded is only known from the order of asyncssh's callbacks: every callback
first forgets the previous candidate and only a check that passes sets one; asyncssh calls
`auth_completed` right after the check that succeeded (for public keys, the one that came with
a verified signature). So a key merely offered (no signature) is never taken as proven.

Each SSH connection of an account is one login: a row of `sessions`, opened as soon as the
authentication succeeds and revoked when the connection ends. Every channel on the connection
runs under it (the dashboard's `visitor.session` is that row; file transfers carry its jti), so
one connection multiplexed by OpenSSH's ControlMaster is still one login:

- every new channel checks, before it serves anything, that the login is still valid (not
  revoked, not expired, the account not blocked): `PanelConnection.channel_login`;
- once the login ends (log out everywhere, a password change, blocking), the whole connection
  is closed, after its channels had a moment to tell the user why.

`GhstServer` keeps the live dashboard sessions, transfers and logged-in connections, and ends
the ones revoked, expired or whose user was blocked, well inside the 5 s the issue asks for,
without asking the database each second:

- a revocation or a block publishes a `session` event with the user's id (migration 0010), in
  the same transaction, whichever process made it; the server checks that user's live logins;
- expiry is a time: the watcher wakes when the first live login expires;
- a slow safety check of everything (`revocation_poll`, and the hub's `refresh` after a lost
  LISTEN connection) catches what no event told.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
import uuid
import weakref
from collections.abc import Collection, Coroutine, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol, TypeVar

import asyncssh

from core.actor import Actor
from core.errors import AuthenticationError, PanelError, ThrottledError, UnavailableError
from core.events import Event, Subscription
from core.identity.access_tokens import TokenLogin, looks_like_token
from core.identity.accounts import User, deploy_key_actor
from core.identity.keys import PublicKey, public_key_from_blob
from core.identity.sessions import Session
from core.services import Services, ServiceSet
from core.settings import Settings
from sshd.driver import prepare_hosting
from sshd.hostkeys import load_or_create_host_key
from sshd.isolation import isolated_services
from sshd.memory import MemoryReturn
from sshd.packets import batch_writes
from sshd.session import PanelSession
from sshd.sftp import ChannelRouter, TransferSession

log = logging.getLogger(__name__)

# The server itself ends a connection's login session when the connection closes.
SERVER = Actor.system("sshd")

# Revocations and blocks arrive as events; this slow check of every live login only catches
# what no event told (a change while the LISTEN connection was down, before it noticed).
REVOCATION_SAFETY_POLL = 30.0
# After a failed check, and after the first expiry (the database's clock decides it).
REVOCATION_RETRY = 1.0
SESSION_ENDED = "Your session was ended: it was logged out everywhere or the account was blocked."
TOKEN_ENDED = "The access token of this connection was revoked or expired, or the account blocked."
ACCOUNT_BLOCKED = "This account was blocked: the transfer was stopped."
TRANSFER_ENDED = "The transfer was stopped: your account was logged out everywhere or blocked."
SERVER_STOPPED = "The panel is restarting. Please reconnect in a minute."
UNAVAILABLE = "The panel is temporarily unavailable. Please try again in a moment.\r\n"
LOGIN_TIMEOUT = 60
# An ended login's connection is closed once its channels said why, or after this long.
CHANNELS_END_TIMEOUT = 4.0
LOGIN_UNAVAILABLE = "The panel cannot check your login right now. Please try again in a moment."
# Bounded waits during shutdown, after the grace period.
APPS_EXIT_TIMEOUT = 5.0
CONNECTIONS_CLOSE_TIMEOUT = 3.0
CLIENTS_LEAVE_TIMEOUT = 1.0

METHOD_PUBLICKEY = "publickey"
METHOD_PASSWORD = "password"
METHOD_KBDINT = "keyboard-interactive"
# An access token given as the password (or the keyboard-interactive answer).
METHOD_TOKEN = "token"
Checked = TypeVar("Checked")


@dataclass(frozen=True)
class Login:
    """Who got in, and how: `user` None means a visitor (no such account: sign-up)."""

    ssh_username: str
    method: str
    user: User | None = None
    presented_key: PublicKey | None = None
    # A login an access token proved (given as the password): commands and transfers only,
    # within the token's scopes and projects.
    token: TokenLogin | None = None
    # A login a deploy key proved: limited like a token, to the key's scopes and projects.
    deploy_key: Actor | None = None

    @property
    def limited(self) -> Actor | None:
        """The token's or deploy key's actor: such a login gets commands and transfers only."""
        return self.token.actor if self.token is not None else self.deploy_key

    @property
    def actor(self) -> Actor | None:
        """Who acts for this login: the token or deploy key, the account, or nobody (a
        visitor)."""
        if self.limited is not None:
            return self.limited
        return Actor.for_user(self.user) if self.user is not None else None


class SessionHost(Protocol):
    """What a session needs from the server (kept small so sessions stay testable)."""

    services: Services
    # What the apps get: the same services, called in a context of their own.
    app_services: Services

    def spawn(self, coro: Coroutine[Any, Any, None], name: str) -> asyncio.Task[None]: ...
    def register(self, session: PanelSession) -> None: ...
    def unregister(self, session: PanelSession) -> None: ...


class PanelConnection(asyncssh.SSHServer):
    """One client connection: authentication, then its session channels."""

    def __init__(self, server: GhstServer) -> None:
        self._server = server
        self._services = server.services
        self._conn: asyncssh.SSHServerConnection | None = None
        self.remote_addr = "unknown"
        # On the audit entry of this connection's login.
        self.request_id = uuid.uuid4().hex[:16]
        self._username = ""
        self._account: User | None = None
        self._unavailable = False
        self._candidate: Login | None = None
        self.login: Login | None = None
        # The login's row in `sessions` (accounts only), and why it ended, once it has.
        self.session: Session | None = None
        self.ended_reason: str | None = None
        self._session_lock = asyncio.Lock()
        self._channel_tasks: set[asyncio.Task[None]] = set()
        # Weak: a closed channel asyncssh let go of is forgotten here too.
        self._channels: weakref.WeakSet[asyncssh.SSHServerChannel[bytes]] = weakref.WeakSet()

    # -- connection ---------------------------------------------------------------------------

    def connection_made(self, conn: asyncssh.SSHServerConnection) -> None:
        batch_writes(conn)  # one socket write per frame, not two (sshd/packets.py)
        self._conn = conn
        peer = conn.get_extra_info("peername")
        if peer:
            self.remote_addr = str(peer[0])
        self._server.connections.add(conn)
        self._server.logins.add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        if self._conn is not None:
            self._server.connections.discard(self._conn)
        self._server.logins.discard(self)
        if self.session is not None:
            # The login ends with its connection.
            self._spawn(self._revoke(self.session), name="ssh-login-end")
        if exc is not None:
            log.info("connection from %s lost: %s", self.remote_addr, exc)

    # -- the connection's login ---------------------------------------------------------------

    def _spawn(self, coro: Coroutine[Any, Any, None], name: str) -> None:
        # In an empty context: called from inside a dashboard (a lost connection noticed by
        # its writes), the task and the pool timers it arms would otherwise keep the app alive.
        contextvars.Context().run(self._server.spawn, coro, name)

    async def _open_session(self) -> Session | None:
        login = self.login
        if login is None or login.user is None:
            return None
        async with self._session_lock:
            if self.session is None and login.token is not None:
                # Revoking the token revokes this login; it ends when the token expires.
                self.session = await self._services.access_tokens.open_login(
                    login.token, login.method, self.remote_addr
                )
            elif self.session is None:
                self.session = await self._services.sessions.open(
                    login.user.id,
                    login.method,
                    self.remote_addr,
                    actor=Actor.for_user(login.user).acting_from(
                        "ssh", source_address=self.remote_addr, request_id=self.request_id
                    ),
                )
                if self._conn is None or self._conn.is_closed():
                    # Gone while the row was written: it must not stay open.
                    await self._revoke(self.session)
            return self.session

    async def _open_session_now(self) -> None:
        try:
            await self._open_session()
        except AuthenticationError as error:
            # Its token was revoked in between: no login to watch, so no connection either.
            self.end(error.message)
        except Exception as error:  # the first channel tries again, and says why if it fails
            log.warning("cannot open the login session of %s: %s", self._username, error)

    async def _revoke(self, session: Session) -> None:
        try:
            await self._services.sessions.revoke(SERVER, session.jti)
        except Exception as error:  # it expires with its token anyway
            log.warning("could not close the login session of a connection: %s", error)

    async def channel_login(self) -> Session | None:
        """The login a new channel runs under, checked now: None for a visitor. Raises a
        PanelError, whose message is for the user, when the login ended (the connection is
        then closed) or cannot be checked."""
        if self.ended_reason is not None:
            raise AuthenticationError(self.ended_reason)
        try:
            session = await self._open_session()
            ended = await self._services.sessions.ended([session.jti]) if session else set()
        except AuthenticationError as error:
            self.end(error.message)
            raise
        except Exception as error:
            log.warning("cannot check the login of %s: %s", self._username, error)
            raise UnavailableError(LOGIN_UNAVAILABLE) from error
        if ended:
            self.end(SESSION_ENDED)
            raise AuthenticationError(SESSION_ENDED)
        return session

    def track(self, task: asyncio.Task[None], channel: asyncssh.SSHServerChannel[bytes]) -> None:
        """A channel's work and the channel: when the login ends, the connection closes after
        them, so what they last wrote (why they ended) reaches the client."""
        self._channel_tasks.add(task)
        task.add_done_callback(self._channel_tasks.discard)
        self._channels.add(channel)

    def end(self, reason: str) -> None:
        """The login ended: refuse new channels, and close the connection once the open ones
        told the user (the watcher ends them with `reason`)."""
        if self.ended_reason is not None:
            return
        self.ended_reason = reason
        self._spawn(self._close_after_channels(), name="ssh-connection-end")

    async def _close_after_channels(self) -> None:
        deadline = asyncio.get_running_loop().time() + CHANNELS_END_TIMEOUT
        running = {task for task in self._channel_tasks if not task.done()}
        if running:
            await asyncio.wait(running, timeout=CHANNELS_END_TIMEOUT)
        # Then the channels' own close (the client took their last words): OpenSSH's
        # ControlMaster drops what it has not passed on to its clients when it disconnects.
        closing = [asyncio.ensure_future(channel.wait_closed()) for channel in self._channels]
        remaining = deadline - asyncio.get_running_loop().time()
        if closing:
            _, pending = await asyncio.wait(closing, timeout=max(remaining, 0.1))
            for waiter in pending:
                waiter.cancel()
        if self._conn is not None:
            self._conn.close()

    # -- authentication -----------------------------------------------------------------------

    async def begin_auth(self, username: str) -> bool:
        self._username = username
        self._candidate = None
        self._account = None
        self._unavailable = False
        try:
            self._account = await self._services.accounts.find_by_username(username)
        except Exception:
            log.exception("cannot look up %r: refusing logins until the database is back", username)
            self._unavailable = True
            self._banner(UNAVAILABLE)
        return True

    def public_key_auth_supported(self) -> bool:
        return True

    def password_auth_supported(self) -> bool:
        return True

    def kbdint_auth_supported(self) -> bool:
        return True

    async def validate_public_key(self, username: str, key: asyncssh.SSHKey) -> bool:
        self._candidate = None
        if self._unavailable:
            return False
        try:
            public_key: PublicKey | None = public_key_from_blob(key.public_data)
        except PanelError:
            public_key = None  # a type we do not store (e.g. a security key): no attaching it
        account = self._account
        if account is None:
            self._candidate = Login(username, METHOD_PUBLICKEY, None, public_key)
            return True
        if public_key is None:
            return False
        try:
            owner, registered = await self._services.accounts.key_login(
                public_key, self.remote_addr
            )
        except PanelError:
            return False
        except Exception:
            log.exception("public key login of %r failed", username)
            return False
        if owner.id != account.id:
            return False
        deploy_key = deploy_key_actor(owner, registered)
        self._candidate = Login(username, METHOD_PUBLICKEY, owner, deploy_key=deploy_key)
        return True

    async def validate_password(self, username: str, password: str) -> bool:
        self._candidate = await self._check_secret(username, password, METHOD_PASSWORD)
        return self._candidate is not None

    def get_kbdint_challenge(
        self, username: str, lang: str, submethods: str
    ) -> bool | tuple[str, str, str, list[tuple[str, bool]]]:
        self._candidate = None
        if self._unavailable:
            return False
        if self._account is None:
            # No such account: straight in, to the sign-up screen.
            self._candidate = Login(username, METHOD_KBDINT)
            return True
        return ("", "", "", [("Password: ", False)])

    async def validate_kbdint_response(self, username: str, responses: Sequence[str]) -> bool:
        self._candidate = None
        if len(responses) != 1 or self._account is None:
            return False
        self._candidate = await self._check_secret(username, responses[0], METHOD_KBDINT)
        return self._candidate is not None

    async def _check_secret(self, username: str, secret: str, method: str) -> Login | None:
        """A password, or an access token given as the password (`ghst_...`): either is
        throttled per username and address alike."""
        if self._unavailable:
            return None
        if looks_like_token(secret):
            if self._account is None:
                return None
            token = await self._check(
                username,
                self._services.access_tokens.authenticate(username, secret, self.remote_addr),
            )
            if token is None:
                return None
            return Login(username, METHOD_TOKEN, token.user, token=token)
        user = await self._check(
            username, self._services.accounts.authenticate(username, secret, self.remote_addr)
        )
        return Login(username, method, user) if user is not None else None

    async def _check(self, username: str, check: Coroutine[Any, Any, Checked]) -> Checked | None:
        try:
            return await check
        except ThrottledError as error:
            self._banner(error.message + "\r\n")
        except AuthenticationError as error:
            if "blocked" in error.message:
                self._banner(error.message + "\r\n")
        except PanelError:
            pass
        except Exception:
            log.exception("password or token login of %r failed", username)
        return None

    def auth_completed(self) -> None:
        login = self._candidate
        if login is None or login.ssh_username != self._username:
            # Cannot happen with the callbacks above; refuse rather than guess.
            log.error("authentication completed without a checked login; closing")
            if self._conn is not None:
                self._conn.close()
            return
        self.login = login
        who = login.user.username if login.user else f"visitor {login.ssh_username!r}"
        if login.limited is not None:
            who = login.limited.label
        log.info("%s logged in from %s (%s)", who, self.remote_addr, login.method)
        if login.user is not None:
            # Recorded right away: a password change or "log out everywhere" from now on
            # reaches this connection even before it opens a channel (ControlMaster -N).
            self._spawn(self._open_session_now(), name="ssh-login-session")

    def _banner(self, text: str) -> None:
        if self._conn is not None:
            with contextlib.suppress(Exception):
                self._conn.send_auth_banner(text)

    # -- sessions -----------------------------------------------------------------------------

    def session_requested(self) -> ChannelRouter | bool:
        login = self.login
        if login is None:
            return False
        if self.ended_reason is not None:
            raise asyncssh.ChannelOpenError(
                asyncssh.OPEN_ADMINISTRATIVELY_PROHIBITED, self.ended_reason
            )
        # The dashboard or the command interface, unless the channel asks for SFTP or scp.
        # Either checks the login (`channel_login`) before it serves anything.
        return ChannelRouter(
            PanelSession(self._server, login, self.remote_addr, self._server.address, self),
            lambda: TransferSession(self._server, login, self),
        )


def ended_reason(ending: PanelSession | TransferSession | PanelConnection) -> str:
    """What a session or connection whose login ended is told."""
    if isinstance(ending, TransferSession):
        return TOKEN_ENDED if ending.by_token else TRANSFER_ENDED
    if isinstance(ending, PanelConnection) and ending.login and ending.login.token:
        return TOKEN_ENDED
    return SESSION_ENDED


# AES only: OpenSSH clients pick chacha20-poly1305 first when offered, and asyncssh runs it in
# Python per packet, ~6.6 s of event-loop CPU per GiB uploaded against ~3.8 s for AES-GCM (the
# CPU's AES instructions); uploads were ~35% slower. AES-GCM and AES-CTR are what every
# OpenSSH since 6.2 offers (CTR with the negotiated HMAC); chacha20-only clients are refused.
CIPHERS = (
    "aes128-gcm@openssh.com",
    "aes256-gcm@openssh.com",
    "aes128-ctr",
    "aes192-ctr",
    "aes256-ctr",
)


@dataclass(eq=False)
class GhstServer:
    """The SSH front end of one panel. `start()`, then `close()` (graceful) when done."""

    # Only the domain services are kept (see `__post_init__`): never the pool, Docker or nginx.
    services: Services
    settings: Settings
    host: str | None = None
    port: int | None = None
    # Several serving processes listen on one port (`ghst serve --processes`): SO_REUSEPORT.
    reuse_port: bool = False
    # Only one of several processes cleans up after a crashed run.
    recover_uploads: bool = True
    sessions: set[PanelSession] = field(default_factory=set)
    transfers: set[TransferSession] = field(default_factory=set)
    connections: set[asyncssh.SSHServerConnection] = field(default_factory=set)
    logins: set[PanelConnection] = field(default_factory=set)
    _acceptor: asyncssh.SSHAcceptor | None = None
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)
    _watcher: asyncio.Task[None] | None = None
    # Seconds between checks of every live login when no event says anything changed.
    revocation_poll: float = REVOCATION_SAFETY_POLL
    _logins_events: Subscription | None = None
    _changed_users: set[int] = field(default_factory=set)
    _check_everyone: bool = False
    _logins_changed: asyncio.Event = field(default_factory=asyncio.Event)
    _closing: bool = False
    app_services: Services = field(init=False)
    memory: MemoryReturn = field(default_factory=MemoryReturn)

    def __post_init__(self) -> None:
        self.services = ServiceSet.of(self.services)
        self.app_services = isolated_services(self.services)

    @classmethod
    def for_panel(
        cls,
        panel: Services,
        *,
        host: str | None = None,
        port: int | None = None,
        reuse_port: bool = False,
        recover_uploads: bool = True,
    ) -> GhstServer:
        """The server of `panel` (the composition root, or its `services`), on its settings."""
        return cls(
            panel,
            panel.settings,
            host=host,
            port=port,
            reuse_port=reuse_port,
            recover_uploads=recover_uploads,
        )

    async def start(self) -> None:
        prepare_hosting()
        settings = self.settings
        host_key = await asyncio.to_thread(load_or_create_host_key, settings.data_dir)
        host = settings.ssh_host if self.host is None else self.host
        port = settings.ssh_port if self.port is None else self.port
        self._acceptor = await asyncssh.create_server(
            lambda: PanelConnection(self),
            host,
            port,
            server_host_keys=[host_key],
            server_version="ghst",
            encoding=None,
            line_editor=False,
            keepalive_interval=settings.keepalive_interval,
            keepalive_count_max=settings.keepalive_count,
            login_timeout=LOGIN_TIMEOUT,
            # SFTP and scp are served per channel (`ChannelRouter`): asyncssh's own
            # sftp_factory/allow_scp would replace the dashboard's session on every channel.
            allow_scp=False,
            agent_forwarding=False,
            x11_forwarding=False,
            reuse_address=True,
            reuse_port=self.reuse_port or None,
            encryption_algs=CIPHERS,
        )
        self.memory.start()
        self.host = host
        self.port = self._acceptor.get_port()
        # Operators' events are everyone's: one subscription for every user's logins.
        self._logins_events = self.services.events.subscribe(
            SERVER, kinds=("session",), callback=self._on_logins_event
        )
        self._watcher = asyncio.create_task(self._watch_sessions(), name="ssh-revocation-watcher")
        if self.recover_uploads:
            self.spawn(self._recover_uploads(), name="upload-recovery")
        log.info("ghst listening for SSH on %s:%d", host, self.port)

    async def _recover_uploads(self) -> None:
        """In the background: remove unfinished uploads an earlier run left (a crash)."""
        try:
            removed = await self.services.archives.recover()
        except Exception as error:
            log.warning("could not remove unfinished uploads left by an earlier run: %s", error)
            return
        if removed:
            log.info("removed %d unfinished upload(s) left by an earlier run", len(removed))

    @property
    def address(self) -> str:
        host = self.host or "localhost"
        return host if self.port in (None, 22) else f"-p {self.port} {host}"

    # -- SessionHost --------------------------------------------------------------------------

    def spawn(self, coro: Coroutine[Any, Any, None], name: str) -> asyncio.Task[None]:
        task = asyncio.create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("session task %s failed", task.get_name(), exc_info=task.exception())

    def register(self, session: PanelSession) -> None:
        self.sessions.add(session)
        self.memory.session_started()
        if self._closing:
            session.end(SERVER_STOPPED)

    def unregister(self, session: PanelSession) -> None:
        if session in self.sessions:
            self.sessions.discard(session)
            self.memory.session_ended(still_open=len(self.sessions), app=session.app)

    # -- revocation ---------------------------------------------------------------------------

    def _on_logins_event(self, event: Event) -> None:
        if event.kind == "session" and event.user_id is not None:
            self._changed_users.add(event.user_id)
        else:  # `refresh`: events may have been missed
            self._check_everyone = True
        self._logins_changed.set()

    async def _watch_sessions(self) -> None:
        loop = asyncio.get_running_loop()
        next_full = loop.time() + self.revocation_poll
        while True:
            due = min(next_full, loop.time() + self._until_first_expiry())
            if not self._logins_changed.is_set():
                # asyncio.timeout, not wait_for: on Python 3.11 wait_for can swallow a cancel
                # that comes as the wait ends (an event during close), and close then hangs.
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(max(0.0, due - loop.time())):
                        await self._logins_changed.wait()
            self._logins_changed.clear()
            everyone = self._check_everyone or loop.time() >= due
            users, self._changed_users = self._changed_users, set()
            self._check_everyone = False
            try:
                if everyone:
                    next_full = loop.time() + self.revocation_poll
                    await self.check_sessions()
                elif users:
                    await self.check_sessions(users)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("cannot check for ended sessions; retrying")
                # Nothing told is lost: everything is checked again shortly.
                self._check_everyone = True
                await asyncio.sleep(REVOCATION_RETRY)
                self._logins_changed.set()

    def _until_first_expiry(self) -> float:
        """Seconds until the first live login expires (a login is checked when it does)."""
        # A login opened from now on expires no earlier than a full lifetime from now.
        left = float(self.settings.session_ttl)
        now = datetime.now(UTC)
        expiries = [c.session.expires_at for c in list(self.logins) if c.session is not None]
        for session in list(self.sessions):
            if session.visitor is not None and session.visitor.session is not None:
                expiries.append(session.visitor.session.expires_at)
        if expiries:
            left = min(left, (min(expiries) - now).total_seconds())
        # Not before a moment after it: the database's clock has the last word.
        return max(left, 0.0) + REVOCATION_RETRY

    async def check_sessions(self, user_ids: Collection[int] | None = None) -> None:
        """End the live sessions (dashboards and file transfers) that were revoked, expired or
        whose user was blocked: those of `user_ids` (whose logins changed), or all."""

        def concerned(user_id: int | None) -> bool:
            return user_ids is None or user_id in user_ids

        live: dict[uuid.UUID, list[PanelSession | TransferSession | PanelConnection]] = {}
        # Each logged-in connection: once its login ends the connection closes, whatever
        # channels it has (none, with OpenSSH's ControlMaster -N).
        for connection in list(self.logins):
            login = connection.session
            if login is not None and connection.ended_reason is None and concerned(login.user_id):
                live.setdefault(login.jti, []).append(connection)
        for session in list(self.sessions):
            # Read on every check: a visitor gets a session when they sign up or log in.
            login_session = session.visitor.session if session.visitor else None
            if login_session is not None and concerned(login_session.user_id):
                live.setdefault(login_session.jti, []).append(session)
        # A user's file transfer carries its connection's login (see TransferSession), so
        # "log out everywhere" ends it too; one without it (a visitor's) ends if the user is
        # blocked.
        transfers: dict[int, list[TransferSession]] = {}
        for transfer in list(self.transfers):
            if not concerned(transfer.user_id):
                continue
            if transfer.jti is not None:
                live.setdefault(transfer.jti, []).append(transfer)
            elif transfer.user_id is not None:
                transfers.setdefault(transfer.user_id, []).append(transfer)
        if live:
            for jti in await self.services.sessions.ended(live.keys()):
                for ending in live.get(jti, []):
                    ending.end(ended_reason(ending))
        if transfers:
            for user_id in await self.services.accounts.blocked_among(transfers.keys()):
                for transfer in transfers[user_id]:
                    transfer.end(ACCOUNT_BLOCKED)

    # -- shutdown -----------------------------------------------------------------------------

    async def close(self, grace: float | None = None) -> None:
        """Stop accepting, warn everyone, wait `grace` s, end every session, close connections."""
        if self._closing:
            return
        self._closing = True
        grace = self.settings.shutdown_grace if grace is None else grace
        if self._acceptor is not None:
            self._acceptor.close()
        sessions = list(self.sessions)
        if sessions:
            log.info("shutting down: %d session(s) get %.1f s of notice", len(sessions), grace)
        for session in sessions:
            if session.app is not None:
                with contextlib.suppress(Exception):
                    session.app.announce_shutdown(grace)
        if sessions and grace > 0:
            waits = [asyncio.ensure_future(session.wait()) for session in sessions]
            await asyncio.wait(waits, timeout=grace)
            for waiter in waits:
                waiter.cancel()
        for session in list(self.sessions):
            session.end(SERVER_STOPPED)
        for transfer in list(self.transfers):
            transfer.end(SERVER_STOPPED)  # unfinished uploads are dropped, nothing half-stored
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=APPS_EXIT_TIMEOUT)
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=1.0)
        if self._logins_events is not None:
            self._logins_events.close()
        if self._watcher is not None:
            self._watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watcher
        connections = list(self.connections)
        if connections:
            # A client leaves by itself once its last channel closed, after it showed what
            # that channel last said; closing the connection first can cut that short (OpenSSH
            # drops the output it has not yet written to its terminal, and exits with 255).
            leaving = [asyncio.ensure_future(conn.wait_closed()) for conn in connections]
            _, pending = await asyncio.wait(leaving, timeout=CLIENTS_LEAVE_TIMEOUT)
            for waiter in pending:
                waiter.cancel()
        for conn in connections:
            conn.close()
        if connections:
            closing = [asyncio.ensure_future(conn.wait_closed()) for conn in connections]
            _, pending = await asyncio.wait(closing, timeout=CONNECTIONS_CLOSE_TIMEOUT)
            for conn in connections:
                if not conn.is_closed():
                    conn.abort()
            for waiter in pending:
                waiter.cancel()
        if self._tasks:  # e.g. the closed connections' logins being revoked
            await asyncio.wait(set(self._tasks), timeout=1.0)
        if self._acceptor is not None:
            await self._acceptor.wait_closed()
        self.memory.close()
        log.info("SSH server stopped")
