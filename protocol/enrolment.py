"""Enrolment: a device (gate or console) makes its own key and a signing request for the office.

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


def install(key: Path, cert_files: list[Path], primary: Path, username: str) -> list[str]:
    """Put signed certificates in place if they certify our key (the pending new one first).

    The certificate whose CN is ``username`` goes to ``primary`` (``[mqtt] tls_cert``); a
    console's other connections' go beside it as ``<cn>.crt``, where
    :meth:`~protocol.mqtt.BrokerEndpoint.for_connection` looks for them.
    """
    from cryptography import x509

    pending = key.with_name(key.name + ".new")
    candidates = [path for path in (pending, key) if path.exists()]
    if not candidates or not cert_files:
        raise CertificateError(f"nothing to install: no key at {key} or no certificate given")
    chosen = next((c for c in candidates if same_key(cert_files[0], c)), None)
    if chosen is None:
        raise CertificateError(
            f"{cert_files[0]} certifies neither {pending} nor {key}: not this device's key"
        )
    placed: list[tuple[Path, bytes]] = []
    for cert_file in cert_files:
        if not same_key(cert_file, chosen):
            raise CertificateError(f"{cert_file} certifies another key than {cert_files[0]}")
        cert = x509.load_pem_x509_certificate(cert_file.read_bytes())
        cn = str(cert.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)[0].value)
        if cn != username and not cn.startswith(username + "."):
            raise CertificateError(f"{cert_file} is for {cn!r}, not {username!r} or one of its connections")
        placed.append((primary if cn == username else primary.with_name(f"{cn}.crt"), cert_file.read_bytes()))
    for target, data in placed:
        target.write_bytes(data)
    if chosen == pending:
        os.replace(pending, key)
    return [f"installed {target} (valid until {not_after(target):%Y-%m-%d})" for target, _ in placed]


def run(mqtt: MqttSettings, config: Path, username: str, *, renew: bool, install_files: list[Path]) -> int:
    """``gatepost edge|console enroll``: the command's whole behaviour, for both programs."""
    import sys

    from protocol.errors import GatepostError

    key = key_path(mqtt, config.resolve().parent, username)
    try:
        if install_files:
            primary = mqtt.tls_cert or key.with_name(f"{username}.crt")
            for line in install(key, install_files, primary, username):
                print(line)
            if mqtt.tls_cert is None:
                print(f"now set [mqtt] tls_ca, tls_cert = {str(primary)!r} and tls_key = {str(key)!r}")
            return 0
        done = enroll(key, username, renew=renew)
    except (GatepostError, OSError) as exc:
        print(f"gatepost enroll: {exc}", file=sys.stderr)
        return 2
    print(f"key (stays on this device, 0600): {done.key}")
    print(f"signing request for {done.common_name}: {done.csr}")
    print("at the office: gatepost broker sign --state DIR --csr FILE; then here:")
    print(f"  enroll --config {config} --install <the .crt files>")
    return 0
