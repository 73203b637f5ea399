"""What a compose deployment needs after its build, as a versioned JSON document.

A rollback renders the checked app again (with the project's variables and a new port), so it
needs the `ComposeApp` as parsed while the archive was unpacked: env files and `.env` read in,
images pinned. Stop, start and down need the file compose ran. Both are kept as plain data, not
as pickled objects, so any worker on any host, and a later version of the panel, can read them:

    {"format": 1,
     "app": {"document": {...}, "services": [...], "web_service": "web", "app_port": 8000,
             "builds": [{"service", "context", "dockerfile", "args": [[k, v]], "target"}],
             "keeps_data": false, "env_files": {"web": {"K": "v"}}},
     "compose_file": "services: ..."}

Key order is part of the data (service and variable order shape the rendered file), so the
text is stored as it is written (a `json` column, not `jsonb`). A document in a format this
code does not know is refused with a message that says so, never guessed at.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from core.runtime.compose.app import ComposeApp, ServiceBuild
from core.runtime.compose.errors import ComposeStateUnreadable

STATE_FORMAT = 1


@dataclass(frozen=True)
class StackState:
    app: ComposeApp  # the checked app, as a rollback renders it again
    compose_file: str  # the rendered file compose runs for this deployment's stack


def state_to_json(state: StackState) -> str:
    """The document for `state`; the app's values are JSON scalars (parse_compose makes them
    so, and refuses numbers JSON cannot hold)."""
    app = state.app
    document = {
        "format": STATE_FORMAT,
        "app": {
            "document": app.document,
            "services": list(app.services),
            "web_service": app.web_service,
            "app_port": app.app_port,
            "builds": [
                {
                    "service": build.service,
                    "context": build.context,
                    "dockerfile": build.dockerfile,
                    "args": [list(pair) for pair in build.args],
                    "target": build.target,
                }
                for build in app.builds
            ],
            "keeps_data": app.keeps_data,
            "env_files": {name: dict(values) for name, values in app.env_files.items()},
        },
        "compose_file": state.compose_file,
    }
    return json.dumps(document, ensure_ascii=False, allow_nan=False, separators=(",", ":"))


def state_from_json(text: str, whose: str = "The compose stack") -> StackState:
    """The state in `text`; ComposeStateUnreadable, naming `whose`, if it cannot be read."""
    try:
        document = json.loads(text)
    except ValueError:
        raise _unreadable(whose, "it is not valid JSON") from None
    if not isinstance(document, dict):
        raise _unreadable(whose, "it is not a JSON object")
    found = document.get("format")
    if found != STATE_FORMAT:
        shown = found if isinstance(found, int) and not isinstance(found, bool) else "unknown"
        raise ComposeStateUnreadable(
            f"{whose} was saved in format {shown}, and this version of the panel reads format "
            f"{STATE_FORMAT} only (it was written by another version): deploy the project's "
            "archive again, or roll back from a panel of the version that saved it."
        )
    try:
        return _read(document)
    except (KeyError, TypeError, ValueError) as error:
        raise _unreadable(whose, f"a field is missing or of the wrong type ({error})") from None


def _read(document: Mapping[str, Any]) -> StackState:
    app = _mapping(document["app"])
    builds = tuple(
        ServiceBuild(
            service=_text(build["service"]),
            context=_text(build["context"]),
            dockerfile=_text(build["dockerfile"]),
            args=tuple((_text(key), _text(value)) for key, value in build["args"]),
            target=None if build["target"] is None else _text(build["target"]),
        )
        for build in map(_mapping, _sequence(app["builds"]))
    )
    env_files = {
        _text(name): {_text(key): _text(value) for key, value in _mapping(values).items()}
        for name, values in _mapping(app["env_files"]).items()
    }
    app_port = app["app_port"]
    if app_port is not None and (isinstance(app_port, bool) or not isinstance(app_port, int)):
        raise TypeError("app_port is not a port number")
    keeps_data = app["keeps_data"]
    if not isinstance(keeps_data, bool):
        raise TypeError("keeps_data is not a boolean")
    return StackState(
        app=ComposeApp(
            document=dict(_mapping(app["document"])),
            services=tuple(_text(name) for name in _sequence(app["services"])),
            web_service=_text(app["web_service"]),
            app_port=app_port,
            builds=builds,
            keeps_data=keeps_data,
            env_files=env_files,
        ),
        compose_file=_text(document["compose_file"]),
    )


def _mapping(value: Any) -> Mapping[str, Any]:
    if not isinstance(value, dict):
        raise TypeError(f"expected an object, found {type(value).__name__}")
    return value


def _sequence(value: Any) -> list[Any]:
    if not isinstance(value, list):
        raise TypeError(f"expected a list, found {type(value).__name__}")
    return value


def _text(value: Any) -> str:
    if not isinstance(value, str):
        raise TypeError(f"expected a string, found {type(value).__name__}")
    return value


def _unreadable(whose: str, why: str) -> ComposeStateUnreadable:
    return ComposeStateUnreadable(
        f"{whose} cannot be read back: {why}. Deploy the project's archive again."
    )
