"""The one cleaner of text a tenant produced: nothing that drives a terminal or that
PostgreSQL refuses gets through, and clean text is left as it is."""

from __future__ import annotations

import pytest

from core.log_text import REPLACEMENT, clean_log_bytes, clean_log_text


@pytest.mark.parametrize(
    ("raw", "clean"),
    [
        ("plain text é€😀\twith a tab\n", "plain text é€😀\twith a tab\n"),
        ("a\x00b", f"a{REPLACEMENT}b"),
        ("\x1b[31mred\x1b[0m", "red"),
        ("\x1b]0;title\x07after", "after"),
        ("\x1b]52;c;cm0gLXJmIH4=\x1b\\after", "after"),
        ("\x1bPq#0;2;0;0;0\x1b\\after", "after"),
        ("\x9b6n\x9d0;title\x9cafter", "after"),
        ("\x1b(0line\x1b(B", "line"),
        ("10%\r20%\r\n", "10%20%\n"),
        ("bell\x07 back\x08 del\x7f", f"bell{REPLACEMENT} back{REPLACEMENT} del{REPLACEMENT}"),
        ("lone \ud800 surrogate", f"lone {REPLACEMENT} surrogate"),
        ("unfinished \x1b]0;title", "unfinished "),
        ("trailing escape \x1b", "trailing escape "),
    ],
)
def test_clean_log_text(raw: str, clean: str) -> None:
    assert clean_log_text(raw) == clean
    assert clean_log_text(clean) == clean  # idempotent
    clean.encode("utf-8")


def test_clean_log_bytes_replaces_invalid_utf8() -> None:
    assert clean_log_bytes(b"ok \xff\xfe \xe2\x82 \xc3\xa9\x00") == (
        f"ok {REPLACEMENT}{REPLACEMENT} {REPLACEMENT} é{REPLACEMENT}"
    )
