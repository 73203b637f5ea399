"""The import contracts in pyproject.toml hold, and they do refuse what they are meant to refuse.

import-linter reads the import statements of cli/, commands/, core/, sshd/ and tui/ (docs/ARCHITECTURE.md
draws the layers). The second half copies the packages to a scratch directory, adds one import
that breaks a rule, and checks that the contract for that rule reports it: a typo in a contract
would otherwise leave it kept forever.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("cli", "commands", "core", "sshd", "tui")
LINT = "import sys; from importlinter.cli import lint_imports_command; sys.exit(lint_imports_command())"


def lint_imports(root: Path) -> subprocess.CompletedProcess[str]:
    # PYTHONPATH: the packages of `root` win over any installed copy of the project.
    environment = {**os.environ, "PYTHONPATH": str(root)}
    return subprocess.run(
        [sys.executable, "-c", LINT, "--no-cache", "--no-logo", str(root / "pyproject.toml")],
        cwd=root,
        env=environment,
        capture_output=True,
        text=True,
    )


def test_the_project_keeps_every_contract() -> None:
    result = lint_imports(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Contracts: 8 kept, 0 broken." in result.stdout


@pytest.fixture(scope="module")
def scratch(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the packages and the contracts, to break on purpose."""
    root = tmp_path_factory.mktemp("contracts")
    for package in PACKAGES:
        shutil.copytree(
            ROOT / package, root / package, ignore=shutil.ignore_patterns("__pycache__")
        )
    shutil.copy(ROOT / "pyproject.toml", root / "pyproject.toml")
    return root


@pytest.mark.parametrize(
    ("module", "line", "contract"),
    [
        (
            "core/identity/probe.py",
            "import textual.app",
            "core runs headless: no Textual, no asyncssh",
        ),
        (
            "core/projects/probe.py",
            "import tui.app",
            "Front ends sit on core, in one direction",
        ),
        ("tui/probe.py", "import sshd.server", "Front ends sit on core, in one direction"),
        ("tui/probe.py", "import asyncssh", "The dashboard knows nothing of SSH"),
        (
            "tui/screens/probe.py",
            "from core.db.pool import connection",
            "Front ends get services, not infrastructure",
        ),
        (
            "sshd/probe.py",
            "from core.panel import Panel",
            "Front ends get services, not infrastructure",
        ),
        (
            "sshd/probe.py",
            "from core.runtime.engine import DockerEngine",
            "Front ends get services, not infrastructure",
        ),
        (
            "core/runtime/probe.py",
            "from core.deploy.service import DeploymentService",
            "Domain packages depend one way",
        ),
        (
            "core/routing/probe.py",
            "from core.projects.service import ProjectService",
            "Domain packages depend one way",
        ),
        (
            "core/identity/probe.py",
            "from core.archives.service import ArchiveService",
            "Domain packages depend one way",
        ),
        ("core/runtime/probe.py", "import core.routing.ports", "Domain packages depend one way"),
        ("commands/probe.py", "import asyncssh", "Commands get services, not SSH"),
        ("commands/nouns/probe.py", "from core.db.pool import connection", "Commands get services"),
        ("commands/probe.py", "from core.panel import Panel", "Commands get services"),
        ("commands/probe.py", "import tui.app", "Front ends sit on core, in one direction"),
        ("tui/probe.py", "import commands.output", "Front ends sit on core, in one direction"),
        ("core/probe.py", "import commands.dispatch", "Front ends sit on core, in one direction"),
        (
            "sshd/probe.py",
            "from commands.output import table",
            "The SSH server reaches the commands",
        ),
        (
            "core/audit/probe.py",
            "from core.projects.service import ProjectService",
            "The audit log sits below the domain packages",
        ),
    ],
)
def test_a_forbidden_import_breaks_its_contract(
    scratch: Path, module: str, line: str, contract: str
) -> None:
    probe = scratch / module
    probe.write_text(f"{line}\n")
    try:
        result = lint_imports(scratch)
    finally:
        probe.unlink()
    assert result.returncode == 1, result.stdout + result.stderr
    # "BROKEN (1 ignored import)" for a contract that lets one import through.
    broken = [row for row in result.stdout.splitlines() if " BROKEN" in row]
    assert [row for row in broken if row.startswith(contract)], result.stdout
