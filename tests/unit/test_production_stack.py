"""docker-compose.yaml, the production stack: what operators rely on without reading it closely."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

STACK = Path(__file__).resolve().parents[2] / "docker-compose.yaml"


def services() -> dict[str, Any]:
    document = yaml.safe_load(STACK.read_text())
    found: dict[str, Any] = document["services"]
    return found


def test_the_stack_has_every_service_and_only_the_panel_holds_the_docker_socket() -> None:
    stack = services()
    assert set(stack) == {"postgres", "redis", "minio", "nginx", "panel"}
    holders = [
        name
        for name, service in stack.items()
        if any("docker.sock" in str(volume) for volume in service.get("volumes", []))
    ]
    assert holders == ["panel"]


def test_data_services_listen_on_loopback_only() -> None:
    for name in ("postgres", "redis", "minio"):
        for port in services()[name].get("ports", []):
            assert str(port).startswith("127.0.0.1:"), (name, port)


def test_the_panel_and_nginx_share_the_prefix_the_network_and_the_processes() -> None:
    stack = services()
    panel, nginx = stack["panel"], stack["nginx"]
    assert panel["network_mode"] == nginx["network_mode"] == "host"  # apps publish on 127.0.0.1
    assert panel["pid"] == "service:nginx"  # the panel reloads nginx and watches its workers
    assert panel["environment"]["GHST_NGINX_MANAGED"] == "0"
    assert (
        panel["environment"]["GHST_NGINX_PREFIX"]
        == nginx["environment"]["GHST_NGINX_PREFIX"]
        == "/nginx"
    )
    assert "nginx-prefix:/nginx" in panel["volumes"] and "nginx-prefix:/nginx" in nginx["volumes"]
    assert nginx["command"] == ["ghst", "nginx"]


def test_secrets_come_from_the_environment() -> None:
    text = STACK.read_text()
    for secret in ("POSTGRES_PASSWORD", "REDIS_PASSWORD", "MINIO_ROOT_PASSWORD"):
        assert f"${{{secret}:?" in text
