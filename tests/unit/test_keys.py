"""Parsing of OpenSSH public key lines: what users paste into the panel."""

from __future__ import annotations

import base64
import struct
import subprocess
from pathlib import Path

import pytest

from core.errors import ValidationError
from core.identity.keys import parse_public_key, public_key_from_blob


def ssh_keygen(tmp_path: Path, kind: str, bits: int | None = None) -> tuple[str, str]:
    """A real key pair from OpenSSH; returns (public line, `ssh-keygen -l` SHA256 fingerprint)."""
    path = tmp_path / f"id_{kind}_{bits}"
    command = ["ssh-keygen", "-q", "-t", kind, "-N", "", "-C", "me@laptop", "-f", str(path)]
    if bits:
        command += ["-b", str(bits)]
    subprocess.run(command, check=True)
    line = path.with_suffix(".pub").read_text().strip()
    listing = subprocess.run(
        ["ssh-keygen", "-l", "-E", "sha256", "-f", str(path.with_suffix(".pub"))],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return line, listing.split()[1]


@pytest.mark.parametrize(
    ("kind", "bits"),
    [("ed25519", None), ("ecdsa", 256), ("ecdsa", 384), ("ecdsa", 521), ("rsa", 2048)],
)
def test_accepts_supported_keys_with_openssh_fingerprint(
    tmp_path: Path, kind: str, bits: int | None
) -> None:
    line, fingerprint = ssh_keygen(tmp_path, kind, bits)
    key = parse_public_key(line)
    assert key.fingerprint == fingerprint
    assert key.comment == "me@laptop"
    assert key.openssh_line() == line
    assert public_key_from_blob(key.blob) == parse_public_key(line.rsplit(" ", 1)[0])


def test_refuses_short_rsa_with_its_size(tmp_path: Path) -> None:
    line, _ = ssh_keygen(tmp_path, "rsa", 1024)
    with pytest.raises(ValidationError, match="1024 bits; RSA keys need at least 2048"):
        parse_public_key(line)


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("", "Paste a public key line"),
        ("ssh-dss AAAAB3NzaC1kc3MAAACBAP", "Unsupported key type 'ssh-dss'"),
        ("ssh-ed25519", "no key data"),
        ("ssh-ed25519 not*base64", "not valid base64"),
        ("-----BEGIN OPENSSH PRIVATE KEY-----", "That is a private key"),
        ("ssh-ed25519 AAAA\nssh-ed25519 AAAA", "single key"),
    ],
)
def test_refuses_malformed_lines_with_a_clear_message(line: str, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        parse_public_key(line)


def _string(data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + data


def test_refuses_data_that_does_not_match_its_declared_type() -> None:
    rsa_blob = _string(b"ssh-rsa") + _string(b"\x01\x00\x01") + _string(b"\x00" + b"\xff" * 256)
    with pytest.raises(ValidationError, match="says 'ssh-rsa'"):
        parse_public_key("ssh-ed25519 " + base64.b64encode(rsa_blob).decode())
    short_ed25519 = _string(b"ssh-ed25519") + _string(b"\x01" * 31)
    with pytest.raises(ValidationError, match="32 bytes"):
        parse_public_key("ssh-ed25519 " + base64.b64encode(short_ed25519).decode())
    trailing = _string(b"ssh-ed25519") + _string(b"\x01" * 32) + b"junk"
    with pytest.raises(ValidationError, match="trailing bytes"):
        parse_public_key("ssh-ed25519 " + base64.b64encode(trailing).decode())
