"""The saved state of a compose deployment: a JSON document that gives back exactly the app a
rollback renders again, and refuses, with a message, a format this code does not know. Also the
values parse_compose refuses because that document could not hold them, or would grow without
bound."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path
from typing import Any

import pytest

from core.runtime.compose.errors import ComposeRejected, ComposeStateUnreadable
from core.runtime.compose.limits import MAX_EXPANDED_CHARS
from core.runtime.compose.load import parse_compose
from core.runtime.compose.render import render_compose
from core.runtime.compose.state import STATE_FORMAT, StackState, state_from_json, state_to_json

RICH = """
x-common: &common
  restart: always
  labels: {team: "ünïcode ✓", shop.tier: "1"}
services:
  web:
    <<: *common
    build:
      context: ./web
      dockerfile: Dockerfile.prod
      target: runtime
      args: {VERSION: "${VERSION}", EMPTY: ""}
    ports: ["8080:8000"]
    env_file: [web.env]
    environment:
      ZED: last
      ALPHA: first
      NUL: "a\\0b"
      RATIO: 0.1
    healthcheck: {test: ["CMD", "true"], interval: 5s, retries: 3}
    tmpfs: ["/run:size=16m"]
    volumes: ["data:/data"]
    depends_on: {worker: {condition: service_started}}
    stop_grace_period: 1m30s
    read_only: false
    networks: {back: {aliases: [api]}}
  worker:
    extends: {file: base.yaml, service: base}
    command: ["sh", "-c", "echo $$HOME ${GREETING:-hi}"]
    networks: [back]
    user: null
  later:
    image: shop/later:1
    profiles: [tools]
volumes:
  data: {labels: {keep: "yes"}}
networks:
  back: {internal: true}
"""

BASE = """
services:
  base:
    image: shop/base:2
    environment: [FROM_BASE=1]
    ulimits: {nofile: {soft: 1024, hard: 2048}}
