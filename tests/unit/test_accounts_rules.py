"""The sign-up rules, as a user meets them."""

from __future__ import annotations

import pytest

from core.errors import ValidationError
from core.identity.accounts import validate_email, validate_password, validate_username


@pytest.mark.parametrize("name", ["abc", "alice", "a-1", "x" * 32, "dev-team-2"])
def test_good_usernames(name: str) -> None:
    assert validate_username(name) == name


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("ab", "3 to 32"),
        ("x" * 33, "3 to 32"),
        ("Alice", "lowercase"),
        ("1abc", "starts with a letter"),
        ("-abc", "starts with a letter"),
        ("al_ce", "lowercase letters, digits and hyphens"),
        ("al ce", "lowercase letters, digits and hyphens"),
        ("élise", "lowercase letters, digits and hyphens"),
    ],
)
def test_bad_usernames_say_why(name: str, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        validate_username(name)


@pytest.mark.parametrize("email", ["a@b.co", "first.last+tag@mail.example.org"])
def test_good_emails(email: str) -> None:
    assert validate_email(f"  {email} ") == email


@pytest.mark.parametrize("email", ["", "plain", "a@b", "a b@c.de", "a@@b.de", "@b.de", "a@.de"])
def test_bad_emails(email: str) -> None:
    with pytest.raises(ValidationError, match="not a valid email address"):
        validate_email(email)


def test_password_rules() -> None:
    assert validate_password("0123456789") == "0123456789"
    with pytest.raises(ValidationError, match="at least 10 characters"):
        validate_password("short")
    with pytest.raises(ValidationError, match="only spaces"):
        validate_password(" " * 12)
    with pytest.raises(ValidationError, match="at most 1024"):
        validate_password("x" * 1025)
