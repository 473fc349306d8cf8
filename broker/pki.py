"""The site's certificate authority: the broker's server certificate, client certificates, the CRL.

Every network connection to the broker is TLS, and a gate or console proves who it is
with a client certificate whose common name is its connection's user name
(``gate.<site>.<gate>``, ``console.<name>[.<connection>]``, protocol.identity).  The
broker listens with ``use_identity_as_username``, so the CN *is* the login: mosquitto
2.0.11 then skips the password check (src/handle_connect.c) and the dynamic-security
plugin's ACLs apply by that name; ``use_username_as_clientid`` forces the client id to
it, which keeps "one credential, one client id" for certificates as the plugin's
client-id binding does for passwords.

Keys are EC P-256: mosquitto 2.0.11 with OpenSSL 3.0 and Python's ``ssl`` (paho) all
take it, and it is the curve every TLS 1.2 stack negotiates; Ed25519 certificates are
not accepted for TLS 1.2 client authentication by every peer, so P-256 is the one
choice that works everywhere.

Layout of ``<state_dir>/pki``::

    ca.crt  ca.key (0600)          the site CA; the key signs server, client certificates and the CRL
    server.crt  server.key (0600)  the broker's own certificate (names and addresses as SANs)
    crl.pem                        revoked serials; mosquitto reads it only when it starts
    issued.json                    every certificate issued: serial, CN, not_after, revoked
    certs/<cn>.crt                 the latest certificate for each CN
    keys/<cn>.key (0600)           only for keys made here (``add-gate --issue-key``): the trade-off
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from broker.errors import BrokerError
from broker.files import write_atomic
from protocol.certs import key_pem, load_key, new_key

CA_DAYS = 3650
SERVER_DAYS = 825
CLIENT_DAYS = 365
"""A year: long enough that renewal is a yearly chore, short enough that a key copied off
a gate stops working by itself.  The gate's status shows the date (``cert_not_after``)."""
CRL_DAYS = 3650
"""OpenSSL refuses every connection once the CRL's next update has passed, so the CRL is
re-signed on every revocation and every ``broker sync``; a long life keeps a broker that
nobody touches for years serving."""
_CLOCK_SKEW = dt.timedelta(minutes=5)


class PkiError(BrokerError):
    """A CA missing or already there, a signing request that is malformed or names no provisioned user."""


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def common_name(cert: x509.Certificate | x509.CertificateSigningRequest) -> str:
    names = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    if len(names) != 1:
        raise PkiError("the subject must hold exactly one common name")
    return str(names[0].value)


@dataclass(frozen=True, slots=True)
class Issued:
    common_name: str
    cert_path: Path
    not_after: dt.datetime
    serial: int


