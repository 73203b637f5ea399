"""JSON snapshots of the commands' output: compared exactly, volatile fields normalised.

Set GHST_UPDATE_SNAPSHOTS=1 to write them after a deliberate change of a shape."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

HERE = Path(__file__).parent / "snapshots"
VOLATILE_KEYS = {"id"}


def normalise(data: Any) -> Any:
    """Times and ids replaced by placeholders (their presence and null-ness kept)."""
    if isinstance(data, list):
        return [normalise(item) for item in data]
    if isinstance(data, dict):
        shown: dict[str, Any] = {}
        for key, value in data.items():
            if value is not None and (key.endswith("_at") or key in VOLATILE_KEYS):
                shown[key] = f"<{key}>"
            elif key == "fingerprint" and isinstance(value, str):
                shown[key] = "SHA256:<fingerprint>"
            else:
                shown[key] = normalise(value)
        return shown
    return data


def assert_snapshot(name: str, data: Any) -> None:
    path = HERE / f"{name}.json"
    text = json.dumps(normalise(data), indent=2, sort_keys=True) + "\n"
    if os.environ.get("GHST_UPDATE_SNAPSHOTS") == "1":
        path.write_text(text)
    assert path.is_file(), f"no snapshot {path.name}: run with GHST_UPDATE_SNAPSHOTS=1 once"
    assert text == path.read_text(), f"{name} changed shape"
