"""Typed rejections for passes, key files and signed documents.

A gate reads codes from strangers: every malformed input ends as one of these errors
with an enumerated ``reason`` (stable strings for logs and events), never as an
``IndexError`` or ``UnicodeDecodeError`` from deep inside the parser.  Each is also a
``ValueError``, so code that only knows the builtin still catches it.
"""

from __future__ import annotations

from enum import StrEnum

from protocol.errors import Rejection


class PassRejectReason(StrEnum):
    """Why a scanned code or a pass being issued is not a well-formed pass."""

    NOT_A_PASS = "not_a_pass"
    """No gatepost marker, or characters other than ASCII digits: some other QR code."""
    BAD_DIGITS = "bad_digits"
    """Carries the marker, but the digits do not encode bytes (impossible length or value)."""
    TOO_LONG = "too_long"
    UNSUPPORTED_VERSION = "unsupported_version"
    TRUNCATED = "truncated"
    TRAILING_BYTES = "trailing_bytes"
    BAD_FIELD = "bad_field"
    """A field decodes to something the format forbids (reserved bits, bad UTF-8, zero duration...)."""


class PassError(Rejection[PassRejectReason], ValueError):
    """A code that is not a well-formed pass, or pass fields that cannot be encoded."""


class DocumentRejectReason(StrEnum):
    """Why a signed trust bundle or revocation list was refused."""

    TOO_LARGE = "too_large"
    MALFORMED = "malformed"
    WRONG_KIND = "wrong_kind"
    BAD_SIGNATURE = "bad_signature"
    UNKNOWN_KEY = "unknown_key"
    WRONG_SITE = "wrong_site"


class DocumentError(Rejection[DocumentRejectReason], ValueError):
    """A signed document (trust bundle, revocation list) that must not be believed."""


class KeyFileReason(StrEnum):
    EXISTS = "exists"
    INSECURE_PERMISSIONS = "insecure_permissions"
    MALFORMED = "malformed"


class KeyFileError(Rejection[KeyFileReason], ValueError):
    """A key or secret file that is missing its protection or is not what it claims to be."""
