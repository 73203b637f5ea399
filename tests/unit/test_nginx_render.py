"""Rendering nginx's files from the templates in nginx/, without running nginx."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from core.errors import ValidationError
from core.routing import nginx
from core.routing.nginx import (
    TEMPLATES_DIR,
    NginxRouter,
    first_error_line,
    validate_domain,
    validate_listen,
    validate_project,
)

PLACEHOLDER = re.compile(r"\$\{")


def make_router(tmp_path: Path, **overrides: object) -> NginxRouter:
    options: dict[str, object] = {"prefix": tmp_path / "nginx", "domain": "test.localhost"}
    options.update(overrides)
    return NginxRouter(**options)  # type: ignore[arg-type]


@pytest.mark.parametrize("name", ["abc", "shop", "my-app-2", "a" * 40, "x1y", "a-b-c"])
def test_good_project_names(name: str) -> None:
    assert validate_project(name) == name


@pytest.mark.parametrize(
    "name",
    [
        "ab",  # too short
        "a" * 41,  # too long
        "1shop",  # starts with a digit
        "-shop",
        "shop-",
        "Shop",
        "shop.evil",
        "shop evil",
        "shop;",
        "x;}server{listen 80;",
        "shop\nlisten 1",
        "sh$op",
        "../etc",
        "",
    ],
)
def test_bad_project_names_are_refused_everywhere(tmp_path: Path, name: str) -> None:
    router = make_router(tmp_path)
    with pytest.raises(ValidationError, match="cannot be routed"):
        validate_project(name)
    with pytest.raises(ValidationError):
        router.render_vhost(name, 8000, 1)
    with pytest.raises(ValidationError):
        router.render_stopped(name)
    with pytest.raises(ValidationError):
        router.vhost_path(name)
    with pytest.raises(ValidationError):
        router.url(name)


async def test_route_refuses_a_bad_name_before_touching_files(tmp_path: Path) -> None:
    router = make_router(tmp_path, binary="/nowhere/nginx")
    with pytest.raises(ValidationError):
        await router.route("x;}server{", 8000, 1)
    with pytest.raises(ValidationError):
        await router.route_stopped("UPPER")
    with pytest.raises(ValidationError):
        await router.remove("../nginx")
    assert not (tmp_path / "nginx").exists()


@pytest.mark.parametrize(
    ("port", "deployment_id"),
    [(0, 1), (65536, 1), (-1, 1), (True, 1), ("8000", 1), (8000, 0), (8000, -3), (8000, "7")],
)
def test_ports_and_ids_must_be_whole_numbers_in_range(
    tmp_path: Path, port: object, deployment_id: object
) -> None:
    with pytest.raises(ValidationError):
        make_router(tmp_path).render_vhost("shop", port, deployment_id)  # type: ignore[arg-type]


def test_settings_are_validated_when_the_router_is_made(tmp_path: Path) -> None:
    for bad in (
        {"domain": "bad domain"},
        {"domain": "a;b"},
        {"domain": "-x.com"},
        {"listen": "1.2.3.4; evil"},
        {"port": 0},
        {"port": 70000},
        {"body_limit_mb": 0},
    ):
        with pytest.raises(ValidationError):
            make_router(tmp_path, **bad)
    assert validate_domain("Example.COM.") == "example.com"
    assert validate_listen("::1") == "[::1]"
    assert validate_listen("[::]") == "[::]"
    assert validate_listen("0.0.0.0") == "0.0.0.0"
    assert validate_listen("localhost") == "localhost"


def test_urls(tmp_path: Path) -> None:
    assert make_router(tmp_path).url("shop") == "http://shop.test.localhost:8080/"
    assert make_router(tmp_path, port=80).url("shop") == "http://shop.test.localhost/"
    assert make_router(tmp_path, domain="Apps.Example.com", port=8443).url("my-app") == (
        "http://my-app.apps.example.com:8443/"
    )


def test_a_vhost_routes_the_project_to_its_port(tmp_path: Path) -> None:
    router = make_router(tmp_path, port=8081)
    text = router.render_vhost("shop", 20007, 42)

    assert not PLACEHOLDER.search(text)
    entries = [line for line in text.splitlines() if line and not line.startswith("#")]
    assert entries == ['shop.test.localhost "127.0.0.1:20007 42";']
    assert router.vhost_path("shop") == tmp_path / "nginx" / "vhosts" / "shop.conf"


def test_a_stopped_vhost_answers_503_for_the_project(tmp_path: Path) -> None:
    text = make_router(tmp_path).render_stopped("shop")
    assert not PLACEHOLDER.search(text)
    entries = [line for line in text.splitlines() if line and not line.startswith("#")]
    assert entries == ['shop.test.localhost "stopped";']


def test_a_suspended_or_free_project_gets_its_own_entry_and_nothing_else(tmp_path: Path) -> None:
    router = make_router(tmp_path)
    for page in ("suspended", "stopped-free"):
        entries = [
            line
            for line in router.render_stopped("shop", page).splitlines()
            if line and not line.startswith("#")
        ]
        assert entries == [f'shop.test.localhost "{page}";']
    with pytest.raises(ValidationError):
        router.render_stopped("shop", 'x";\n include /etc/passwd')


def test_the_main_config_proxies_with_the_headers_and_limits(tmp_path: Path) -> None:
    text = make_router(tmp_path, body_limit_mb=64).render_main()
    for header in ("Host", "X-Real-IP", "X-Forwarded-For", "X-Forwarded-Proto", "X-Forwarded-Host"):
        assert f"proxy_set_header {header} $" in text
    # nginx's own variables are left for nginx.
    assert "proxy_set_header Upgrade $http_upgrade;" in text
    assert "proxy_set_header Connection $connection_upgrade;" in text
    assert "map $http_upgrade $connection_upgrade" in text
    assert "client_max_body_size 64m;" in text
    assert re.search(r"proxy_read_timeout \d+s;", text)
    assert "proxy_pass http://$ghst_upstream;" in text
    # The deployment id is told only to the panel's probe, which knows the prefix's secret.
    assert "add_header X-Ghst-Deployment $ghst_probe_deployment always;" in text
    secret = (tmp_path / "nginx" / "probe.key").read_text().strip()
    assert f'"{secret}" $ghst_deployment;' in text
    assert "error_page 502 504 @ghst_down;" in text


def test_the_main_config_keeps_everything_in_the_prefix(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(nginx.os, "geteuid", lambda: 1000)
    text = make_router(tmp_path, listen="::1", port=8090).render_main()

    assert not PLACEHOLDER.search(text)
    assert "listen [::1]:8090 default_server;" in text
    assert "include vhosts/*.conf;" in text
    assert re.search(r"map_hash_max_size \d+;", text)
    assert "user " not in text  # not root: nginx could not switch users anyway
    # Every path is relative, so inside the prefix whatever it is.
    temp_paths = [
        f"{kind}_temp_path" for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    ]
    for directive in ["pid", "error_log", "access_log", "lock_file", *temp_paths]:
        found = re.search(rf"^\s*{directive} (\S+)", text, re.MULTILINE)
        assert found is not None, directive
        assert not found[1].startswith("/"), directive


def test_as_root_the_workers_run_as_nobody(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(nginx.os, "geteuid", lambda: 0)
    text = make_router(tmp_path).render_main()
    assert re.search(r"^user nobody (nogroup|nobody);$", text, re.MULTILINE)


def test_every_template_placeholder_is_filled(tmp_path: Path) -> None:
    router = make_router(tmp_path)
    rendered = [
        router.render_main(),
        router.render_vhost("shop", 20000, 1),
        router.render_stopped("shop"),
    ]
    names = sorted(path.name for path in TEMPLATES_DIR.glob("*.template"))
    assert names == ["nginx.conf.template", "stopped.conf.template", "vhost.conf.template"]
    for text in rendered:
        assert not PLACEHOLDER.search(text)


def test_the_pages_are_small_and_self_contained() -> None:
    pages = {path.name: path.read_text() for path in (TEMPLATES_DIR / "pages").glob("*.html")}
    assert sorted(pages) == ["404.html", "502.html", "503.html", "held.html", "suspended.html"]
    for name, page in pages.items():
        assert len(page.encode()) < 4096, name
        assert not re.search(r"(src|href)=|@import|url\(", page), name  # nothing to fetch
        assert "${" not in page, name
    assert 'echo var="ghst_project"' in pages["503.html"]
    assert "is stopped" in pages["503.html"]
    assert 'if expr="$ghst_free"' in pages["503.html"]
    assert "run out of money" in pages["suspended.html"] and "top up" in pages["suspended.html"]
    assert "operators" in pages["held.html"] and "money" not in pages["held.html"]
    assert 'echo var="ghst_project"' in pages["502.html"]


def test_nginx_error_lines_are_reduced_to_the_reason() -> None:
    output = (
        "2026/11/28 03:27:40 [warn] 815#815: could not build optimal server_names_hash\n"
        '2026/11/28 03:27:40 [emerg] 815#815: unknown directive "this" in /p/vhosts/x.conf:1\n'
        "nginx: configuration file /p/nginx.conf test failed\n"
    )
    assert first_error_line(output) == 'unknown directive "this" in /p/vhosts/x.conf:1'
    assert first_error_line("nginx: [emerg] bind() failed (98: in use)\n") == (
        "bind() failed (98: in use)"
    )
    assert first_error_line("something odd\n") == "something odd"
    assert first_error_line("") == "no reason given"
