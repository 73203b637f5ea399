"""Compose files: what parse_compose refuses (each option with its own message), which service
gets the web traffic and on which port, and what render_compose writes for compose to run."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

import pytest
import yaml

from core.errors import ValidationError
from core.runtime.compose.app import ComposeApp, ServiceBuild
from core.runtime.compose.errors import ComposeRejected
from core.runtime.compose.load import parse_compose
from core.runtime.compose.render import render_compose, volume_name
from core.runtime.firewall import network_options


def compose(text: str) -> str:
    return textwrap.dedent(text).strip() + "\n"


def one_service(options: str) -> str:
    """A compose file whose single service `web` has `options` (YAML, dedented)."""
    body = textwrap.indent(textwrap.dedent(options).strip(), " " * 4)
    return f"services:\n  web:\n    image: shop:1\n{body}\n"


RENDER_DEFAULTS: dict[str, Any] = {
    "stack": "ghst-shop-7",
    "instance": "ghst",
    "project": "shop",
    "deployment_id": 7,
    "user_id": 42,
    "host_port": 20007,
    "app_port": 8000,
    "built_images": {},
    "env": {},
    "memory_bytes": 256 * 1024 * 1024,
    "cpus": 0.5,
    "pids": 256,
}


def render(app: ComposeApp, **overrides: Any) -> dict[str, Any]:
    text = render_compose(app, **{**RENDER_DEFAULTS, **overrides})
    document = yaml.safe_load(text)
    assert isinstance(document, dict)
    return document


# --- refusals ---------------------------------------------------------------------------------

REFUSED_OPTIONS = [
    ("privileged: true", "Service 'web' asks for privileged mode, which this panel does not allow"),
    ("network_mode: host", "Service 'web' asks for the host's network (network_mode: host)"),
    (
        "network_mode: 'container:other'",
        "asks to join the network of another container (network_mode: container:other)",
    ),
    ("pid: host", "Service 'web' asks for the host's process namespace (pid: host)"),
    ("pid: 'container:x'", "asks to share the process namespace of another container"),
    ("ipc: host", "Service 'web' asks for the host's IPC namespace (ipc: host)"),
    ("ipc: 'container:db'", "asks to share the IPC namespace of another container"),
    ("uts: host", "Service 'web' asks for the host's UTS namespace (hostname) (uts: host)"),
    ("userns_mode: host", "Service 'web' asks for the host's user namespace (userns_mode: host)"),
    ("cgroup: host", "Service 'web' asks for the host's cgroup namespace (cgroup: host)"),
    ("cgroup_parent: system.slice", "asks for the cgroup parent 'system.slice' (cgroup_parent)"),
    ("volumes: ['./data:/data']", "Service 'web' mounts the host path './data' (volumes)"),
    ("volumes: ['/etc:/host-etc:ro']", "mounts the host path '/etc' (volumes)"),
    ("volumes: ['~/secrets:/s']", "mounts the host path '~/secrets' (volumes)"),
    ("volumes: ['../up:/up']", "mounts the host path '../up' (volumes)"),
    (
        "volumes: [{type: bind, source: /srv, target: /srv}]",
        "mounts the host path '/srv' (volumes)",
    ),
    (
        "volumes: ['/var/run/docker.sock:/var/run/docker.sock']",
        "Service 'web' mounts the Docker socket (/var/run/docker.sock)",
    ),
    (
        "volumes: [{type: bind, source: /run/docker.sock, target: /d.sock}]",
        "mounts the Docker socket (/var/run/docker.sock)",
    ),
    ("devices: ['/dev/sda:/dev/sda']", "Service 'web' asks for host devices (devices)"),
    ("device_cgroup_rules: ['c 1:3 mr']", "asks for device access rules (device_cgroup_rules)"),
    ("cap_add: [SYS_ADMIN]", "Service 'web' asks for extra capabilities (cap_add: SYS_ADMIN)"),
    ("cap_add: [ALL]", "asks for extra capabilities (cap_add: ALL)"),
    (
        "security_opt: ['seccomp:unconfined']",
        "asks to turn off a security profile (security_opt: seccomp:unconfined)",
    ),
    (
        "security_opt: ['seccomp=unconfined']",
        "asks to turn off a security profile (security_opt: seccomp=unconfined)",
    ),
    (
        "security_opt: ['apparmor:unconfined']",
        "asks to turn off a security profile (security_opt: apparmor:unconfined)",
    ),
    (
        "security_opt: ['label:disable']",
        "asks to turn off a security profile (security_opt: label:disable)",
    ),
    (
        "security_opt: ['label=disable']",
        "asks to turn off a security profile (security_opt: label=disable)",
    ),
    (
        "security_opt: ['seccomp=/etc/profile.json']",
        "asks for the security option 'seccomp=/etc/profile.json' (security_opt)",
    ),
    ("sysctls: {net.core.somaxconn: 1024}", "Service 'web' sets kernel parameters (sysctls)"),
    (
        "volumes_from: ['container:panel_db_1']",
        "takes volumes from the container 'panel_db_1' (volumes_from)",
    ),
    ("external_links: ['other_db_1:db']", "links to containers outside this app"),
    (
        "env_file: ../panel.env",
        "Service 'web' reads env_file '../panel.env', which is outside the app folder",
    ),
    ("env_file: [/etc/environment]", "reads env_file '/etc/environment', which is outside"),
    (
        "extends: {file: ../base.yml, service: base}",
        "Service 'web' extends a service in '../base.yml', which is outside the app folder",
    ),
    ("secrets: [token]", "Service 'web' uses secrets:"),
    ("configs: [nginx]", "Service 'web' uses configs:"),
    ("volumes: [data:/data]", "mounts the volume 'data', which is not declared"),
    ("depends_on: [db]", "depends on 'db', which is not a service of this file"),
    ("networks: [outside]", "joins the network 'outside', which is not declared"),
    ("network_mode: 'service:db'", "uses the network of 'db' (network_mode)"),
    ("build: {context: ., network: host}", "builds with the host's network (build.network: host)"),
    ("build: ../other", "builds from '../other', which is outside the app folder"),
    ("build: /srv/app", "builds from '/srv/app', which is outside the app folder"),
    ("build: 'a/../../b'", "builds from 'a/../../b', which is outside the app folder"),
    (
        "build: 'https://github.com/x/y.git#main'",
        "builds from 'https://github.com/x/y.git#main', a remote context",
    ),
    ("build: 'git@github.com:x/y.git'", "a remote context"),
    (
        "build: {context: ., dockerfile: /etc/shadow}",
        "builds with the Dockerfile '/etc/shadow', an absolute path",
    ),
    (
        "build: {context: sub, dockerfile: ../../Dockerfile}",
        "builds with the Dockerfile '../../Dockerfile', which is outside its build context folder",
    ),
    ("build: {dockerfile_inline: 'FROM x'}", "uses build.dockerfile_inline"),
]


@pytest.mark.parametrize(("options", "message"), REFUSED_OPTIONS)
def test_each_dangerous_option_is_refused_with_its_own_message(options: str, message: str) -> None:
    with pytest.raises(ComposeRejected) as caught:
        parse_compose(one_service(options))
    assert message in caught.value.message
    assert isinstance(caught.value, ValidationError)


def test_the_refusal_names_the_service_that_asks() -> None:
    text = compose(
        """
        services:
          web: {image: shop:1, ports: ["8000"]}
          backup: {image: tool:1, volumes: ["/:/host"]}
        """
    )
    with pytest.raises(ComposeRejected, match=r"^Service 'backup' mounts the host path '/'"):
        parse_compose(text)


def test_the_docker_socket_refusal_says_what_it_would_give() -> None:
    with pytest.raises(ComposeRejected) as caught:
        parse_compose(one_service("volumes: ['/var/run/docker.sock:/var/run/docker.sock:ro']"))
    assert "control of the whole server" in caught.value.message


REFUSED_TOP_LEVEL = [
    ("networks: {outside: {external: true}}", "Network 'outside' is external"),
    ("networks: {lan: {driver: macvlan}}", "Network 'lan' uses the driver 'macvlan'"),
    ("networks: {lan: {driver: host}}", "Network 'lan' uses the driver 'host'"),
    (
        "networks: {lan: {driver_opts: {com.docker.network.bridge.name: docker0}}}",
        "Network 'lan' sets driver_opts",
    ),
    ("networks: {lan: {ipam: {config: [{subnet: 10.0.0.0/8}]}}}", "sets its addresses (ipam)"),
    ("volumes: {data: {external: true}}", "Volume 'data' is external"),
    (
        "volumes: {data: {driver_opts: {type: none, o: bind, device: /etc}}}",
        "Volume 'data' sets driver_opts (which can mount host folders)",
    ),
    ("volumes: {data: {driver: rexray}}", "Volume 'data' uses the driver 'rexray'"),
    ("secrets: {token: {file: /etc/shadow}}", "Secret 'token' is read from a file"),
    ("configs: {site: {file: ./site.conf}}", "Config 'site' is read from a file"),
    ("secrets: {token: {external: true}}", "Secret 'token' is external"),
    ("include: [other.yml]", "uses include:"),
]


@pytest.mark.parametrize(("top_level", "message"), REFUSED_TOP_LEVEL)
def test_dangerous_top_level_sections_are_refused(top_level: str, message: str) -> None:
    with pytest.raises(ComposeRejected) as caught:
        parse_compose(one_service("ports: ['8000']") + top_level + "\n")
    assert message in caught.value.message


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "The compose file is empty."),
        ("# only a comment\n", "The compose file is empty."),
        ("just a string\n", "its top level should be a mapping with a services: section"),
        ("- a\n- b\n", "its top level should be a mapping"),
        ("services: [web]\n", "has no services: section"),
        ("version: '3'\n", "has no services: section"),
        ("services:\n  web: {image: x\n", "is not valid YAML (line 3, column 1)"),
        ("services:\n  web:\n\timage: x\n", "is not valid YAML"),
        ("services:\n  web: nginx\n", "Service 'web' should be a mapping of options"),
        ("services:\n  'bad name': {image: x}\n", "The service name 'bad name' is not valid"),
        ("services:\n  web: {ports: ['80']}\n", "has neither an image: nor a build: section"),
        ("services:\n  web: !!python/object:os.system {}\n", "is not valid YAML"),
        ("a: &a [*a]\nservices: {web: {image: x}}\n", "refers to itself"),
    ],
)
def test_garbage_is_refused_with_a_clear_message(text: str, message: str) -> None:
    with pytest.raises(ComposeRejected) as caught:
        parse_compose(text)
    assert message in caught.value.message


def test_a_billion_laughs_is_refused_without_expanding_it() -> None:
    lines = ['l0: &l0 ["lol"]']
    for level in range(1, 10):
        refs = ", ".join([f"*l{level - 1}"] * 10)
        lines.append(f"l{level}: &l{level} [{refs}]")
    text = "x-laughs:\n" + "\n".join("  " + line for line in lines)
    text += "\nservices:\n  web:\n    image: x\n    command: *l9\n"
    with pytest.raises(ComposeRejected, match="too large once its anchors are expanded"):
        parse_compose(text)


def test_a_file_over_one_mebibyte_is_refused() -> None:
    text = one_service("ports: ['8000']") + "x-pad: '" + "a" * (1 << 20) + "'\n"
    with pytest.raises(ComposeRejected, match="larger than 1 MiB"):
        parse_compose(text)


def test_user_strings_in_messages_are_escaped() -> None:
    with pytest.raises(ComposeRejected) as caught:
        parse_compose(one_service('volumes: ["/x\\e[2J:/y"]'))
    assert "\x1b" not in caught.value.message
    assert "\\x1b[2J" in caught.value.message


# --- what is allowed --------------------------------------------------------------------------


def test_harmless_options_pass() -> None:
    text = compose(
        """
        x-common: &common
          restart: always
          environment: {TZ: UTC}
        services:
          web:
            <<: *common
            build: .
            ports: ["8080:8000"]
            privileged: false
            cap_add: [NET_BIND_SERVICE]
            cap_drop: [ALL]
            security_opt: ["no-new-privileges:true"]
            volumes: [data:/data, /cache, {type: tmpfs, target: /tmp}]
            tmpfs: /run
            network_mode: bridge
            depends_on: {db: {condition: service_healthy}}
            container_name: shop
          db:
            <<: *common
            image: postgres:15
            volumes: [{type: volume, source: pg, target: /var/lib/postgresql/data}]
            networks: [back]
            ipc: shareable
          sidecar:
            image: tool:1
            network_mode: "service:web"
            volumes_from: ["db:ro"]
        volumes: {data: {}, pg: {driver: local}}
        networks: {back: {internal: true}}
        """
    )
    app = parse_compose(text)
    assert app.services == ("web", "db", "sidecar")
    assert app.web_service == "web"
    assert app.app_port == 8000
    assert app.keeps_data
    assert app.builds == (ServiceBuild("web", ".", "Dockerfile"),)


def test_false_written_as_a_string_is_false() -> None:
    app = parse_compose(one_service("privileged: '${PRIV:-false}'\nread_only: 'false'"))
    assert render(app)["services"]["web"]["read_only"] is False
    with pytest.raises(ComposeRejected, match="privileged mode"):
        parse_compose(one_service("privileged: 'true'"))


def test_a_one_letter_volume_is_a_volume_and_a_windows_path_a_host_path() -> None:
    with pytest.raises(ComposeRejected, match="mounts the volume 'c', which is not declared"):
        parse_compose(one_service("volumes: ['c:/data']"))
    with pytest.raises(ComposeRejected) as caught:
        parse_compose(one_service(r"volumes: ['C:\data:/data']"))
    assert "mounts the host path 'C:\\\\data:/data'" in caught.value.message  # escaped


def test_a_file_without_named_volumes_keeps_no_data() -> None:
    app = parse_compose(one_service("volumes: [/cache, {type: tmpfs, target: /tmp}]"))
    assert not app.keeps_data


def test_services_in_a_profile_are_left_out() -> None:
    app = parse_compose(
        compose(
            """
            services:
              web: {image: shop:1}
              debug: {image: tool:1, profiles: [debug], privileged: true}
            """
        )
    )
    assert app.services == ("web",)


# --- web service and its port -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("ports", "expected"),
    [
        ("['8000']", 8000),
        ("[8000]", 8000),
        ("['8080:8000']", 8000),
        ("['127.0.0.1:8080:8000/tcp']", 8000),
        ("['[::1]:8080:8000']", 8000),
        ("['8000-8001:8000-8001']", 8000),
        ("['5353:53/udp', '8000']", 8000),
        ("[{target: 3000, published: 80, protocol: tcp}]", 3000),
        ("[{target: 3000}]", 3000),
    ],
)
def test_the_app_port_is_the_container_side_of_the_first_port(ports: str, expected: int) -> None:
    assert parse_compose(one_service(f"ports: {ports}")).app_port == expected


@pytest.mark.parametrize(("expose", "expected"), [("['3000']", 3000), ("[3000/tcp]", 3000)])
def test_without_ports_the_app_port_comes_from_expose(expose: str, expected: int) -> None:
    assert parse_compose(one_service(f"expose: {expose}")).app_port == expected


def test_without_ports_or_expose_the_app_port_is_unknown() -> None:
    assert parse_compose(one_service("command: run")).app_port is None


def test_an_unreadable_port_is_refused() -> None:
    with pytest.raises(ComposeRejected, match="the port entry 'eighty' cannot be read"):
        parse_compose(one_service("ports: [eighty]"))
    with pytest.raises(ComposeRejected, match="cannot be read"):
        parse_compose(one_service("ports: ['70000']"))


def test_the_first_service_with_ports_is_the_web_service() -> None:
    text = compose(
        """
        services:
          db: {image: postgres:15}
          web: {image: shop:1}
          api: {image: api:1, ports: ["9000"]}
          admin: {image: admin:1, ports: ["9100"]}
        """
    )
    app = parse_compose(text)
    assert (app.web_service, app.app_port) == ("api", 9000)


@pytest.mark.parametrize(("name"), ["web", "app"])
def test_without_ports_a_service_named_web_or_app_is_the_web_service(name: str) -> None:
    text = compose(
        f"""
        services:
          db: {{image: postgres:15}}
          {name}: {{image: shop:1, expose: ["5000"]}}
        """
    )
    app = parse_compose(text)
    assert (app.web_service, app.app_port) == (name, 5000)


def test_a_single_service_is_the_web_service() -> None:
    app = parse_compose("services:\n  shop: {image: shop:1}\n")
    assert app.web_service == "shop"


def test_several_services_and_no_hint_tell_how_to_mark_the_web_service() -> None:
    text = "services:\n  front: {image: a}\n  back: {image: b}\n"
    with pytest.raises(ComposeRejected) as caught:
        parse_compose(text)
    assert "2 services (front, back) and none publishes a port" in caught.value.message
    assert "ports: entry" in caught.value.message


# --- builds -----------------------------------------------------------------------------------


def test_build_contexts_are_normalised_inside_the_app(tmp_path: Path) -> None:
    (tmp_path / "api" / "docker").mkdir(parents=True)
    (tmp_path / "api" / "docker" / "Dockerfile.prod").write_text("FROM x\n")
    (tmp_path / "Dockerfile").write_text("FROM x\n")
    (tmp_path / "worker").mkdir()
    text = compose(
        """
        services:
          web:
            build: {context: ./api/, dockerfile: docker/Dockerfile.prod, args: [A=1, B], target: prod}
            ports: ["8000"]
          root: {build: .}
          worker: {build: {context: worker/../api, dockerfile: ./docker//Dockerfile.prod}}
        """
    )
    app = parse_compose(text, tmp_path)
    assert app.builds == (
        ServiceBuild("web", "api", "docker/Dockerfile.prod", args=(("A", "1"),), target="prod"),
        ServiceBuild("root", ".", "Dockerfile"),
        ServiceBuild("worker", "api", "docker/Dockerfile.prod"),
    )


def test_a_dockerfile_outside_its_build_context_is_refused(tmp_path: Path) -> None:
    (tmp_path / "worker").mkdir()
    (tmp_path / "Dockerfile").write_text("FROM x\n")
    with pytest.raises(
        ComposeRejected,
        match=r"Service 'worker': the Dockerfile '\.\./Dockerfile' leads outside its build context",
    ):
        parse_compose(
            "services:\n  worker: {build: {context: worker, dockerfile: ../Dockerfile}}\n", tmp_path
        )


def test_a_missing_build_folder_or_dockerfile_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ComposeRejected, match="the build context 'api' is not in the app folder"):
        parse_compose("services:\n  web: {build: api}\n", tmp_path)
    with pytest.raises(
        ComposeRejected, match="the Dockerfile 'Dockerfile' is not in its build context folder"
    ):
        parse_compose("services:\n  web: {build: .}\n", tmp_path)


def test_a_build_context_through_a_link_out_of_the_app_is_refused(tmp_path: Path) -> None:
    app_dir = tmp_path / "app"
    app_dir.mkdir()
    (tmp_path / "outside").mkdir()
    (tmp_path / "outside" / "Dockerfile").write_text("FROM x\n")
    (app_dir / "sneaky").symlink_to(tmp_path / "outside")
    with pytest.raises(
        ComposeRejected, match="the build context 'sneaky' leads outside the app folder"
    ):
        parse_compose("services:\n  web: {build: sneaky}\n", app_dir)


# --- env files, .env and interpolation --------------------------------------------------------


def test_env_files_inside_the_app_are_read_and_merged_under_environment(tmp_path: Path) -> None:
    (tmp_path / "conf").mkdir()
    (tmp_path / "conf" / "app.env").write_text(
        "# settings\nexport A=from-file\nB='quoted # not a comment'\nC=1 # comment\nHOST_VAR\n"
    )
    text = one_service(
        "env_file: [conf/app.env, {path: missing.env, required: false}]\nenvironment: {A: own}"
    )
    app = parse_compose(text, tmp_path)
    assert app.env_files == {
        "web": {"A": "from-file", "B": "quoted # not a comment", "C": "1"},
    }
    environment = render(app)["services"]["web"]["environment"]
    assert environment == {"A": "own", "B": "quoted # not a comment", "C": "1"}
    assert "env_file" not in render(app)["services"]["web"]


def test_a_required_env_file_that_is_missing_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ComposeRejected, match=r"the env_file 'app\.env' is not in the app folder"):
        parse_compose(one_service("env_file: app.env"), tmp_path)


def test_interpolation_uses_dotenv_and_given_variables_never_the_panels_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GHST_JWT_SECRET", "panel-secret")
    (tmp_path / ".env").write_text("TAG=2.1\nGREETING=hello\n")
    text = one_service(
        """
        image: shop:${TAG}
        ports: ["${PORT:-8000}"]
        environment:
          SECRET: ${GHST_JWT_SECRET}
          GREETING: ${GREETING:?set it}
          NAME: ${NAME-anonymous}
          PRICE: "$$5 and $${HOME}"
          ONLY_IF: ${GREETING:+yes}
          NESTED: ${MISSING:-${GREETING}}
        """
    )
    app = parse_compose(text, tmp_path, variables={"GREETING": "hi"})
    web = app.document["services"]["web"]
    assert web["image"] == "shop:2.1"
    assert app.app_port == 8000
    assert web["environment"] == {
        "SECRET": "",
        "GREETING": "hi",
        "NAME": "anonymous",
        "PRICE": "$5 and ${HOME}",
        "ONLY_IF": "yes",
        "NESTED": "hi",
    }
    rendered = render_compose(app, **RENDER_DEFAULTS)
    assert "panel-secret" not in rendered
    # Every $ is escaped, so compose hands the container the literal text.
    assert "$$5 and $${HOME}" in rendered


def test_a_required_variable_that_is_unset_is_refused() -> None:
    with pytest.raises(ComposeRejected, match="needs the variable DB_URL: set it in settings"):
        parse_compose(one_service("environment: {DB_URL: '${DB_URL:?set it in settings}'}"))


def test_interpolation_cannot_sneak_a_host_path_past_the_checks() -> None:
    text = one_service("volumes: ['${DATA:-data}:/data']") + "volumes: {data: {}}\n"
    assert parse_compose(text).keeps_data
    with pytest.raises(ComposeRejected, match="mounts the host path '/etc'"):
        parse_compose(text, variables={"DATA": "/etc"})


# --- extends ----------------------------------------------------------------------------------


def test_extends_in_the_same_file_is_resolved_and_checked() -> None:
    base = compose(
        """
        services:
          base: {image: shop:1, environment: {A: "1", B: "1"}, profiles: [never]}
          web: {extends: base, environment: {B: "2"}, ports: ["8000"]}
        """
    )
    app = parse_compose(base)
    assert app.services == ("web",)
    web = app.document["services"]["web"]
    assert (web["image"], web["environment"]) == ("shop:1", {"A": "1", "B": "2"})
    dangerous = base.replace("image: shop:1,", "image: shop:1, privileged: true,")
    with pytest.raises(ComposeRejected, match="Service 'web' asks for privileged mode"):
        parse_compose(dangerous)


def test_extends_of_a_file_inside_the_app_is_read_and_checked(tmp_path: Path) -> None:
    (tmp_path / "common").mkdir()
    (tmp_path / "common" / "base.yml").write_text(
        "services:\n  base: {image: shop:1, cap_add: [SYS_ADMIN]}\n"
    )
    text = "services:\n  web: {extends: {file: common/base.yml, service: base}}\n"
    with pytest.raises(ComposeRejected, match="asks for extra capabilities"):
        parse_compose(text, tmp_path)
    (tmp_path / "common" / "base.yml").write_text("services:\n  base: {image: shop:1}\n")
    assert parse_compose(text, tmp_path).document["services"]["web"]["image"] == "shop:1"


def test_extends_in_a_loop_is_refused() -> None:
    text = "services:\n  a: {extends: b}\n  b: {extends: a}\n"
    with pytest.raises(ComposeRejected, match="extends services in a loop"):
        parse_compose(text)


# --- rendering --------------------------------------------------------------------------------

FULL = compose(
    """
    services:
      web:
        build: .
        container_name: shop
        ports: ["0.0.0.0:80:8000", "443:8443"]
        expose: ["8000"]
        restart: always
        privileged: false
        mem_limit: 8g
        cpus: 4
        pids_limit: -1
        shm_size: 2g
        ulimits: {nofile: {soft: 10000000, hard: 10000000}, nproc: 100000}
        environment: [DEBUG=1, MODE=file, FROM_HOST]
        labels: {team: blue, ghst.user: "1", com.docker.compose.project: other}
        deploy: {resources: {limits: {memory: 8g}}}
        oom_kill_disable: true
        init: false
        logging: {driver: syslog, options: {syslog-address: "udp://10.0.0.1:514"}}
        depends_on: [db]
        volumes: [data:/data]
        dns: [10.0.0.1]
        healthcheck: {test: [CMD, wget, -q, localhost:8000], interval: 5s, retries: 3}
        network_mode: bridge
      db:
        image: postgres:15
        ports: ["5432:5432"]
        container_name: shop-db
        volumes: [{type: volume, source: pg, target: /var/lib/postgresql/data, read_only: false}]
        networks: {back: {aliases: [database], ipv4_address: 172.30.0.5}}
    volumes:
      data: {name: ghst-someone-else_data, labels: {kept: "yes"}}
      pg: {}
    networks:
      back: {internal: true, name: ghst-other_default, labels: {net: back}}
    """
)


@pytest.fixture
def rendered() -> dict[str, Any]:
    app = parse_compose(FULL)
    return render(
        app,
        built_images={"web": "ghst/shop:7"},
        env={"MODE": "panel", "PORT": "8000", "DATABASE_URL": "postgres://db/shop"},
    )


def test_only_the_web_service_publishes_a_port_on_loopback(rendered: dict[str, Any]) -> None:
    services = rendered["services"]
    assert services["web"]["ports"] == ["127.0.0.1:20007:8000"]
    assert "ports" not in services["db"]


def test_built_services_run_the_built_image_and_others_keep_theirs(
    rendered: dict[str, Any],
) -> None:
    web, db = rendered["services"]["web"], rendered["services"]["db"]
    assert (web["image"], db["image"]) == ("ghst/shop:7", "postgres:15")
    assert "build" not in web


def test_limits_init_restart_and_logging_are_the_panels(rendered: dict[str, Any]) -> None:
    for service in rendered["services"].values():
        assert service["init"] is True
        assert service["restart"] == "unless-stopped"
        assert service["mem_limit"] == service["memswap_limit"] == 256 * 1024 * 1024
        assert service["cpus"] == 0.5
        assert service["pids_limit"] == 256
        assert service["security_opt"] == ["no-new-privileges:true"]
        assert service["logging"] == {
            "driver": "json-file",
            "options": {"max-size": "10m", "max-file": "3"},
        }
        for dropped in ("container_name", "deploy", "oom_kill_disable", "privileged", "dns"):
            assert dropped not in service
    assert rendered["services"]["web"]["shm_size"] == 256 * 1024 * 1024
    assert rendered["services"]["web"]["ulimits"] == {
        "nofile": {"soft": 1_048_576, "hard": 1_048_576}
    }


def test_our_labels_win_over_the_users(rendered: dict[str, Any]) -> None:
    assert rendered["services"]["web"]["labels"] == {
        "team": "blue",
        "ghst.instance": "ghst",
        "ghst.project": "shop",
        "ghst.deployment": "7",
        "ghst.user": "42",
    }
    assert rendered["services"]["db"]["labels"]["ghst.deployment"] == "7"


def test_panel_env_vars_win_over_the_files_and_host_variables_are_dropped(
    rendered: dict[str, Any],
) -> None:
    assert rendered["services"]["web"]["environment"] == {
        "DEBUG": "1",
        "MODE": "panel",
        "PORT": "8000",
        "DATABASE_URL": "postgres://db/shop",
    }
    assert rendered["services"]["db"]["environment"]["DATABASE_URL"] == "postgres://db/shop"


def test_named_volumes_get_the_projects_names_and_labels(rendered: dict[str, Any]) -> None:
    assert rendered["volumes"] == {
        "data": {
            "name": "ghst-shop_data",
            "labels": {
                "kept": "yes",
                "ghst.instance": "ghst",
                "ghst.project": "shop",
                "ghst.user": "42",
            },
        },
        "pg": {
            "name": "ghst-shop_pg",
            "labels": {"ghst.instance": "ghst", "ghst.project": "shop", "ghst.user": "42"},
        },
    }
    assert rendered["services"]["web"]["volumes"] == ["data:/data"]
    assert rendered["services"]["db"]["volumes"] == [
        {"type": "volume", "target": "/var/lib/postgresql/data", "source": "pg", "read_only": False}
    ]


def test_volume_names_of_two_projects_never_meet() -> None:
    assert volume_name("ghst", "a-b", "c") != volume_name("ghst", "a", "b-c")


def test_networks_stay_the_stacks_own(rendered: dict[str, Any]) -> None:
    ours = {
        "ghst.instance": "ghst",
        "ghst.project": "shop",
        "ghst.deployment": "7",
        "ghst.user": "42",
    }
    # Each on a host interface of its own that the panel's firewall knows (core.runtime.firewall).
    assert rendered["networks"] == {
        "default": {"labels": ours, "driver_opts": network_options("ghst-shop-7_default")},
        "back": {
            "labels": {"net": "back", **ours},
            "driver_opts": network_options("ghst-shop-7_back"),
            "internal": True,
        },
    }
    assert rendered["services"]["db"]["networks"] == {"back": {"aliases": ["database"]}}
    assert "network_mode" not in rendered["services"]["web"]


def test_kept_options_survive(rendered: dict[str, Any]) -> None:
    web = rendered["services"]["web"]
    assert web["depends_on"] == ["db"]
    assert web["expose"] == ["8000"]
    assert web["healthcheck"] == {
        "test": ["CMD", "wget", "-q", "localhost:8000"],
        "interval": "5s",
        "retries": 3,
    }


def test_rendering_is_stable_and_round_trips_through_yaml() -> None:
    app = parse_compose(FULL)
    text = render_compose(app, **{**RENDER_DEFAULTS, "built_images": {"web": "ghst/shop:7"}})
    assert text.startswith("# Written by ghst for stack ghst-shop-7")
    assert "service web: 127.0.0.1:20007 -> port 8000" in text
    again = parse_compose(text)
    assert again.web_service == "web"
    assert again.app_port == 8000
    assert (
        render_compose(again, **{**RENDER_DEFAULTS, "built_images": {}}).split("\n", 2)[2]
        == (text.split("\n", 2)[2])
    )


def test_a_sidecar_on_another_services_network_keeps_it() -> None:
    text = compose(
        """
        services:
          web: {image: shop:1, ports: ["8000"]}
          proxy: {image: tool:1, network_mode: "service:web", expose: ["9000"]}
        """
    )
    proxy = render(parse_compose(text))["services"]["proxy"]
    assert proxy["network_mode"] == "service:web"
    assert "networks" not in proxy and "expose" not in proxy


def test_without_the_app_folder_env_files_stay_relative_paths_for_compose() -> None:
    app = parse_compose(one_service("env_file: [./conf//app.env]\nenvironment: {A: '1'}"))
    assert app.env_files == {}
    web = render(app)["services"]["web"]
    assert (web["env_file"], web["environment"]) == (["conf/app.env"], {"A": "1"})
