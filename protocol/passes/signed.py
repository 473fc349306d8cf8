"""The envelope for signed documents: trust bundles and revocation lists.

The signature covers the exact bytes of ``body`` (a JSON text carried as a string), so
no canonical JSON is needed: what was signed is what is parsed.  The document kind is
part of what is signed, so a revocation list can never be presented as a trust bundle.
These documents are small, rare and not size-critical, unlike passes, so they are JSON.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

from nacl.exceptions import BadSignatureError
from nacl.signing import SigningKey, VerifyKey

from protocol.passes.errors import DocumentError, DocumentRejectReason

MAX_DOCUMENT_BYTES = 4 * 1024 * 1024


def _context(kind: str) -> bytes:
    return b"gatepost/" + kind.encode("ascii") + b"\x00"


def seal(kind: str, body: str, key: SigningKey, kid: int | None) -> bytes:
    """Sign ``body`` as a document of ``kind``; ``kid`` is None when the root key signs."""
    raw = body.encode("utf-8")
    signature = key.sign(_context(kind) + raw).signature
    return json.dumps({"kind": kind, "kid": kid, "body": body, "sig": signature.hex()}).encode("utf-8")


@dataclass(frozen=True, slots=True)
class Envelope:
    kind: str
    kid: int | None
    body: str
    signature: bytes

    def verify(self, key: VerifyKey) -> None:
        try:
            key.verify(_context(self.kind) + self.body.encode("utf-8"), self.signature)
        except BadSignatureError:
            raise DocumentError(DocumentRejectReason.BAD_SIGNATURE, f"{self.kind} signature") from None


def open_envelope(data: bytes, kind: str) -> Envelope:
    """Parse an envelope of the expected kind (signature not yet checked) or raise DocumentError."""
    if not isinstance(data, bytes | bytearray):
        raise DocumentError(DocumentRejectReason.MALFORMED, "document must be bytes")
    if len(data) > MAX_DOCUMENT_BYTES:
        raise DocumentError(DocumentRejectReason.TOO_LARGE, f"{len(data)} bytes")
    try:
        doc: Any = json.loads(data)
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise DocumentError(DocumentRejectReason.MALFORMED, "not JSON") from None
    if not isinstance(doc, dict) or set(doc) != {"kind", "kid", "body", "sig"}:
        raise DocumentError(DocumentRejectReason.MALFORMED, "not a signed document")
    if doc["kind"] != kind:
        raise DocumentError(DocumentRejectReason.WRONG_KIND, f"expected {kind}")
    kid, body, sig = doc["kid"], doc["body"], doc["sig"]
    if kid is not None and (not isinstance(kid, int) or isinstance(kid, bool) or kid < 0):
        raise DocumentError(DocumentRejectReason.MALFORMED, "kid")
    if not isinstance(body, str) or not isinstance(sig, str) or len(sig) != 128:
        raise DocumentError(DocumentRejectReason.MALFORMED, "body or signature")
    try:
        signature = bytes.fromhex(sig)
        body.encode("utf-8")
    except (ValueError, UnicodeEncodeError):
        raise DocumentError(DocumentRejectReason.MALFORMED, "body or signature") from None
    return Envelope(kind, kid, body, signature)


class ApplyReason(StrEnum):
    """What became of a document offered to a gate.  Stable strings for events."""

    APPLIED = "applied"
    SAME = "same"
    """The version the gate already holds: nothing to do, not an attack."""
    OLDER = "older"
    """An older version: refused, so a replayed old list cannot un-revoke a pass."""
    BAD_SIGNATURE = "bad_signature"
    UNKNOWN_KEY = "unknown_key"
    WRONG_SITE = "wrong_site"
    WRONG_KIND = "wrong_kind"
    MALFORMED = "malformed"
    TOO_LARGE = "too_large"


@dataclass(frozen=True, slots=True)
class ApplyOutcome:
    applied: bool
    reason: ApplyReason
    version: int | None
    """The version the gate holds after this call."""
    detail: str = ""


def rejected(error: DocumentError, version: int | None) -> ApplyOutcome:
    return ApplyOutcome(False, ApplyReason(error.reason.value), version, error.detail)


def atomic_write(path: Path, data: bytes) -> None:
    """Replace ``path`` with ``data`` so that a power cut leaves the old or the new file, never half."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
