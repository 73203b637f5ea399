"""Dockerfiles read the way dockerd's classic builder reads them, and written back one line each.

The image policy (core/runtime/image_policy.py) must know exactly which images a build will use, so it
parses a tenant's Dockerfile with the classic builder's rules rather than by pattern:

- parser directives at the top (`# escape=` with a backslash or a backtick), a byte-order mark;
- line continuations (the escape character at the end of a line, blanks after it allowed),
  comment and blank lines inside a continued instruction skipped;
- the leading `--flag=value` words of an instruction, with the builder's own quoting rules;
- word expansion as the builder does it: quotes, escapes, `$X`, `${X}`, `${X:-default}` and
  `${X:+alternative}` (anything else is an error, as in the builder).

`render` writes a parsed file back with one instruction per line and the same escape directive,
so the text dockerd reads is the text the policy checked: nothing depends on how either side
joins continued lines.

    ValidationError
    └── DockerfileError   the Dockerfile cannot be read, or a word of it cannot be expanded
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass

from core.errors import ValidationError

MAX_DOCKERFILE_BYTES = 1 << 20
_ESCAPE_DIRECTIVE = re.compile(r"^#[ \t]*escape[ \t]*=[ \t]*(.).*$")
_WHITESPACE = re.compile(r"[\t\v\f\r ]+")
# Go's unicode.IsSpace for the byte values the builder's flag reader looks at.
_GO_SPACE = frozenset("\t\n\v\f\r \x85\xa0")
_SPECIAL_PARAMETERS = frozenset("@*#?-$!0")
_FLAG_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9-]*$")


class DockerfileError(ValidationError):
    title = "Dockerfile refused"


@dataclass(frozen=True)
class Instruction:
    keyword: str  # upper case: FROM, COPY, ...
    flags: tuple[tuple[str, str | None], ...]  # leading --name[=value] words, quotes removed
    args: str  # the rest, trimmed, as written
    line: int  # where it starts (1-based)

    def flag(self, name: str) -> str | None:
        for key, value in self.flags:
            if key.lower() == name:
                return "" if value is None else value
        return None

    @property
    def shown(self) -> str:
        flags = " ".join(_render_flag(key, value) for key, value in self.flags)
        # Arguments that start like a flag are told apart from flags by a "--" before them.
        args = f"-- {self.args}" if self.args.startswith("--") else self.args
        return " ".join(part for part in (self.keyword, flags, args) if part)


@dataclass(frozen=True)
class Dockerfile:
    escape: str  # "\\" or "`"
    instructions: tuple[Instruction, ...]


def parse(text: str) -> Dockerfile:
    """The instructions of a Dockerfile, as the classic builder splits them."""
    if len(text.encode("utf-8", "surrogateescape")) > MAX_DOCKERFILE_BYTES:
        raise DockerfileError("The Dockerfile is larger than 1 MiB.")
    lines = text.removeprefix("\ufeff").split("\n")
    lines = [line.removesuffix("\r") for line in lines]
    escape = "\\"
    directives_done = False
    instructions: list[Instruction] = []
    index = 0

    def directive(raw: str) -> None:
        nonlocal escape, directives_done
        if directives_done:
            return
        found = _ESCAPE_DIRECTIVE.match(raw.lower())
        if found is None:
            directives_done = True
            return
        if found.group(1) not in ("\\", "`"):
            raise DockerfileError(
                f"The escape directive names {found.group(1)!r}: only \\ and ` are allowed."
            )
        escape = found.group(1)

    def continued(line: str) -> tuple[str, bool]:
        found = re.search(re.escape(escape) + r"[ \t]*$", line)
        if found is None:
            return line, False
        return line[: found.start()], True

    while index < len(lines):
        raw = lines[index].lstrip()
        index += 1
        directive(raw)
        if raw.startswith("#"):
            continue
        start = index
        line, more = continued(raw)
        if not more and not line:
            continue
        while more and index < len(lines):
            nxt = lines[index]
            index += 1
            directive(nxt)
            stripped = nxt.lstrip()
            if stripped.startswith("#") or not stripped:
                continue
            part, more = continued(nxt)
            line += part
        instructions.append(_instruction(line, start))
    return Dockerfile(escape, tuple(instructions))


def render(dockerfile: Dockerfile, replaced: Mapping[int, Instruction] | None = None) -> str:
    """The Dockerfile written back, one instruction per line; `replaced` maps the index of an
    instruction to the one written instead."""
    replaced = replaced or {}
    out = [] if dockerfile.escape == "\\" else [f"# escape={dockerfile.escape}"]
    for number, instruction in enumerate(dockerfile.instructions):
        out.append(replaced.get(number, instruction).shown)
    return "\n".join(out) + "\n"


def parse_line(line: str, number: int = 1) -> Instruction:
    """One instruction (an ONBUILD trigger, say) on its own."""
    return _instruction(line, number)


def _instruction(line: str, number: int) -> Instruction:
    parts = _WHITESPACE.split(line.strip(), maxsplit=1)
    keyword = parts[0].upper()
    rest = parts[1] if len(parts) == 2 else ""
    args, words = _builder_flags(rest)
    flags: list[tuple[str, str | None]] = []
    for word in words:
        name, equals, value = word[2:].partition("=")
        # A name the builder knows is plain; anything else (`--"chown --from"=x`) would read
        # differently once written back, so it is refused (the builder refuses it too).
        if not _FLAG_NAME.match(name):
            raise DockerfileError(f"Line {number}: {keyword} has an unknown option --{name}.")
        if name.lower() in {known.lower() for known, _ in flags}:
            raise DockerfileError(f"Line {number}: {keyword} has the option --{name} twice.")
        flags.append((name, value if equals else None))
    return Instruction(keyword, tuple(flags), args.strip(), number)


def _builder_flags(line: str) -> tuple[str, list[str]]:
    """The builder's extractBuilderFlags: leading `--words` (quotes and backslashes handled),
    and the rest of the line. Works on bytes, as the builder does."""
    data = line.encode("utf-8", "surrogateescape").decode("latin-1")
    words: list[str] = []
    in_spaces, in_word, in_quote = 0, 1, 2
    phase = in_spaces
    word = ""
    quote = ""
    blank_ok = False
    pos = 0
    length = len(data)

    def back(text: str) -> str:
        return text.encode("latin-1").decode("utf-8", "surrogateescape")

    while pos <= length:
        ch = data[pos] if pos < length else ""
        if phase == in_spaces:
            if pos == length:
                break
            if ch in _GO_SPACE:
                pos += 1
                continue
            if ch != "-" or pos + 1 == length or data[pos + 1] != "-":
                return back(data[pos:]), [back(w) for w in words]
            phase = in_word
        if phase in (in_word, in_quote) and pos == length:
            if word != "--" and (blank_ok or word):
                words.append(word)
            break
        if phase == in_word:
            if ch in _GO_SPACE:
                phase = in_spaces
                if word == "--":
                    return back(data[pos:]), [back(w) for w in words]
                if blank_ok or word:
                    words.append(word)
                word, blank_ok = "", False
                pos += 1
                continue
            if ch in ("'", '"'):
                quote, blank_ok, phase = ch, True, in_quote
                pos += 1
                continue
            if ch == "\\":
                if pos + 1 == length:
                    pos += 1
                    continue
                pos += 1
                ch = data[pos]
            word += ch
            pos += 1
            continue
        # in a quote
        if ch == quote:
            phase = in_word
            pos += 1
            continue
        if ch == "\\":
            if pos + 1 == length:
                phase = in_word
                pos += 1
                continue
            pos += 1
            ch = data[pos]
        word += ch
        pos += 1
    return "", [back(w) for w in words]


def _render_flag(name: str, value: str | None) -> str:
    if value is None:
        return f"--{name}"
    if value and re.fullmatch(r"[A-Za-z0-9_.:/@+,=${}-]+", value):
        return f"--{name}={value}"
    escaped = value.replace("\\", "\\\\").replace('"', '\\"')
    return f'--{name}="{escaped}"'


def split_words(args: str) -> list[str]:
    """Arguments split on blanks, as the builder does for FROM, ARG and non-JSON COPY/ADD."""
    stripped = args.strip()
    return _WHITESPACE.split(stripped) if stripped else []


def json_or_words(args: str) -> list[str]:
    """COPY/ADD arguments: a JSON array of strings, else blank-separated words."""
    stripped = args.strip()
    if stripped.startswith("["):
        try:
            value = json.loads(stripped)
        except ValueError:
            value = None
        if isinstance(value, list) and all(isinstance(item, str) for item in value):
            return value
    return split_words(args)


def literal(text: str, escape: str = "\\") -> str:
    """A word that `expand` turns back into `text` exactly (double quotes, escapes)."""
    escaped = text.replace(escape, escape * 2).replace('"', escape + '"').replace("$", escape + "$")
    return f'"{escaped}"'


def expand(word: str, env: Mapping[str, str], escape: str = "\\") -> str:
    """The builder's ProcessWord: `word` with quotes removed and variables substituted."""
    return _Lexer(word, env, escape).word()


