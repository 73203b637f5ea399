"""What the panel keeps of a user's compose file once it is read and checked: `ComposeApp`
(the checked document, its services, the web service and port, what to build) and one
`ServiceBuild` per service built from the app folder.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class ServiceBuild:
    service: str
    context: str  # relative to the app folder, links resolved, inside it ("." for itself)
    dockerfile: str  # relative to context, links resolved, inside it
    args: tuple[tuple[str, str], ...] = ()  # build.args with a value
    target: str | None = None  # build.target


@dataclass(frozen=True)
class ComposeApp:
    document: dict[str, Any]  # parsed, interpolated, `extends` resolved, checked; not rewritten
    services: tuple[str, ...]  # in file order; services in a `profiles` are left out
    web_service: str  # the service nginx routes to
    app_port: int | None  # its container port if the file tells it (ports/expose)
    builds: tuple[ServiceBuild, ...]
    keeps_data: bool  # some service mounts a named volume
    # Variables read from each service's env_files (when parse_compose had the app folder).
    env_files: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
