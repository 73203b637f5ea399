"""Layering: core is usable headless, without the TUI or SSH libraries."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_core_imports_neither_textual_nor_asyncssh() -> None:
    modules = sorted(
        ".".join(path.relative_to(ROOT / "core").with_suffix("").parts)
        for path in (ROOT / "core").rglob("*.py")
        if path.stem != "__init__"
    )
    script = (
        "import sys\n"
        + "".join(f"import core.{name}\n" for name in modules)
        + "print(sorted(m for m in sys.modules if m.split('.')[0] in {'textual', 'asyncssh', 'tui', 'sshd'}))"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert len(modules) >= 10
    assert result.stdout.strip() == "[]"


def test_tui_does_not_import_sshd() -> None:
    script = "import sys, tui.app; print(sorted(m for m in sys.modules if m.split('.')[0] in {'asyncssh', 'sshd'}))"
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "[]"