class _Lexer:
    def __init__(self, text: str, env: Mapping[str, str], escape: str) -> None:
        self.text = text
        self.pos = 0
        self.env = env
        self.escape = escape

    def peek(self) -> str:
        return self.text[self.pos] if self.pos < len(self.text) else ""

    def next(self) -> str:
        ch = self.peek()
        if ch:
            self.pos += 1
        return ch

    def word(self) -> str:
        return self._until("")

    def _until(self, stop: str) -> str:
        out: list[str] = []
        while self.peek():
            ch = self.peek()
            if stop and ch == stop:
                self.next()
                return "".join(out)
            if ch == "'":
                out.append(self._single())
            elif ch == '"':
                out.append(self._double())
            elif ch == "$":
                out.append(self._dollar())
            else:
                ch = self.next()
                if ch == self.escape:
                    ch = self.next()
                    if not ch:
                        break
                out.append(ch)
        if stop:
            raise DockerfileError(f"Unexpected end of {self.text!r} while looking for {stop!r}.")
        return "".join(out)

    def _single(self) -> str:
        self.next()
        out: list[str] = []
        while True:
            ch = self.next()
            if not ch:
                raise DockerfileError(f"{self.text!r} has a quote (') that is never closed.")
            if ch == "'":
                return "".join(out)
            out.append(ch)

    def _double(self) -> str:
        self.next()
        out: list[str] = []
        while True:
            ch = self.peek()
            if not ch:
                raise DockerfileError(f'{self.text!r} has a quote (") that is never closed.')
            if ch == '"':
                self.next()
                return "".join(out)
            if ch == "$":
                out.append(self._dollar())
                continue
            ch = self.next()
            if ch == self.escape:
                following = self.peek()
                if not following:
                    continue
                if following in ('"', "$", self.escape):
                    ch = self.next()
            out.append(ch)

    def _dollar(self) -> str:
        self.next()
        if self.peek() != "{":
            name = self._name()
            return self.env.get(name, "") if name else "$"
        self.next()
        if self.peek() in ("", "{", "}", ":"):
            raise DockerfileError(f"{self.text!r}: bad substitution.")
        name = self._name()
        ch = self.next()
        if ch == "}":
            return self.env.get(name, "")
        if ch == ":":
            modifier = self.next()
            word = self._until("}")
            value = self.env.get(name, "")
            if modifier == "+":
                return word if value else value
            if modifier == "-":
                return value or word
            raise DockerfileError(f"{self.text!r}: unsupported modifier ({modifier}).")
        raise DockerfileError(f"{self.text!r}: missing ':' in substitution.")

    def _name(self) -> str:
        out: list[str] = []
        while self.peek():
            ch = self.peek()
            if not out and ch.isdigit():
                while self.peek().isdigit():
                    out.append(self.next())
                return "".join(out)
            if not out and ch in _SPECIAL_PARAMETERS:
                return self.next()
            if not (ch.isalnum() or ch == "_"):
                break
            out.append(self.next())
        return "".join(out)
