"""The one exception root of ghst, with messages written for the user.

    PanelError                 (message, title) shown once per front end
    ├── ValidationError        bad input: a name, an email, a password, a key line
    ├── AuthenticationError    wrong credentials; never says which part was wrong
    ├── ThrottledError         too many failed attempts
    ├── PermissionDenied       the user does not own what they touch
    ├── NotFoundError          nothing by that name (for this user)
    ├── ConflictError          already taken (username, email, key)
    ├── QuotaExceededError     the upload does not fit in the user's storage quota
    ├── SuspendedError         the project is suspended for non-payment (says what to do)
    └── UnavailableError       a backing service (PostgreSQL, Redis, S3, Docker) is down

Front ends translate these once: the TUI shows a notification or modal, the command interface
prints the message to stderr and exits with `exit_code`, SFTP maps them to statuses. The codes
are those of the commands over SSH (commands/exit_codes.py), shared by the operators' `ghst`:
1 failed, 2 usage or invalid input, 3 not found, 4 forbidden or out of scope, 5 suspended or
over a limit, 75 try again later.
"""

from __future__ import annotations


class PanelError(Exception):
    title = "Error"
    exit_code = 1

    def __init__(self, message: str, title: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if title is not None:
            self.title = title

    def __str__(self) -> str:
        return self.message


class ValidationError(PanelError):
    title = "Invalid input"
    exit_code = 2


class AuthenticationError(PanelError):
    title = "Login failed"
    exit_code = 4


class ThrottledError(PanelError):
    title = "Too many attempts"
    exit_code = 75


class PermissionDenied(PanelError):
    title = "Not allowed"
    exit_code = 4


class NotFoundError(PanelError):
    title = "Not found"
    exit_code = 3


class ConflictError(PanelError):
    title = "Already exists"
    exit_code = 1


class QuotaExceededError(PanelError):
    title = "Storage quota exceeded"
    exit_code = 5


class SuspendedError(PanelError):
    title = "Project suspended"
    exit_code = 5


class UnavailableError(PanelError):
    title = "Service unavailable"
    exit_code = 75
