"""Who is at the keyboard, as the front end (SSH server or local admin) authenticated them."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field

from core.actor import Actor
from core.identity.accounts import User
from core.identity.keys import PublicKey
from core.identity.sessions import Session


@dataclass
class Visitor:
    remote_addr: str
    # The name the SSH client logged in with: prefills the sign-up form.
    ssh_username: str
    # A key the client offered that no account has yet: sign-up offers to attach it.
    presented_key: PublicKey | None = None
    user: User | None = None
    session: Session | None = None
    # One id on every audit entry this dashboard session writes.
    request_id: str = field(default_factory=lambda: uuid.uuid4().hex[:16])
    # The local `ghst admin` acts as the system; over SSH the admin screens act as the user's
    # role allows (`Actor.for_staff`).
    operator: Actor | None = None
    # While an admin views a user's dashboard (`viewing_as`): the viewer actor the user's
    # screens act as (read-only, in core), and the admin's own visitor, for the admin screens.
    viewing: Actor | None = None
    admin: Visitor | None = None

    @property
    def signed_in(self) -> bool:
        return self.user is not None and self.session is not None

    @property
    def actor(self) -> Actor:
        """Who the services see acting: the signed-in user, on their own rows (while viewing:
        the admin, reading the viewed user's rows)."""
        if self.viewing is not None:
            return self.viewing
        if self.user is None:
            raise RuntimeError("nobody has signed in yet")
        return self.acting(self.user)

    def viewing_as(self, user: User, viewer: Actor) -> Visitor:
        """The visitor the user's screens see while this admin views `user`'s dashboard."""
        return Visitor(
            self.remote_addr,
            self.ssh_username,
            user=user,
            session=self.session,
            request_id=self.request_id,
            viewing=viewer,
            admin=self,
        )

    def acting(self, user: User) -> Actor:
        """`user` acting from this dashboard session (its address and request id)."""
        return Actor.for_user(user).acting_from(
            "dashboard", source_address=self.remote_addr, request_id=self.request_id
        )

    @property
    def is_staff(self) -> bool:
        """Admins and operators see the admin screens (not from inside a viewed dashboard)."""
        if self.viewing is not None:
            return False
        if self.operator is not None:
            return True
        return self.user is not None and (self.user.is_admin or self.user.role == "operator")

    @property
    def staff_actor(self) -> Actor:
        """Who the admin screens act as: refused (PermissionDenied) to other users. Audited
        with the admin origin, this session's address and request id."""
        if self.admin is not None:
            return self.admin.staff_actor
        if self.operator is not None:
            actor = self.operator
        elif self.user is None:
            raise RuntimeError("nobody has signed in yet")
        else:
            actor = Actor.for_staff(self.user)
        return actor.acting_from(
            "admin", source_address=self.remote_addr, request_id=self.request_id
        )
