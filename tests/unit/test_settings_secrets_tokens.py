from __future__ import annotations

import os
import stat
import threading
import uuid
from pathlib import Path

import jwt
import pytest

from core import secrets
from core.errors import AuthenticationError, ValidationError
from core.identity.tokens import TokenSigner
from core.settings import Settings


def test_settings_defaults_then_file_then_environment(tmp_path: Path) -> None:
    assert Settings.load({}).ssh_port == 2222
    config = tmp_path / "ghst.toml"
    config.write_text('ssh_port = 2300\ndomain = "panel.example.com"\n')
    loaded = Settings.load({"GHST_CONFIG": str(config), "GHST_SSH_PORT": "2400"})
    assert loaded.ssh_port == 2400  # environment wins over the file
    assert loaded.domain == "panel.example.com"
    assert Settings.load({"GHST_DATA_DIR": "/srv/ghst"}).data_dir == Path("/srv/ghst")


def test_settings_errors_are_clear(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="GHST_SSH_PORT: 'abc' is not a number"):
        Settings.load({"GHST_SSH_PORT": "abc"})
    config = tmp_path / "bad.toml"
    config.write_text("ssh_prot = 1\n")
    with pytest.raises(ValidationError, match="Unknown settings: ssh_prot"):
        Settings.load({"GHST_CONFIG": str(config)})
    with pytest.raises(ValidationError, match="Cannot read config file"):
        Settings.load({"GHST_CONFIG": str(tmp_path / "missing.toml")})


def test_secret_is_created_once_private_and_stable(tmp_path: Path) -> None:
    path = tmp_path / "data" / "jwt.key"
    first = secrets.load_or_create(path, secrets.random_key)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert len(first) >= 32
    assert secrets.load_or_create(path, secrets.random_key) == first


def test_concurrent_first_runs_agree_on_one_secret(tmp_path: Path) -> None:
    path = tmp_path / "jwt.key"
    results: list[bytes] = []
    threads = [
        threading.Thread(
            target=lambda: results.append(secrets.load_or_create(path, secrets.random_key))
        )
        for _ in range(8)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(set(results)) == 1
    assert list(tmp_path.iterdir()) == [path]  # no temporary files left


def test_token_round_trip_and_claims() -> None:
    signer = TokenSigner(b"k" * 32, ttl_seconds=60)
    token, claims = signer.issue(42)
    payload = jwt.decode(token, b"k" * 32, algorithms=["HS256"])
    assert set(payload) == {"sub", "jti", "iat", "exp"}
    assert payload["exp"] - payload["iat"] == 60
    assert signer.decode(token) == claims


def test_tokens_signed_elsewhere_expired_or_forged_are_refused() -> None:
    signer = TokenSigner(b"k" * 32, ttl_seconds=60)
    other = TokenSigner(b"o" * 32, ttl_seconds=60)
    with pytest.raises(AuthenticationError):
        signer.decode(other.issue(1)[0])
    expired = jwt.encode(
        {"sub": "1", "jti": str(uuid.uuid4()), "iat": 0, "exp": 1}, b"k" * 32, algorithm="HS256"
    )
    with pytest.raises(AuthenticationError):
        signer.decode(expired)
    unsigned = jwt.encode(
        {"sub": "1", "jti": str(uuid.uuid4()), "iat": 0, "exp": 2**40}, None, algorithm="none"
    )
    with pytest.raises(AuthenticationError):
        signer.decode(unsigned)
    with pytest.raises(ValueError, match="32 bytes"):
        TokenSigner(b"short", 60)
