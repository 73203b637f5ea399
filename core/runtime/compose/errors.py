"""What compose apps raise; each front end shows the message once.

ValidationError
├── ComposeRejected          not a compose file, or it asks for what this panel does not allow
├── ComposeFailed            compose could not start the app: why, with the end of its output
└── ComposeStateUnreadable   a saved stack is in a format this version cannot read
"""

from __future__ import annotations

from core.errors import ValidationError


class ComposeRejected(ValidationError):
    """The compose file is unusable or asks for something the panel does not allow."""

    title = "Compose file refused"


class ComposeFailed(ValidationError):
    """Compose could not start (or stop) the app; the message ends with compose's last lines."""

    title = "Compose failed"


class ComposeStateUnreadable(ValidationError):
    """A saved compose stack (core.runtime.compose.state) is in a format this code cannot read."""

    title = "Compose stack unreadable"
