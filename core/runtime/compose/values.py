"""Reading single values of a compose file as compose does (booleans, sizes, `K=V` lists, short
volume entries, paths as text) and quoting a user's string for a message.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from core.runtime.compose.errors import ComposeRejected
from core.runtime.compose.limits import KiB, MiB

OBJECT_NAME = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,62}$")
_ENV_KEY = re.compile(r"^[^=\x00]+$")
_DRIVE = re.compile(r"^[A-Za-z]:[\\/]")
_DRIVE_BACKSLASH = re.compile(r"^[A-Za-z]:\\")  # "c:/x" is volume c at /x
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]?)i?b?\s*$", re.IGNORECASE)


def quoted(value: str) -> str:
    """A user's string quoted for a message: escaped, and cut if long."""
    text = value if len(value) <= 80 else value[:77] + "..."
    return "'" + text.encode("unicode_escape").decode("ascii").replace("'", "\\'") + "'"


def string_mapping(value: Any, service: str, key: str) -> dict[str, str | None]:
    """environment/labels/args as a mapping; `K` alone (take it from the host) maps to None."""
    if value is None:
        return {}
    result: dict[str, str | None] = {}
    if isinstance(value, list):
        for entry in value:
            if not isinstance(entry, str):
                raise ComposeRejected(
                    f"Service {quoted(service)}: {key}: entries should be KEY=value strings."
                )
            name, sep, text = entry.partition("=")
            result[name.strip()] = text if sep else None
    elif isinstance(value, dict):
        for name, item in value.items():
            if isinstance(item, (dict, list)):
                raise ComposeRejected(
                    f"Service {quoted(service)}: {key}: {quoted(name)} should be a plain value."
                )
            result[name] = _scalar_text(item)
    else:
        raise ComposeRejected(f"Service {quoted(service)}: {key}: should be a mapping or a list.")
    for name in result:
        if not _ENV_KEY.match(name):
            raise ComposeRejected(
                f"Service {quoted(service)}: {key}: {quoted(name)} is not a valid name."
            )
    return result


def flag(value: Any) -> bool:
    """A compose boolean: true/false, or a string such as "false" left by interpolation."""
    if isinstance(value, str):
        return value.strip().lower() in {"true", "yes", "on", "1", "y"}
    if isinstance(value, dict):
        return True  # `external: {name: x}`, the old form
    return bool(value)


def _scalar_text(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def list_option(service: Mapping[str, Any], key: str) -> list[Any]:
    value = service.get(key)
    if value is None:
        return []
    if isinstance(value, (str, int)):
        return [value]
    if isinstance(value, dict) and key in {"cap_add", "security_opt", "devices"}:
        return list(value)
    if not isinstance(value, list):
        raise ComposeRejected(f"Option {key}: should be a list.")
    return value


def split_volume(entry: str) -> tuple[str | None, str]:
    """(source, target) of a short volume entry; source None for an anonymous volume."""
    if _DRIVE_BACKSLASH.match(entry):
        return entry, ""
    parts = entry.split(":")
    if len(parts) == 1:
        return None, parts[0]
    return parts[0], parts[1]


def looks_like_path(source: str) -> bool:
    return (
        source == ""
        or source.startswith((".", "/", "~", "\\", "$"))
        or "/" in source
        or "\\" in source
        or bool(_DRIVE_BACKSLASH.match(source))
    )


def is_absolute(path: str) -> bool:
    return path.startswith(("/", "\\", "~")) or bool(_DRIVE.match(path))


def relative_inside(path: str) -> str | None:
    """`path` normalised as text, relative to the app folder; None if the text leads out of it.

    Only for a compose file parsed without its folder: with the folder, paths are resolved as
    the kernel does (see load.py).
    """
    if not path or "\x00" in path or is_absolute(path):
        return None
    parts: list[str] = []
    for part in path.replace("\\", "/").split("/"):
        if part in ("", "."):
            continue
        if part == "..":
            if not parts:
                return None
            parts.pop()
        else:
            parts.append(part)
    return "/".join(parts) or "."


def size_bytes(value: Any) -> int | None:
    """Bytes from 67108864, '64m', '1gb', '512k'; None if unreadable."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int):
        return value if value > 0 else None
    match = _SIZE.match(str(value))
    if match is None:
        return None
    factor = {"": 1, "k": KiB, "m": MiB, "g": 1024 * MiB, "t": 1024 * 1024 * MiB}
    return int(float(match.group(1)) * factor[match.group(2).lower()])
