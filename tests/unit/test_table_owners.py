"""One module owns each table: SQL naming a table anywhere else in core fails here.

Other modules reach a table through its owner's functions or service methods, so a table's
rules (its locks, its limits, its invariants) live in one place. The scan reads the string
literals of every module in core/ (docstrings aside) for `FROM`, `JOIN`, `UPDATE`, `INTO`,
`TABLE` and `TRUNCATE` followed by a table the migrations create.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

OWNERS = {
    "users": "core/identity/users.py",
    "ssh_keys": "core/identity/keys.py",
    "sessions": "core/identity/sessions.py",
    "projects": "core/projects/service.py",
    "project_env": "core/projects/env_vars.py",
    "archives": "core/archives/records.py",
    "quota_reservations": "core/archives/quota.py",
    "ports": "core/routing/ports.py",
    "installation": "core/installation.py",
    "deployments": "core/deploy/store.py",
    "compose_stacks": "core/runtime/compose/stacks.py",
    "schema_migrations": "core/db/migrations.py",
    "plans": "core/billing/plans.py",
    "project_plans": "core/billing/subscriptions.py",
    # The ledger and the balances it adds up to: one owner keeps balance = sum of entries.
    "ledger": "core/billing/ledger.py",
    "balances": "core/billing/ledger.py",
    "payments": "core/billing/payments.py",
    "charge_runs": "core/billing/charges.py",
    "arrears": "core/billing/suspension.py",
    "promised_payments": "core/billing/promised.py",
    # An invoice, its lines, the entries it billed and the counter numbering them: one owner
    # keeps them written in one transaction.
    "invoices": "core/billing/invoices.py",
    "invoice_lines": "core/billing/invoices.py",
    "invoice_entries": "core/billing/invoices.py",
    "invoice_numbers": "core/billing/invoices.py",
    "invoice_runs": "core/billing/invoices.py",
    "access_tokens": "core/identity/access_tokens.py",
    "audit_events": "core/audit/entries.py",
    "admin_holds": "core/admin/holds.py",
    "panel_processes": "core/admin/processes.py",
    # Running totals of the ledger, kept by its trigger (migration 0021) as it is appended to.
    "ledger_charge_days": "core/billing/ledger.py",
    "ledger_topup_quarters": "core/billing/ledger.py",
}

TABLE_MENTION = re.compile(
    r"\b(?:FROM|JOIN|UPDATE|INTO|TABLE|TRUNCATE)\s+(?:ONLY\s+|IF\s+NOT\s+EXISTS\s+)?(\w+)",
    re.IGNORECASE,
)


def known_tables() -> set[str]:
    sql = "\n".join(path.read_text() for path in (ROOT / "migrations").glob("*.sql"))
    return set(re.findall(r"CREATE TABLE (?:IF NOT EXISTS )?(\w+)", sql)) | {"schema_migrations"}


def docstrings(tree: ast.AST) -> set[int]:
    """ids of the constant nodes that are docstrings (prose, not SQL)."""
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
                found.add(id(body[0].value))
    return found


def tables_queried(source: str, tables: set[str]) -> set[str]:
    """The tables the SQL in this module's string literals names."""
    tree = ast.parse(source)
    prose = docstrings(tree)
    named = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in prose:
            named |= {table for table in TABLE_MENTION.findall(node.value) if table in tables}
    return named


def foreign_queries() -> set[tuple[str, str]]:
    tables = known_tables()
    found = set()
    for path in sorted((ROOT / "core").rglob("*.py")):
        module = path.relative_to(ROOT).as_posix()
        for table in tables_queried(path.read_text(), tables):
            if OWNERS.get(table) != module:
                found.add((module, table))
    return found


def test_every_table_has_an_owner() -> None:
    assert known_tables() <= set(OWNERS), "a new table needs an owner in OWNERS"


def test_only_the_owner_queries_a_table() -> None:
    foreign = foreign_queries()
    unexpected = sorted(foreign)
    assert not unexpected, (
        f"these modules query another module's table: {unexpected}; call the owner's"
        " functions instead (OWNERS names the owner)"
    )


def test_the_scan_finds_a_foreign_query() -> None:
    source = '''
async def quota(conn):
    """Reads FROM users in prose, which is fine."""
    return await conn.fetchval(
        f"SELECT sum(a.size) FROM archives a JOIN {PROJECTS} p ON true"
        " WHERE a.project_id IN (SELECT id from projects)"
    )
'''
    assert tables_queried(source, {"users", "archives", "projects"}) == {"archives", "projects"}
