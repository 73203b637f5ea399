"""The docs stay in the repository and in step with the code.

Comments and docstrings cite the repository's own docs/, never a design file kept elsewhere;
every docs/ page they name exists; docs/ARCHITECTURE.md lists every package and top-level
module of core/, so a newcomer finds where a change goes.
"""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SOURCES = ("cli", "commands", "core", "sshd", "tui", "tests", "bench", "scripts")
# Spelled in two pieces so that this file does not match itself.
OUTSIDE_DESIGN_FILE = "DESIGN" + ".md"
DOCS_REFERENCE = re.compile(r"docs/([A-Za-z0-9_.-]+\.md)")


def texts() -> dict[Path, str]:
    files = [ROOT / "README.md"]
    for folder in SOURCES:
        files += [path for path in (ROOT / folder).rglob("*") if path.suffix in {".py", ""}]
    return {path: path.read_text(errors="replace") for path in files if path.is_file()}


def test_nothing_points_to_a_design_file_outside_the_repository() -> None:
    pointing = [
        str(path.relative_to(ROOT)) for path, text in texts().items() if OUTSIDE_DESIGN_FILE in text
    ]
    assert pointing == []


def test_every_docs_page_named_exists() -> None:
    named = {
        (str(path.relative_to(ROOT)), page)
        for path, text in texts().items()
        for page in DOCS_REFERENCE.findall(text)
    }
    assert ("README.md", "ARCHITECTURE.md") in named
    missing = sorted((where, page) for where, page in named if not (ROOT / "docs" / page).is_file())
    assert missing == []


def test_architecture_lists_every_core_package_and_module() -> None:
    architecture = (ROOT / "docs" / "ARCHITECTURE.md").read_text()
    core = ROOT / "core"
    parts = [f"core/{path.name}/" for path in core.iterdir() if (path / "__init__.py").is_file()]
    parts += [f"core/{path.name}" for path in core.glob("*.py") if path.name != "__init__.py"]
    assert len(parts) >= 10
    unlisted = sorted(part for part in parts if f"`{part}`" not in architecture)
    assert unlisted == [], "add a line for each to the package table of docs/ARCHITECTURE.md"
