"""`${VAR}`, `${VAR:-default}`, `${VAR:?error}`, `${VAR:+alt}`, `$VAR` and `$$` as compose
expands them, from the variables the panel gives (never the panel's own environment), while
copying the loaded tree: bounded, with keys and scalars normalised.

The copy is plain data that JSON holds as it is (core.runtime.compose.state): strings of valid
Unicode, finite numbers. Its size is bounded in characters as well as in values, since an alias
repeats a long string and `$VAR` repeats a long variable without the text growing.
"""

from __future__ import annotations

import datetime
import math
import re
from collections.abc import Mapping
from typing import Any

from core.runtime.compose.errors import ComposeRejected
from core.runtime.compose.limits import MAX_DEPTH, MAX_EXPANDED_CHARS, MAX_NODES
from core.runtime.compose.values import quoted

_VARIABLE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


class Interpolator:
    """Copies a loaded YAML tree: bounded (anchors expanded), scalars normalised, `$` expanded."""

    def __init__(self, variables: Mapping[str, str]) -> None:
        self.variables = variables
        self.nodes = 0
        self.chars = 0  # characters of the copy so far (keys and strings)

    def copy(self, value: Any, depth: int = 0) -> Any:
        self.nodes += 1
        if self.nodes > MAX_NODES or depth > MAX_DEPTH:
            raise ComposeRejected(
                "The compose file is too large once its anchors are expanded (or it refers to "
                "itself)."
            )
        if isinstance(value, dict):
            return {
                self._counted(_valid_unicode(_key(key))): self.copy(item, depth + 1)
                for key, item in value.items()
                if key != "<<"  # merge keys are already merged by the loader
            }
        if isinstance(value, list):
            return [self.copy(item, depth + 1) for item in value]
        if isinstance(value, str):
            return _valid_unicode(self.interpolate(value))
        if isinstance(value, float) and not math.isfinite(value):
            raise ComposeRejected(
                f"The compose file holds the number {value} (.inf or .nan), which compose does "
                "not use: quote it if it is meant as text."
            )
        if value is None or isinstance(value, (bool, int, float)):
            return value
        if isinstance(value, (datetime.date, datetime.datetime)):
            return value.isoformat()
        raise ComposeRejected(
            f"The compose file holds a {type(value).__name__} value, which compose does not use."
        )

    def _counted(self, text: str) -> str:
        self.chars += len(text)
        if self.chars > MAX_EXPANDED_CHARS:
            raise ComposeRejected(
                f"The compose file is larger than {MAX_EXPANDED_CHARS // (1 << 20)} MiB once "
                "its anchors and variables are expanded; write the repeated parts out, or share "
                "less."
            )
        return text

    def interpolate(self, text: str) -> str:
        if "$" not in text:
            return self._counted(text)
        out: list[str] = []
        index, end = 0, len(text)
        while index < end:
            char = text[index]
            following = text[index + 1] if index + 1 < end else ""
            if char != "$":
                out.append(self._counted(char))
                index += 1
            elif following == "$":
                out.append(self._counted("$"))
                index += 2
            elif following == "{":
                closing = _closing_brace(text, index + 2)
                if closing < 0:
                    raise ComposeRejected(
                        f"The value {quoted(text)} has a '${{' without its '}}'; write '$$' for a "
                        "literal '$'."
                    )
                out.append(self._counted(self._expand(text[index + 2 : closing], text)))
                index = closing + 1
            else:
                match = _VARIABLE.match(text, index + 1)
                if match is None:
                    out.append(self._counted("$"))
                    index += 1
                else:
                    out.append(self._counted(self.variables.get(match.group(), "")))
                    index = match.end()
        return "".join(out)

    def _expand(self, inner: str, whole: str) -> str:
        match = _VARIABLE.match(inner)
        if match is None:
            raise ComposeRejected(
                f"The value {quoted(whole)} has an invalid ${{...}} substitution."
            )
        name, rest = match.group(), inner[match.end() :]
        value = self.variables.get(name)
        if not rest:
            return value or ""
        for operator in (":-", ":?", ":+", "-", "?", "+"):
            if not rest.startswith(operator):
                continue
            argument = self.interpolate(rest[len(operator) :])
            present = bool(value) if operator.startswith(":") else value is not None
            if operator.endswith("-"):
                return value if present and value is not None else argument
            if operator.endswith("?"):
                if present and value is not None:
                    return value
                raise ComposeRejected(
                    f"The compose file needs the variable {name}: {argument or 'it is not set'}. "
                    "Set it in the project's environment variables."
                )
            return argument if present else ""
        raise ComposeRejected(f"The value {quoted(whole)} has an invalid ${{...}} substitution.")


def _valid_unicode(text: str) -> str:
    """`text`, if UTF-8 can hold it: a YAML escape such as "\\ud800" makes a lone surrogate,
    which neither compose, a file nor the database takes."""
    if not text.isascii():
        try:
            text.encode()
        except UnicodeEncodeError:
            raise ComposeRejected(
                f"The value {quoted(text)} holds a character that is not valid Unicode (a lone "
                "surrogate such as \\ud800)."
            ) from None
    return text


def _closing_brace(text: str, start: int) -> int:
    depth, index = 1, start
    while index < len(text):
        if text.startswith("${", index):
            depth += 1
            index += 2
            continue
        if text[index] == "}":
            depth -= 1
            if depth == 0:
                return index
        index += 1
    return -1


def _key(key: Any) -> str:
    if isinstance(key, bool):
        return "true" if key else "false"
    if isinstance(key, (str, int, float)):
        return str(key)
    raise ComposeRejected("The compose file has a mapping key that is not a plain name.")