class SiteCA:
    """The CA files under ``<state_dir>/pki``; :meth:`init` creates them once."""

    def __init__(self, state_dir: Path) -> None:
        self.dir = Path(state_dir) / "pki"

    ca_cert = property(lambda self: self.dir / "ca.crt")
    ca_key = property(lambda self: self.dir / "ca.key")
    server_cert = property(lambda self: self.dir / "server.crt")
    server_key = property(lambda self: self.dir / "server.key")
    crl = property(lambda self: self.dir / "crl.pem")
    issued_path = property(lambda self: self.dir / "issued.json")

    def cert_path(self, cn: str) -> Path:
        return self.dir / "certs" / f"{cn}.crt"

    def key_path(self, cn: str) -> Path:
        return self.dir / "keys" / f"{cn}.key"

    @property
    def exists(self) -> bool:
        return self.ca_cert.exists() and self.ca_key.exists()

    # -- creation -----------------------------------------------------------------------

    def init(self, names: list[str], addresses: list[str], *, site: str = "gatepost") -> None:
        """Create the CA (unless there is one), the server certificate and an empty CRL.

        The server certificate is re-made on every call, so adding a name or address is
        ``broker init`` again with the new list; clients keep trusting the same CA.
        """
        self.dir.mkdir(parents=True, exist_ok=True)
        os.chmod(self.dir, 0o750)
        if not self.exists:
            key = new_key()
            name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"{site} site CA")])
            now = _now()
            cert = (
                x509.CertificateBuilder()
                .subject_name(name)
                .issuer_name(name)
                .public_key(key.public_key())
                .serial_number(x509.random_serial_number())
                .not_valid_before(now - _CLOCK_SKEW)
                .not_valid_after(now + dt.timedelta(days=CA_DAYS))
                .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
                .add_extension(
                    x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True
                )
                .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
                .sign(key, hashes.SHA256())
            )
            write_atomic(self.ca_key, key_pem(key).decode(), mode=0o600)
            write_atomic(self.ca_cert, cert.public_bytes(serialization.Encoding.PEM).decode(), mode=0o644)
        self.issue_server(names, addresses)
        self.write_crl()

    def issue_server(self, names: list[str], addresses: list[str]) -> None:
        if not names and not addresses:
            raise PkiError("the server certificate needs at least one --name or --address")
        sans: list[x509.GeneralName] = [x509.DNSName(name) for name in names]
        for address in addresses:
            try:
                sans.append(x509.IPAddress(ipaddress.ip_address(address)))
            except ValueError:
                raise PkiError(f"{address!r} is not an IP address (give host names with --name)") from None
        key = new_key()
        cn = names[0] if names else addresses[0]
        cert = self._sign(
            key.public_key(),
            cn,
            SERVER_DAYS,
            ExtendedKeyUsageOID.SERVER_AUTH,
            x509.SubjectAlternativeName(sans),
        )
        write_atomic(self.server_key, key_pem(key).decode(), mode=0o600)
        write_atomic(self.server_cert, cert.public_bytes(serialization.Encoding.PEM).decode(), mode=0o644)

    # -- client certificates ------------------------------------------------------------

    def sign_csr(
        self,
        csr_pem: bytes,
        allowed: set[str],
        *,
        days: int = CLIENT_DAYS,
        valid_from: dt.datetime | None = None,
        common_name_override: str | None = None,
    ) -> Issued:
        """Certify the key in ``csr_pem`` for its CN, if that CN is one of ``allowed``.

        ``common_name_override`` certifies the same key under another of ``allowed`` (a
        console: one request, one key, a certificate per connection name).

        ``allowed`` is every provisioned connection name; a request for anything else
        (another site's gate, the admin, a typo) is refused, since the certificate would
        otherwise be a login the registry does not know about.
        """
        try:
            csr = x509.load_pem_x509_csr(csr_pem)
        except ValueError as exc:
            raise PkiError(f"not a PEM certificate signing request: {exc}") from None
        if not csr.is_signature_valid:
            raise PkiError("the signing request's signature does not verify")
        cn = common_name_override or common_name(csr)
        if cn not in allowed:
            raise PkiError(f"{cn!r} is not a provisioned connection; add the gate or console first")
        public = csr.public_key()
        if not isinstance(public, ec.EllipticCurvePublicKey) or public.curve.name != "secp256r1":
            raise PkiError("the signing request's key must be EC P-256")
        return self._issue_client(public, cn, days, valid_from)

    def issue_with_key(self, cns: list[str], *, days: int = CLIENT_DAYS) -> list[Issued]:
        """Make one key here and certify it for every name in ``cns`` (a console's connections).

        The key is written to ``keys/<first cn>.key`` and must be copied to the device:
        simpler than enrolment, at the price of the key having existed on this host.
        """
        key = new_key()
        out = [self._issue_client(key.public_key(), cn, days, None) for cn in cns]
        self.key_path(cns[0]).parent.mkdir(mode=0o700, exist_ok=True)
        write_atomic(self.key_path(cns[0]), key_pem(key).decode(), mode=0o600)
        return out

    def issue_keys(self, cns: list[str], *, days: int = CLIENT_DAYS) -> list[Issued]:
        """A key of its own and a certificate for each name (many gates at once); the issued
        list is written once, not once per certificate as :meth:`issue_with_key` would."""
        issued = self._load_issued()
        out: list[Issued] = []
        ca_key = load_key(self.ca_key)
        ca_cert = x509.load_pem_x509_certificate(self.ca_cert.read_bytes())
        for cn in cns:
            self.key_path(cn).parent.mkdir(mode=0o700, exist_ok=True)
            key = new_key()
            cert = self._sign(
                key.public_key(), cn, days, ExtendedKeyUsageOID.CLIENT_AUTH, None, ca=(ca_key, ca_cert)
            )
            path = self.cert_path(cn)
            path.parent.mkdir(parents=True, exist_ok=True)
            write_atomic(path, cert.public_bytes(serialization.Encoding.PEM).decode(), mode=0o644)
            write_atomic(self.key_path(cn), key_pem(key).decode(), mode=0o600)
            issued.append(
                {
                    "serial": str(cert.serial_number),
                    "cn": cn,
                    "not_after": cert.not_valid_after_utc.isoformat(),
                }
            )
            out.append(Issued(cn, path, cert.not_valid_after_utc, cert.serial_number))
        self._save_issued(issued)
        return out

    def revoke(self, cns: set[str]) -> list[int]:
        """Revoke every unrevoked certificate issued to a name in ``cns`` and rewrite the CRL."""
        issued = self._load_issued()
        revoked: list[int] = []
        now = _now().isoformat()
        for entry in issued:
            if entry["cn"] in cns and not entry.get("revoked"):
                entry["revoked"] = now
                revoked.append(int(entry["serial"]))
        self._save_issued(issued)
        self.write_crl()
        return revoked

    def write_crl(self) -> None:
        """Sign the CRL afresh from ``issued.json`` (the broker reads it at its next start)."""
        if not self.exists:
            return
        ca_key = load_key(self.ca_key)
        ca_cert = x509.load_pem_x509_certificate(self.ca_cert.read_bytes())
        now = _now()
        builder = (
            x509.CertificateRevocationListBuilder()
            .issuer_name(ca_cert.subject)
            .last_update(now - _CLOCK_SKEW)
            .next_update(now + dt.timedelta(days=CRL_DAYS))
        )
        for entry in self._load_issued():
            if entry.get("revoked"):
                builder = builder.add_revoked_certificate(
                    x509.RevokedCertificateBuilder()
                    .serial_number(int(entry["serial"]))
                    .revocation_date(dt.datetime.fromisoformat(entry["revoked"]))
                    .build()
                )
        crl = builder.sign(ca_key, hashes.SHA256())
        write_atomic(self.crl, crl.public_bytes(serialization.Encoding.PEM).decode(), mode=0o644)

    def issued(self) -> list[dict[str, object]]:
        return self._load_issued()

    # -- internals ----------------------------------------------------------------------

    def _issue_client(
        self, public: ec.EllipticCurvePublicKey, cn: str, days: int, valid_from: dt.datetime | None
    ) -> Issued:
        cert = self._sign(public, cn, days, ExtendedKeyUsageOID.CLIENT_AUTH, None, valid_from)
        path = self.cert_path(cn)
        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(path, cert.public_bytes(serialization.Encoding.PEM).decode(), mode=0o644)
        issued = self._load_issued()
        issued.append(
            {"serial": str(cert.serial_number), "cn": cn, "not_after": cert.not_valid_after_utc.isoformat()}
        )
        self._save_issued(issued)
        return Issued(cn, path, cert.not_valid_after_utc, cert.serial_number)

    def _sign(
        self,
        public: ec.EllipticCurvePublicKey,
        cn: str,
        days: int,
        usage: x509.ObjectIdentifier,
        sans: x509.SubjectAlternativeName | None,
        valid_from: dt.datetime | None = None,
        *,
        ca: tuple[Any, x509.Certificate] | None = None,
    ) -> x509.Certificate:
        if not self.exists:
            raise PkiError(f"no site CA in {self.dir}: run `gatepost broker init` first")
        ca_key, ca_cert = ca or (
            load_key(self.ca_key),
            x509.load_pem_x509_certificate(self.ca_cert.read_bytes()),
        )
        start = valid_from or _now() - _CLOCK_SKEW
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)]))
            .issuer_name(ca_cert.subject)
            .public_key(public)
            .serial_number(x509.random_serial_number())
            .not_valid_before(start)
            .not_valid_after(start + dt.timedelta(days=days))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
            )
        )
        if sans is not None:
            builder = builder.add_extension(sans, critical=False)
        return builder.sign(ca_key, hashes.SHA256())

    def _load_issued(self) -> list[dict[str, object]]:
        try:
            doc = json.loads(self.issued_path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return []
        except ValueError as exc:
            raise PkiError(f"{self.issued_path}: {exc}") from None
        return list(doc.get("issued", []))

    def _save_issued(self, issued: list[dict[str, object]]) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        write_atomic(self.issued_path, json.dumps({"issued": issued}, indent=2) + "\n", mode=0o640)
