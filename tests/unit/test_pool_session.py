"""Pooled connections go back to the pool without asyncpg's reset query (core/db/pool.py:
`keep_session`): that holds only while no code leaves session state on one. A statement that
would (a session SET, LISTEN, a cursor or prepared statement by SQL, a session advisory lock)
fails here, in core's string literals and in the migrations (they run on a pooled connection).
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

# SQL is written in capitals here (a message to the user may start with "Set").
SESSION_STATEMENT = re.compile(
    r"^(?:SET(?!\s+LOCAL\b)\s|RESET\s|LISTEN\s|DECLARE\s|PREPARE\s|DISCARD\s)"
)
SESSION_FUNCTION = re.compile(r"\b(?:pg_advisory_lock|pg_try_advisory_lock|set_config)\s*\(")
# Where they are allowed, and why: migrations take a session lock and release it in `finally`.
ALLOWED_FUNCTIONS = {"core/db/migrations.py"}
# Listeners only on connections of their own (asyncpg.connect), never on a pooled one.
LISTENERS = {"core/events.py", "core/deploy/worker.py"}


def literals(path: Path) -> list[str]:
    tree = ast.parse(path.read_text())
    docstrings = {
        id(node.body[0].value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef)
        and node.body
        and isinstance(node.body[0], ast.Expr)
        and isinstance(node.body[0].value, ast.Constant)
    }
    return [
        node.value
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant)
        and isinstance(node.value, str)
        and id(node) not in docstrings
    ]


def statements(sql: str) -> list[str]:
    without_comments = re.sub(r"--[^\n]*", "", sql)
    return [part.strip() for part in without_comments.split(";") if part.strip()]


def test_core_leaves_no_session_state_on_a_pooled_connection() -> None:
    found = []
    for path in sorted((ROOT / "core").rglob("*.py")):
        name = str(path.relative_to(ROOT))
        for text in literals(path):
            for statement in statements(text):
                if SESSION_STATEMENT.match(statement):
                    found.append(f"{name}: {statement[:60]!r}")
            if SESSION_FUNCTION.search(text) and name not in ALLOWED_FUNCTIONS:
                found.append(f"{name}: {text[:60]!r}")
        if "add_listener" in path.read_text() and name not in LISTENERS:
            found.append(f"{name}: add_listener")
    assert found == []


def test_migrations_leave_no_session_state() -> None:
    found = [
        f"{path.name}: {statement[:60]!r}"
        for path in sorted((ROOT / "migrations").glob("*.sql"))
        for statement in statements(path.read_text())
        if SESSION_STATEMENT.match(statement) or SESSION_FUNCTION.search(statement)
    ]
    assert found == []


def test_the_scan_sees_what_it_looks_for() -> None:
    assert SESSION_STATEMENT.match("SET search_path TO other")
    assert SESSION_STATEMENT.match("RESET ALL")
    assert not SESSION_STATEMENT.match("SET LOCAL statement_timeout = 0")
    assert not SESSION_STATEMENT.match("UPDATE users SET is_admin = true")
    assert SESSION_FUNCTION.search("SELECT pg_advisory_lock($1)")
    assert not SESSION_FUNCTION.search("SELECT pg_advisory_xact_lock($1)")
    assert statements("SELECT 1; -- a; comment\nLISTEN x") == ["SELECT 1", "LISTEN x"]
