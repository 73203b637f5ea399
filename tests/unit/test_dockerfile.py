"""Dockerfiles read as dockerd's classic builder reads them (core/runtime/dockerfile.py)."""

from __future__ import annotations

import pytest

from core.runtime import dockerfile as df


def test_continuations_comments_and_the_escape_directive() -> None:
    text = "# escape=`\r\nfrom `\r\n# a comment inside\r\n\r\n  base:1 AS x\nRUN a \\\n  b\n"
    parsed = df.parse(text)
    assert parsed.escape == "`"
    assert [(i.keyword, i.args, i.line) for i in parsed.instructions] == [
        ("FROM", "base:1 AS x", 2),
        ("RUN", "a \\", 6),  # with a backtick escape, a backslash continues nothing
        ("B", "", 7),
    ]
    assert df.render(parsed) == "# escape=`\nFROM base:1 AS x\nRUN a \\\nB\n"


def test_a_directive_after_an_instruction_or_a_comment_is_only_a_comment() -> None:
    assert df.parse("# hello\n# escape=`\nFROM a `\n").escape == "\\"
    assert df.parse("\ufeff# escape=`\nFROM a\n").escape == "`"


def test_flags_are_read_with_the_builders_quoting() -> None:
    (copy,) = df.parse('COPY --fr"om"=ghst/a:1 --chown="a b" -- --x /y\n').instructions
    assert copy.flag("from") == "ghst/a:1"
    assert copy.flag("chown") == "a b"
    assert copy.args == "--x /y"
    again = df.parse(df.render(df.Dockerfile("\\", (copy,)))).instructions[0]
    assert (again.flags, again.args) == (copy.flags, copy.args)


@pytest.mark.parametrize(
    ("word", "expected"),
    [
        ("$A", "x"),
        ("${A}b", "xb"),
        ("${NOPE:-d}", "d"),
        ("${A:-d}", "x"),
        ("${A:+alt}", "alt"),
        ("${NOPE:+alt}", ""),
        ("'$A'", "$A"),
        ('"$A y"', "x y"),
        ("\\$A", "$A"),
        ("${NOPE:-${A}}", "x"),
        ("http$NOPE://h", "http://h"),
    ],
)
def test_words_expand_as_the_builder_expands_them(word: str, expected: str) -> None:
    assert df.expand(word, {"A": "x"}) == expected


@pytest.mark.parametrize("word", ["${A", "${}", "${A:?x}", "'open", '"open'])
def test_words_the_builder_refuses_are_refused(word: str) -> None:
    with pytest.raises(df.DockerfileError):
        df.expand(word, {"A": "x"})


@pytest.mark.parametrize("text", ['a "b" $c ${d} \\e `f', "", "$", '"', "\\"])
@pytest.mark.parametrize("escape", ["\\", "`"])
def test_a_literal_expands_back_to_itself(text: str, escape: str) -> None:
    assert df.expand(df.literal(text, escape), {"c": "X", "d": "Y"}, escape) == text


@pytest.mark.parametrize(
    "line", ['COPY --"chown --from"=x / /', "COPY --from=a --FROM=b / /", "COPY --a=1 --a=2 / /"]
)
def test_options_that_would_read_differently_once_written_back_are_refused(line: str) -> None:
    with pytest.raises(df.DockerfileError):
        df.parse(line)
