"""Fixtures of the dashboard tests (the real `panel` fixture comes from tests/conftest.py)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from tests.tui.helpers import generate_key


@pytest.fixture
def new_key(tmp_path: Path) -> Callable[..., str]:
    """Make fresh ed25519 public key lines with ssh-keygen: new_key("comment")."""
    keys_dir = tmp_path / "keys"
    keys_dir.mkdir()
    return lambda comment="test@ghst": generate_key(keys_dir, comment)
