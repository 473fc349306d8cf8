"""``gatepost edge enroll``: the gate makes its own key and a signing request for the office.

The private key is generated here, on the gate, written 0600, and never copied anywhere:
the office sees only the request (``<key>.csr``), certifies it with ``gatepost broker
sign`` and sends back the certificate, which ``enroll --install`` puts in place after
checking it certifies this key.  Renewal is the same command with ``--renew``: a new key
is made beside the current one (``<key>.new``), so the gate keeps connecting with the
old certificate until the new one is installed.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from pathlib import Path

from protocol.certs import CertificateError, key_pem, make_csr, new_key, not_after, same_key
from protocol.mqtt import MqttSettings


@dataclass(frozen=True, slots=True)
class Enrolment:
    key: Path
    csr: Path
    common_name: str


def write_private(path: Path, data: bytes) -> None:
    """Created 0600 from the first byte (never readable by others, not even briefly)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    with contextlib.suppress(FileNotFoundError):
        tmp.unlink()
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)


def key_path(mqtt: MqttSettings, config_dir: Path, username: str) -> Path:
    """Where the key lives: ``[mqtt] tls_key``, else ``<user name>.key`` beside the configuration."""
    return mqtt.tls_key if mqtt.tls_key is not None else config_dir / f"{username}.key"


def enroll(key: Path, username: str, *, renew: bool = False) -> Enrolment:
    """Make a key (0600) and a CSR for ``username``; with ``renew``, a new key beside the current one."""
    if key.exists() and not renew:
        raise CertificateError(f"{key} exists: this device is enrolled; use --renew for a new key")
    target = key.with_name(key.name + ".new") if renew and key.exists() else key
    private = new_key()
    write_private(target, key_pem(private))
    csr = key.with_suffix(".csr")
    csr.write_bytes(make_csr(private, username))
    return Enrolment(target, csr, username)


def install(key: Path, cert_file: Path, cert_target: Path) -> str:
    """Put a signed certificate in place if it certifies our key (the pending new one first)."""
    pending = key.with_name(key.name + ".new")
    for candidate in (pending, key):
        if candidate.exists() and same_key(cert_file, candidate):
            cert_target.write_bytes(cert_file.read_bytes())
            if candidate == pending:
                os.replace(pending, key)
            return f"installed {cert_target} (valid until {not_after(cert_target):%Y-%m-%d})"
    raise CertificateError(f"{cert_file} certifies neither {pending} nor {key}: not this gate's key")
