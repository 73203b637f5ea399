"""Who acts: every service call names its actor, and services check rights against it.

    Actor.for_user(user)     a signed-in user, acting on their own rows (every scope)
    Actor.for_admin(user)    a user with the admin role, acting as an operator
    Actor.for_staff(user)    the admin app's actor: an admin, or an operator (reads every
                             account's rows through core.admin, changes nothing)
    Actor.for_token(...)     an access token: its owner's rows, limited to scopes and projects
    Actor.system(name)       the panel itself (the worker, the billing run, `ghst` on the host)
    Actor.viewing_as(a, u)   an admin looking at user u's own dashboard: reads u's rows as u
                             would, changes nothing, sees no secret; audited as the admin

A service asks two things of the actor: whose rows it may touch (`owner_id`, or any owner
for admins and the system) and whether a scope is granted (`require`). A refusal is a
`PermissionDenied` with a message for the user; audit records `label`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

from core.errors import NotFoundError, PermissionDenied

if TYPE_CHECKING:
    from core.identity.accounts import User

ActorKind = Literal["user", "admin", "token", "system", "operator", "viewer"]
# Where an action came from, as the audit log records it; "internal" when nobody said.
Origin = Literal["dashboard", "command", "sftp", "admin", "scheduler", "cli", "ssh", "internal"]

# What an access token may be granted. A user or admin holds them all; `admin` only counts for
# admins (a user's token cannot raise its owner's rights).
SCOPES = frozenset({"read", "logs", "deploy", "env:write", "admin"})
# What a viewer (an admin looking at a user's dashboard) may do: read, nothing else.
VIEWER_SCOPES = frozenset({"read", "logs"})


@dataclass(frozen=True)
class Actor:
    kind: ActorKind
    # The account acting (for a token: its owner); None for the system.
    user_id: int | None
    # Shown in audit entries and messages: a username, "token <prefix> of <username>", "system:<name>".
    label: str
    scopes: frozenset[str] = field(default=SCOPES)
    # A token limited to some projects names them here; None means every project of its owner.
    projects: frozenset[str] | None = None
    token_id: int | None = None
    # Set by the front ends (`acting_from`) for the audit log: where the request came from, the
    # client's address, and one id shared by every entry one request (an SSH command, a
    # dashboard session, an SFTP session) writes.
    origin: Origin = "internal"
    source_address: str | None = None
    request_id: str | None = None
    # A viewer's (`viewing_as`) account looked at: whose rows it reads (`owner_id`), and its
    # name for the read-only message. `user_id` stays the admin's, so what is recorded while
    # viewing names the admin.
    viewing: int | None = None
    viewing_name: str | None = None

    def acting_from(
        self, origin: Origin, *, source_address: str | None = None, request_id: str | None = None
    ) -> Actor:
        """This actor, as seen coming from `origin` (the rest of it unchanged)."""
        return dataclasses.replace(
            self, origin=origin, source_address=source_address, request_id=request_id
        )

    @classmethod
    def for_user(cls, user: User) -> Actor:
        return cls("user", user.id, user.username)

    @classmethod
    def for_admin(cls, user: User) -> Actor:
        if not user.is_admin:
            raise PermissionDenied("This needs an administrator.")
        return cls("admin", user.id, user.username)

    @classmethod
    def for_staff(cls, user: User) -> Actor:
        """The admin app's actor. An operator (role `operator`) is a read-only admin: it may
        read what core.admin shows, and `is_operator` stays False for it, so every service
        that changes something refuses it as it refuses a user."""
        if user.is_admin:
            return cls.for_admin(user)
        if user.role == "operator":
            return cls("operator", user.id, user.username, scopes=frozenset({"read", "logs"}))
        raise PermissionDenied("This needs an administrator or an operator.")

    @classmethod
    def for_token(
        cls,
        user: User,
        *,
        token_id: int,
        prefix: str,
        scopes: frozenset[str],
        projects: frozenset[str] | None = None,
    ) -> Actor:
        granted = scopes & SCOPES
        if "admin" in granted and not user.is_admin:
            granted = granted - {"admin"}
        return cls(
            "token",
            user.id,
            f"token {prefix} of {user.username}",
            scopes=frozenset(granted),
            projects=projects,
            token_id=token_id,
        )

    @classmethod
    def viewing_as(cls, staff: Actor, user: User) -> Actor:
        """`staff` (an admin, or the system behind `ghst admin`) looking at `user`'s own
        dashboard. Only admins: looking through a user's eyes (their sessions' addresses,
        their audit log) is more than an operator's read-only view of the tables. Every
        write is refused (`require`, `require_change`) and no secret is handed out."""
        staff.require_admin()
        if staff.viewing is not None:
            raise PermissionDenied(staff.read_only_message)
        return cls(
            "viewer",
            staff.user_id,
            f"{staff.label} viewing as {user.username}",
            scopes=VIEWER_SCOPES,
            origin=staff.origin,
            source_address=staff.source_address,
            request_id=staff.request_id,
            viewing=user.id,
            viewing_name=user.username,
        )

    @classmethod
    def system(cls, name: str) -> Actor:
        return cls("system", None, f"system:{name}")

    @property
    def is_operator(self) -> bool:
        """Acts on every owner's rows: an admin, an admin-scoped token of an admin, the system."""
        if self.kind in ("admin", "system"):
            return True
        return self.kind == "token" and "admin" in self.scopes  # never a viewer

    @property
    def reads_everything(self) -> bool:
        """May read every account's rows in the admin app: an operator (read-only) too."""
        return self.is_operator or self.kind == "operator"

    def require_staff(self) -> None:
        if not self.reads_everything:
            raise PermissionDenied("This needs an administrator or an operator.")

    def require_admin(self) -> None:
        """A change made from the admin app: admins (and the system) only, never operators."""
        if self.is_viewer:
            raise PermissionDenied(self.read_only_message)
        if not self.is_operator:
            raise PermissionDenied(
                "This needs an administrator."
                + (" An operator can look, not change." if self.kind == "operator" else "")
            )

    @property
    def is_viewer(self) -> bool:
        return self.viewing is not None

    @property
    def read_only_message(self) -> str:
        return f"Viewing as {self.viewing_name}: read-only."

    @property
    def sees_secrets(self) -> bool:
        """Env values and the like: never handed to a viewer."""
        return not self.is_viewer

    @property
    def recorded_kind(self) -> str:
        """The kind the audit log records: a viewer is the admin (or system) behind it."""
        if self.kind != "viewer":
            return self.kind
        return "admin" if self.user_id is not None else "system"

    def require_change(self) -> None:
        """Before any write that no scope guards (keys, tokens, sessions, password, payments):
        a viewer changes nothing."""
        if self.is_viewer:
            raise PermissionDenied(self.read_only_message)

    def may(self, scope: str) -> bool:
        return scope in self.scopes

    def require(self, scope: str) -> None:
        if not self.may(scope):
            if self.is_viewer:
                raise PermissionDenied(self.read_only_message)
            raise PermissionDenied(f"This needs the {scope!r} scope, which {self.label} lacks.")

    def require_project(self, name: str) -> None:
        if self.projects is not None and name not in self.projects:
            raise PermissionDenied(f"{self.label} is not allowed to act on project {name!r}.")

    def may_own(self, owner_id: int) -> bool:
        """May this actor touch a row owned by `owner_id`?"""
        own = self.viewing if self.viewing is not None else self.user_id
        return self.is_operator or own == owner_id

    @property
    def owner_id(self) -> int:
        """The account whose rows this actor works on (a viewer: the account it looks at);
        the system and admins must name one."""
        if self.viewing is not None:
            return self.viewing
        if self.user_id is None:
            raise PermissionDenied("The system acts on no account of its own.")
        return self.user_id

    def on_behalf_of(self, owner_id: int | None = None) -> int:
        """The account whose rows a call touches: the actor's own, or `owner_id` when the call
        names one. Another tenant's account is not found, as if it did not exist."""
        if owner_id is None:
            return self.owner_id
        if not self.may_own(owner_id):
            raise NotFoundError("No such account.")
        return owner_id

    def refuse_token(self, what: str) -> None:
        """Keys, the password and logins stay with the person: a leaked token cannot take
        the account over."""
        if self.kind == "token":
            raise PermissionDenied(f"A token cannot {what}.")