"""

RENDER: dict[str, Any] = {
    "stack": "ghst-shop-9",
    "instance": "ghst",
    "project": "shop",
    "deployment_id": 9,
    "user_id": 3,
    "host_port": 31000,
    "app_port": 8000,
    "built_images": {"web": "ghst/shop:9-web"},
    "env": {"PORT": "8000", "SECRET": "s3cr3t"},
    "memory_bytes": 512 << 20,
    "cpus": 1.0,
    "pids": 256,
}


def rich_app_folder(root: Path) -> Path:
    (root / "web").mkdir(parents=True)
    (root / "web" / "Dockerfile.prod").write_text("FROM scratch\n")
    (root / "compose.yaml").write_text(RICH)
    (root / "base.yaml").write_text(BASE)
    (root / "web.env").write_text("FROM_FILE=yes\nQUOTED='x y'\n")
    (root / ".env").write_text("VERSION=3.1\n")
    return root


def rich_state(tmp_path: Path) -> StackState:
    folder = rich_app_folder(tmp_path / "app")
    app = parse_compose(RICH, folder, variables={"GREETING": "hello"})
    return StackState(app, render_compose(app, **RENDER))


def test_the_saved_document_gives_back_the_same_app_and_file(tmp_path: Path) -> None:
    state = rich_state(tmp_path)
    restored = state_from_json(state_to_json(state))
    assert restored == state
    assert restored.app.builds[0].args == (("VERSION", "3.1"), ("EMPTY", ""))
    assert restored.app.env_files["web"] == {"FROM_FILE": "yes", "QUOTED": "x y"}
    # Order is data: the rendered file lists variables and services as the user wrote them.
    environment = restored.app.document["services"]["web"]["environment"]
    assert list(environment) == ["ZED", "ALPHA", "NUL", "RATIO"]
    assert environment["NUL"] == "a\x00b"
    # What a rollback does with it: render again, for a new deployment and port.
    again = {**RENDER, "deployment_id": 10, "stack": "ghst-shop-10", "host_port": 31001}
    assert render_compose(restored.app, **again) == render_compose(state.app, **again)


def test_the_document_is_plain_json_with_its_format(tmp_path: Path) -> None:
    document = json.loads(state_to_json(rich_state(tmp_path)))
    assert document["format"] == STATE_FORMAT == 1
    assert document["app"]["web_service"] == "web"
    assert document["app"]["services"] == ["web", "worker"]
    assert "SECRET: s3cr3t" in document["compose_file"]


def test_a_format_from_another_version_is_refused_with_a_message(tmp_path: Path) -> None:
    document = json.loads(state_to_json(rich_state(tmp_path)))
    document["format"] = 2
    with pytest.raises(ComposeStateUnreadable) as refused:
        state_from_json(json.dumps(document), "Deployment #9's compose stack")
    assert refused.value.message == (
        "Deployment #9's compose stack was saved in format 2, and this version of the panel "
        "reads format 1 only (it was written by another version): deploy the project's archive "
        "again, or roll back from a panel of the version that saved it."
    )
    del document["format"]
    with pytest.raises(ComposeStateUnreadable, match="saved in format unknown"):
        state_from_json(json.dumps(document))


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("not json", "not valid JSON"),
        ("[1]", "not a JSON object"),
        ('{"format": 1}', "a field is missing or of the wrong type"),
        (
            '{"format": 1, "compose_file": "", "app": {"document": {}, "services": "web",'
            ' "web_service": "web", "app_port": null, "builds": [], "keeps_data": false,'
            ' "env_files": {}}}',
            "expected a list, found str",
        ),
    ],
)
def test_a_damaged_document_is_refused_with_a_message(text: str, why: str) -> None:
    with pytest.raises(ComposeStateUnreadable) as refused:
        state_from_json(text, "Deployment #4's compose stack")
    assert refused.value.message.startswith("Deployment #4's compose stack cannot be read back: ")
    assert why in refused.value.message
    assert refused.value.message.endswith("Deploy the project's archive again.")


def one_service(options: str) -> str:
    body = textwrap.indent(textwrap.dedent(options).strip(), " " * 4)
    return f"services:\n  web:\n    image: shop:1\n{body}\n"


@pytest.mark.parametrize("number", [".inf", "-.inf", ".nan"])
def test_numbers_json_cannot_hold_are_refused(number: str) -> None:
    with pytest.raises(ComposeRejected, match=r"\(.inf or .nan\)"):
        parse_compose(one_service(f"healthcheck: {{retries: {number}}}"))
    # As text they are fine.
    app = parse_compose(one_service(f"environment: {{RATIO: '{number}'}}"))
    assert app.document["services"]["web"]["environment"]["RATIO"] == number


def test_a_lone_surrogate_is_refused() -> None:
    with pytest.raises(ComposeRejected, match="not valid Unicode"):
        parse_compose(one_service('environment: {BAD: "\\ud800"}'))
    with pytest.raises(ComposeRejected, match="not valid Unicode"):
        parse_compose(one_service('labels: {"\\udfff": x}'))


def test_a_long_string_repeated_by_aliases_is_refused() -> None:
    # 100 KiB of text, 200 aliases: about 20 MiB once expanded, far fewer values than MAX_NODES.
    long = "x" * (100 * 1024)
    aliases = ", ".join("*big" for _ in range(200))
    text = one_service(f"environment: {{A: &big {long}}}\ncommand: [{aliases}]")
    with pytest.raises(ComposeRejected, match="once its anchors and variables are expanded"):
        parse_compose(text)


def test_a_long_variable_repeated_by_interpolation_is_refused() -> None:
    variable = "v" * (32 * 1024)
    repeats = MAX_EXPANDED_CHARS // len(variable) + 1
    text = one_service(f"command: '{'$V' * repeats}'")
    with pytest.raises(ComposeRejected, match="once its anchors and variables are expanded"):
        parse_compose(text, variables={"V": variable})
    # The same variable a few times is an ordinary file.
    app = parse_compose(one_service("command: '$V $V'"), variables={"V": variable})
    assert app.document["services"]["web"]["command"] == f"{variable} {variable}"
