"""Text a tenant produced (build output, compose output, app logs), made safe to store and show.

A tenant's program may print any bytes. PostgreSQL refuses NUL and lone surrogates in text, and
a viewer's terminal obeys escape sequences (colours, cursor moves, title changes, OSC 52
clipboard writes). `clean_log_text` is applied once where such text enters the panel:

- invalid UTF-8 becomes U+FFFD (`clean_log_bytes`), and so do lone surrogates;
- escape sequences (CSI, OSC, DCS and the like, 7-bit and 8-bit forms) are removed whole;
- every other control character except newline and tab is shown as U+FFFD; a carriage
  return is dropped (progress bars redraw a line with it).

The result is idempotent: cleaning clean text changes nothing.
"""

from __future__ import annotations

import re

REPLACEMENT = "\ufffd"

# ESC [ ... final byte, ESC ] ... BEL or ST, ESC P/X/^/_ ... ST, and the 8-bit forms (CSI is
# U+009B, OSC U+009D, DCS U+0090, SOS U+0098, PM U+009E, APC U+009F, ST U+009C). An unfinished
# string sequence runs to the end of the text. Then any other two-byte ESC sequence.
_ESCAPES = re.compile(
    r"(?:\x1b\[|\x9b)[\x20-\x3f]*[\x40-\x7e]?"
    r"|(?:\x1b[\]PX^_]|[\x90\x98\x9d\x9e\x9f])[^\x07\x1b\x9c]*(?:\x07|\x1b\\|\x9c)?"
    r"|\x1b[\x20-\x2f]*[\x30-\x7e]?"
)
_CONTROLS = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ud800-\udfff]")


def clean_log_text(text: str) -> str:
    """`text` without escape sequences, NUL, other controls or lone surrogates (see above)."""
    if text.isprintable():  # the common case: nothing to do (newline and tab are not printable)
        return text
    text = _ESCAPES.sub("", text).replace("\r", "")
    return _CONTROLS.sub(REPLACEMENT, text)


def clean_log_bytes(data: bytes) -> str:
    """Bytes of unknown encoding as clean text: UTF-8, invalid sequences as U+FFFD."""
    return clean_log_text(data.decode("utf-8", "replace"))
