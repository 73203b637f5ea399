"""Settings from GHST_* environment variables, over an optional TOML file (GHST_CONFIG)."""

from __future__ import annotations

import dataclasses
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from core.errors import ValidationError

ENV_PREFIX = "GHST_"


@dataclass(frozen=True)
class Settings:
    data_dir: Path = Path("var/data")
    database_url: str = "postgresql://ghst@127.0.0.1:54329/ghst"
    redis_url: str = "redis://127.0.0.1:63799/0"
    ssh_host: str = "127.0.0.1"
    ssh_port: int = 2222
    domain: str = "localhost"
    jwt_secret: str | None = field(default=None, repr=False)
    session_ttl: int = 86400
    bcrypt_rounds: int = 12
    login_max_failures: int = 5
    login_max_failures_per_ip: int = 20
    login_window: int = 900
    signup_max_per_ip: int = 10
    signup_window: int = 3600
    # "Not found" answers the Redis cache may hold at once (names a client can make up).
    cache_max_misses: int = 10000
    keepalive_interval: int = 15
    keepalive_count: int = 3
    shutdown_grace: float = 5.0
    # Archive storage: S3 when an endpoint is set, else a local directory.
    s3_endpoint: str | None = None
    s3_bucket: str = "ghst-archives"
    s3_region: str = "us-east-1"
    s3_access_key: str | None = field(default=None, repr=False)
    s3_secret_key: str | None = field(default=None, repr=False)
    # A CA bundle (PEM) to trust for an S3 endpoint over HTTPS with a certificate of its own,
    # e.g. a MinIO with a self-signed one; unset: the system's CAs.
    s3_ca_bundle: str | None = None
    storage_dir: str = ""
    # Deployments. `instance` prefixes every Docker object and label value the panel makes, so
    # two panels (or two test runs) can share one dockerd without touching each other's things.
    instance: str = "ghst"
    docker_url: str = ""  # empty: DOCKER_HOST or the default socket
    docker_pull: bool = True  # may `docker compose` pull images named in a compose file
    # Local images a build or a compose service may start from: glob patterns of image names,
    # separated by commas or blanks; empty: any image no ghst panel made (no `ghst.*` labels).
    base_images: str = ""
    build_remote_add: bool = False  # may a Dockerfile `ADD <url>` (fetched from the host's network)
    compose_command: str = ""  # empty: `docker compose` (v2) if present, else `docker-compose`
    port_min: int = 20000  # host ports (on 127.0.0.1) given to app containers
    port_max: int = 29999
    builds_at_once: int = 1
    builds_per_user: int = 1  # one tenant's deployments worked on at once (over all workers)
    deploy_timeout: float = 1800.0  # the most one deployment may take, builds and start included
    build_timeout: float = 600.0
    build_memory_mb: int = 2048
    health_timeout: float = 60.0
    drain_seconds: float = 2.0  # the old version keeps running this long after the switch
    lease_seconds: float = 30.0  # a worker that stops renewing this long has died
    keep_images: int = 3  # successful images kept per project for rollback
    # How often a worker looks for live deployments whose containers are gone (and heals them).
    live_check_seconds: float = 30.0
    keep_deployments: int = 20  # deployment rows (with their logs) kept per project
    build_log_max_bytes: int = 2_000_000  # one deployment's log is cut beyond this
    # Plan limits until billing sets them.
    app_memory_mb: int = 256
    app_cpus: float = 0.5
    app_pids: int = 256
    # Limits of a project's builds together (RUN steps): CPUs and processes; memory above.
    build_cpus: float = 1.0
    build_pids: int = 512
    compose_max_services: int = 10  # services of a compose app that may start
    # Billing: one currency per installation; days (and so daily charges) counted in one zone.
    currency: str = "RUB"
    billing_time_zone: str = "Europe/Moscow"
    charge_every_seconds: float = 600.0  # how often a worker runs the (idempotent) daily charge
    # Days an account may stay at zero or below before its paid projects are suspended, and
    # how long a suspended project's data is promised to be kept (nothing is deleted yet).
    suspension_grace_days: int = 3
    suspended_keep_days: int = 30
    # The payment webhook endpoint (core.billing.webhooks), on 127.0.0.1 behind nginx's
    # panel.<domain>; 0: not started. The test provider is for demonstrations, off by default;
    # its secret is this setting, else one made on first run in <data_dir>/webhook.key.
    payment_webhook_port: int = 8089
    payments_test_provider: bool = False
    payment_webhook_secret: str | None = field(default=None, repr=False)
    # What the billing screen tells users about paying the operator (bank details, say);
    # empty: a general text.
    billing_manual_instructions: str = ""
    # iptables rules keeping the panel's networks away from the host and these networks.
    firewall: bool = True
    firewall_blocked: str = "169.254.0.0/16,10.0.0.0/8,172.16.0.0/12,192.168.0.0/16,100.64.0.0/10"
    # The panel's own nginx (started by `ghst serve` unless nginx_managed is off).
    nginx_managed: bool = True
    nginx_binary: str = "nginx"
    nginx_prefix: str = ""  # empty: <data_dir>/nginx
    nginx_listen: str = "127.0.0.1"
    nginx_port: int = 8080
    nginx_body_limit_mb: int = 64
    nginx_log_max_mb: int = 64  # nginx's access and error logs are rotated past this (one old)
    # The audit log: entries older than this many days are exported (JSON lines, in
    # <data_dir>/audit) and then pruned by a workers' chore, run this often.
    audit_retention_days: int = 365
    audit_every_seconds: float = 3600.0

    @property
    def archives_dir(self) -> Path:
        """Where the local-directory storage keeps archives (GHST_STORAGE_DIR or data/archives)."""
        return Path(self.storage_dir) if self.storage_dir else self.data_dir / "archives"

    @property
    def nginx_dir(self) -> Path:
        """The private nginx's prefix: nginx.conf, vhosts/, pages/, logs."""
        return Path(self.nginx_prefix) if self.nginx_prefix else self.data_dir / "nginx"

    @property
    def builds_dir(self) -> Path:
        """Where archives are unpacked for `docker build`, one private folder per deployment."""
        return self.data_dir / "builds"

    @classmethod
    def load(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Defaults, then the TOML file named by GHST_CONFIG, then GHST_* variables."""
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        config_path = env.get(ENV_PREFIX + "CONFIG")
        if config_path:
            try:
                with open(config_path, "rb") as config_file:
                    values.update(tomllib.load(config_file))
            except (OSError, tomllib.TOMLDecodeError) as error:
                raise ValidationError(f"Cannot read config file {config_path}: {error}") from error
        for spec in dataclasses.fields(cls):
            raw = env.get(ENV_PREFIX + spec.name.upper())
            if raw is not None:
                values[spec.name] = raw
        unknown = set(values) - {spec.name for spec in dataclasses.fields(cls)}
        if unknown:
            raise ValidationError(f"Unknown settings: {', '.join(sorted(unknown))}")
        return cls(**{name: _coerce(name, value) for name, value in values.items()})


def _coerce(name: str, value: Any) -> Any:
    default = next(spec.default for spec in dataclasses.fields(Settings) if spec.name == name)
    try:
        if isinstance(default, bool):
            return str(value).lower() in {"1", "true", "yes", "on"}
        if isinstance(default, int):
            return int(value)
        if isinstance(default, float):
            return float(value)
        if isinstance(default, Path):
            return Path(value).expanduser()
    except ValueError as error:
        raise ValidationError(
            f"Setting {ENV_PREFIX}{name.upper()}: {value!r} is not a number"
        ) from error
    return None if value == "" else str(value)
