"""What sign-up and log-in share: attaching the key the visitor connected with, and the names
and rules the forms show."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.content import Content
from textual.widgets import Static

from core.actor import Actor
from core.errors import PanelError, ValidationError
from core.identity.accounts import MIN_PASSWORD_LENGTH, User, validate_username
from core.identity.keys import KEY_NAME_PATTERN, PublicKey
from core.services import Services
from tui.formatting import key_type
from tui.widgets.form import FormCheckbox

USERNAME_RULE = "3-32 lowercase letters, digits or hyphens; a letter first."
PASSWORD_RULE = f"At least {MIN_PASSWORD_LENGTH} characters."


def is_valid_username(name: str) -> bool:
    try:
        validate_username(name)
    except ValidationError:
        return False
    return True


def key_name(key: PublicKey, remote_addr: str = "") -> str:
    """The key's comment when it makes a valid key name, else where it came from.

    SSH clients never send the comment, so a key attached on connecting is named after its
    type and the address it came from (e.g. "ed25519 from 203.0.113.9"): enough to tell it
    apart later from a laptop's or a CI runner's.
    """
    comment = key.comment.strip()[:64]
    if comment and KEY_NAME_PATTERN.match(comment):
        return comment
    named = f"{key_type(key.algorithm)} from {remote_addr}"[:64]
    return named if remote_addr and KEY_NAME_PATTERN.match(named) else key_type(key.algorithm)


def describe_key(key: PublicKey) -> str:
    comment = f" ({key.comment})" if key.comment else ""
    return f"The {key_type(key.algorithm)} key you connected with{comment}"


def attach_key_choice(key: PublicKey) -> ComposeResult:
    """The "attach the key you connected with" checkbox (checked) and its explanation."""
    yield FormCheckbox(Content(f"Attach key {key.fingerprint}"), value=True, id="attach-key")
    yield Static(
        f"{describe_key(key)} will log you in next time.", classes="attach-hint", markup=False
    )


async def attach_key(
    panel: Services, user: User, key: PublicKey, remote_addr: str, *, request_id: str | None = None
) -> str | None:
    """Add `key` to the account; None when done, else why not (for a warning, not a failure)."""
    actor = Actor.for_user(user).acting_from(
        "dashboard", source_address=remote_addr, request_id=request_id
    )
    try:
        await panel.keys.add_parsed(actor, key, key_name(key, remote_addr))
    except PanelError as error:
        return error.message
    return None
