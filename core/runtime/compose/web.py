"""Which service receives the web traffic (the first with `ports:`, else one named web or app,
else the only one) and on which container port, when the file tells it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from core.runtime.compose.errors import ComposeRejected
from core.runtime.compose.values import list_option, quoted

_PORT = re.compile(r"^(\d{1,5})(?:-(\d{1,5}))?(?:/(tcp|udp|sctp))?$", re.IGNORECASE)
_WEB_NAMES = ("web", "app")


def pick_web_service(active: tuple[str, ...], services: Mapping[str, Any]) -> str:
    with_ports = [name for name in active if services[name].get("ports")]
    if with_ports:
        web = with_ports[0]
    else:
        named = [name for name in _WEB_NAMES if name in active]
        if named:
            web = named[0]
        elif len(active) == 1:
            web = active[0]
        else:
            raise ComposeRejected(
                f"The compose file has {len(active)} services ({', '.join(active)}) and none "
                "publishes a port, so the panel cannot tell which one answers HTTP: give that "
                "service a ports: entry with its port, e.g. ports: ['8000']."
            )
    mode = services[web].get("network_mode")
    if isinstance(mode, str) and (mode == "none" or mode.startswith("service:")):
        raise ComposeRejected(
            f"Service {quoted(web)} receives the web traffic, so it cannot use another service's "
            "network (network_mode)."
        )
    return web


def declared_app_port(name: str, service: Mapping[str, Any]) -> int | None:
    for entry in list_option(service, "ports"):
        port = _container_port(entry)
        if port is None:
            raise ComposeRejected(
                f"Service {quoted(name)}: the port entry {quoted(str(entry))} cannot be read; write "
                "it as '8000' or '8080:8000'."
            )
        if port > 0:
            return port
    for entry in list_option(service, "expose"):
        port = _container_port(entry)
        if port is None:
            raise ComposeRejected(
                f"Service {quoted(name)}: the expose entry {quoted(str(entry))} cannot be read."
            )
        if port > 0:
            return port
    return None


def _container_port(entry: Any) -> int | None:
    """The container side of a ports/expose entry; 0 for a UDP port; None if unreadable."""
    protocol = "tcp"
    if isinstance(entry, dict):
        target = entry.get("target")
        protocol = str(entry.get("protocol", "tcp")).lower()
        text = str(target) if isinstance(target, (int, str)) else ""
    elif isinstance(entry, (int, str)) and not isinstance(entry, bool):
        text = str(entry).strip()
        # [host ip:][host port:]container port[/protocol]; the IP may be [v6].
        text = re.sub(r"^\[[0-9a-fA-F:.]*\]:", "", text)
        text = text.rsplit(":", 1)[-1]
    else:
        return None
    match = _PORT.match(text)
    if match is None:
        return None
    port = int(match.group(1))
    if not 1 <= port <= 65535:
        return None
    if (match.group(3) or protocol).lower() != "tcp":
        return 0
    return port
