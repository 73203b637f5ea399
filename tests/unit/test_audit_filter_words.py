"""`:audit`'s `/` words as core reads them: each key narrows one column, anything else is text."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from core.admin.service import audit_filter
from core.audit.entries import AuditFilter
from core.errors import ValidationError

NOW = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)


def test_every_word_narrows_its_column_and_the_rest_is_text() -> None:
    found, actor = audit_filter(
        "since:2h actor:Bob action:Login target:shop outcome:REFUSED key add", NOW
    )
    assert actor == "Bob"
    assert found == AuditFilter(
        action="login",
        target="shop",
        outcome="refused",
        since=NOW - timedelta(hours=2),
        text="key add",
    )


@pytest.mark.parametrize(
    ("word", "ago"),
    [("90s", timedelta(seconds=90)), ("30m", timedelta(minutes=30)), ("7d", timedelta(days=7))],
)
def test_since_takes_seconds_minutes_hours_or_days(word: str, ago: timedelta) -> None:
    assert audit_filter(f"since:{word}", NOW)[0].since == NOW - ago


def test_an_empty_value_or_an_unknown_key_is_text() -> None:
    found, actor = audit_filter("actor: when:today", NOW)
    assert (found, actor) == (AuditFilter(text="actor: when:today"), None)


@pytest.mark.parametrize("words", ["since:2y", "since:-1h", "since:99999999h", "outcome:maybe"])
def test_a_bad_value_is_refused_with_a_reason(words: str) -> None:
    with pytest.raises(ValidationError):
        audit_filter(words, NOW)
