"""Client-side certificate helpers: a key made on the device, its signing request, its expiry.

Gates and consoles make their own key (``gatepost edge enroll``) so it never leaves the
device; the office certifies the request (``gatepost broker sign``, broker.pki).  The key
is EC P-256, the one type mosquitto 2.0/OpenSSL 3.0 and Python's ``ssl`` all take for
TLS 1.2 client authentication (broker.pki says why not Ed25519).
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from protocol.errors import GatepostError


class CertificateError(GatepostError, ValueError):
    """A key or certificate file that cannot be read, or that does not belong with another."""


def new_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def load_key(path: Path) -> ec.EllipticCurvePrivateKey:
    key = serialization.load_pem_private_key(Path(path).read_bytes(), password=None)
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise CertificateError(f"{path}: not an EC private key")
    return key


def make_csr(key: ec.EllipticCurvePrivateKey, common_name: str) -> bytes:
    """A signing request for ``common_name``; made on the device, so the key never leaves it."""
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
        .sign(key, hashes.SHA256())
    )
    return csr.public_bytes(serialization.Encoding.PEM)


def not_after(cert_path: Path) -> dt.datetime:
    """When the certificate at ``cert_path`` expires (UTC)."""
    return x509.load_pem_x509_certificate(Path(cert_path).read_bytes()).not_valid_after_utc


def same_key(cert_path: Path, key_path: Path) -> bool:
    """True if the certificate certifies this private key."""
    cert = x509.load_pem_x509_certificate(Path(cert_path).read_bytes())
    return cert.public_key() == load_key(key_path).public_key()
