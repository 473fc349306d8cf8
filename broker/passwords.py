"""Password hashes as mosquitto 2.0 computes them: PBKDF2-HMAC-SHA512, 12-byte salt.

The registry keeps each hash as ``$7$<iterations>$<base64 salt>$<base64 hash>``, the
line format ``mosquitto_passwd`` writes (``$7$`` is ``pw_sha512_pbkdf2`` in mosquitto's
``password_mosq.h``); the dynamic-security plugin uses the same function, salt length and
base64, so broker.dynsec hands it the three parts unchanged.  Hashing here means
provisioning needs no mosquitto tools, and the tests that log in to a real broker prove
the format.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets

from broker.errors import ProvisioningError, ProvisioningReason

ITERATIONS = 101
"""mosquitto 2.0's own default.  More buys nothing here: passwords are 32 random
characters (~190 bits), beyond any brute force, and every iteration is paid at each
connect of every client."""

SALT_BYTES = 12
PASSWORD_CHARS = 32


def new_password() -> str:
    """32 URL-safe characters from the OS's CSPRNG: safe in TOML, shells and files."""
    return secrets.token_urlsafe(PASSWORD_CHARS)[:PASSWORD_CHARS]


def check_password(password: str) -> str:
    """Refuse what would corrupt a ``passwd`` line or be guessable."""
    if not isinstance(password, str) or len(password) < 12:
        raise ProvisioningError(ProvisioningReason.BAD_PASSWORD, "password must be at least 12 characters")
    if any(ch in password for ch in "\r\n\0") or not password.isprintable():
        raise ProvisioningError(ProvisioningReason.BAD_PASSWORD, "password must be printable, on one line")
    return password


def hash_password(password: str, *, salt: bytes | None = None, iterations: int = ITERATIONS) -> str:
    salt = secrets.token_bytes(SALT_BYTES) if salt is None else salt
    digest = hashlib.pbkdf2_hmac("sha512", password.encode("utf-8"), salt, iterations)
    return f"$7${iterations}${base64.b64encode(salt).decode()}${base64.b64encode(digest).decode()}"


def verify_password(password: str, encoded: str) -> bool:
    """Check a password against a ``$7$`` hash the way mosquitto does; False if malformed."""
    try:
        empty, kind, iterations, salt, digest = encoded.split("$")
        if empty or kind != "7":
            return False
        expected = hashlib.pbkdf2_hmac(
            "sha512", password.encode("utf-8"), base64.b64decode(salt, validate=True), int(iterations)
        )
        return hmac.compare_digest(expected, base64.b64decode(digest, validate=True))
    except ValueError:
        return False
