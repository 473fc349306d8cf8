"""Secrets sealed under a passphrase: the site root key, and backups of a whole site office.

The key comes from the passphrase through **scrypt** (memory-hard, RFC 7914) and the
data is sealed with **ChaCha20-Poly1305** (RFC 8439), both from ``cryptography``.
Every parameter needed to open a file is written in its header — KDF name, ``n``,
``r``, ``p``, salt, cipher — and the header is the AEAD's associated data, so changing
a parameter breaks the seal rather than silently weakening it.

scrypt gives 64 bytes: the first 32 are the cipher key, the last 32 are stored as
``check``.  That tells a wrong passphrase (``check`` differs) from a damaged or altered
file (``check`` matches, the tag does not), so the operator gets the right one of
``wrong_passphrase`` and ``tampered``; it costs a guesser as much scrypt as the tag does.

Backups are sealed in chunks (the STREAM construction of Hoang, Reyhanitabar, Rogaway
and Vizár, "Online Authenticated-Encryption and its Nonce-Reuse Misuse-Resistance",
CRYPTO 2015): chunk *i* uses nonce ``prefix ‖ i ‖ last``, so chunks cannot be dropped,
reordered or cut off at the end without failing, and an office with gigabytes of photos
never has to sit in memory.  Nothing is written out before the whole backup verified.
"""

from __future__ import annotations

import hmac
import json
import os
import secrets
import unicodedata
from collections.abc import Iterator
from dataclasses import dataclass
from enum import StrEnum
from typing import IO, Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

from protocol.errors import Rejection

SECRET_KIND = "gatepost-sealed-secret-v1"
BACKUP_KIND = "gatepost-office-backup-v1"
AEAD = "chacha20poly1305"
STREAM_AEAD = "chacha20poly1305-stream"
MIN_PASSPHRASE_CHARS = 10
MAX_HEADER_BYTES = 4096
MAX_SECRET_FILE_BYTES = 64 * 1024
CHUNK_BYTES = 1 << 20
_TAG = 16


class SealReason(StrEnum):
    WRONG_PASSPHRASE = "wrong_passphrase"
    TAMPERED = "tampered"
    """The passphrase is right but the contents fail their authentication: altered, damaged or cut short."""
    MALFORMED = "malformed"
    """Not a sealed file of this kind at all."""
    UNSUPPORTED = "unsupported"
    """A KDF, cipher or parameter this version does not accept (including costs too high to run safely)."""
    WEAK_PASSPHRASE = "weak_passphrase"


class SealError(Rejection[SealReason], ValueError):
    """A sealed file that cannot be opened, or a passphrase too weak to seal with."""


@dataclass(frozen=True, slots=True)
class ScryptParams:
    """scrypt's cost: memory is about ``128 * n * r`` bytes (128 MiB for the default)."""

    n: int = 1 << 17
    r: int = 8
    p: int = 1

    def check(self) -> None:
        if not (1 << 10 <= self.n <= 1 << 21 and self.n & (self.n - 1) == 0):
            raise SealError(SealReason.UNSUPPORTED, f"scrypt n={self.n} (a power of two, 2^10 to 2^21)")
        if not (1 <= self.r <= 32 and 1 <= self.p <= 16) or 128 * self.n * self.r > 1 << 30:
            raise SealError(SealReason.UNSUPPORTED, f"scrypt r={self.r} p={self.p} (at most 1 GiB)")


DEFAULT_SCRYPT = ScryptParams()
"""OWASP's password-storage recommendation for scrypt (n=2^17, r=8, p=1): about 0.3 s here."""


def passphrase_bytes(passphrase: str) -> bytes:
    """NFC-normalised UTF-8, so the same passphrase typed on another keyboard opens the file."""
    return unicodedata.normalize("NFC", passphrase).encode("utf-8")


def check_new_passphrase(passphrase: str) -> None:
    """A passphrase good enough to seal a site's root key with (length only: it is typed rarely)."""
    if len(passphrase.strip()) < MIN_PASSPHRASE_CHARS:
        raise SealError(SealReason.WEAK_PASSPHRASE, f"use at least {MIN_PASSPHRASE_CHARS} characters")


def _kdf_header(params: ScryptParams, salt: bytes) -> dict[str, Any]:
    return {"name": "scrypt", "n": params.n, "r": params.r, "p": params.p, "salt": salt.hex()}


def _derive(passphrase: str, kdf: Any) -> tuple[bytes, bytes]:
    """(cipher key, check) from the header's KDF section, which is checked before any work."""
    if not isinstance(kdf, dict) or kdf.get("name") != "scrypt":
        raise SealError(SealReason.UNSUPPORTED, "the key derivation is not scrypt")
    try:
        params = ScryptParams(int(kdf["n"]), int(kdf["r"]), int(kdf["p"]))
        salt = bytes.fromhex(kdf["salt"])
    except (KeyError, TypeError, ValueError):
        raise SealError(SealReason.MALFORMED, "scrypt parameters") from None
    params.check()
    if not 16 <= len(salt) <= 64:
        raise SealError(SealReason.MALFORMED, "scrypt salt")
    derived = Scrypt(salt=salt, length=64, n=params.n, r=params.r, p=params.p).derive(
        passphrase_bytes(passphrase)
    )
    return derived[:32], derived[32:]


def _new_kdf(passphrase: str, params: ScryptParams) -> tuple[dict[str, Any], bytes, bytes]:
    params.check()
    kdf = _kdf_header(params, secrets.token_bytes(16))
    key, check = _derive(passphrase, kdf)
    return kdf, key, check


def _canonical(header: dict[str, Any]) -> bytes:
    return json.dumps(header, sort_keys=True, separators=(",", ":")).encode("utf-8")


def _check_passphrase(header: dict[str, Any], passphrase: str) -> bytes:
    key, check = _derive(passphrase, header.get("kdf"))
    try:
        stored = bytes.fromhex(str(header.get("check", "")))
    except ValueError:
        raise SealError(SealReason.MALFORMED, "check value") from None
    if not hmac.compare_digest(stored, check):
        raise SealError(SealReason.WRONG_PASSPHRASE, "the passphrase does not open this file")
    return key


# -- one small secret (the root key) -----------------------------------------------------------


def seal_secret(
    secret: bytes,
    passphrase: str,
    *,
    what: str,
    public: dict[str, Any],
    params: ScryptParams = DEFAULT_SCRYPT,
) -> bytes:
    """A JSON file holding ``secret`` under ``passphrase``; ``public`` fields stay readable (and are sealed in)."""
    kdf, key, check = _new_kdf(passphrase, params)
    nonce = secrets.token_bytes(12)
    header = {"kind": SECRET_KIND, "what": what, **public, "kdf": kdf, "aead": AEAD, "check": check.hex()}
    ciphertext = ChaCha20Poly1305(key).encrypt(nonce, secret, _canonical(header))
    return (
        json.dumps({**header, "nonce": nonce.hex(), "ciphertext": ciphertext.hex()}, indent=1) + "\n"
    ).encode()


def read_sealed_header(data: bytes, what: str) -> dict[str, Any]:
    """The readable part of a sealed secret (its public fields), without the passphrase."""
    if len(data) > MAX_SECRET_FILE_BYTES:
        raise SealError(SealReason.MALFORMED, "too large for a sealed secret")
    try:
        doc = json.loads(data)
    except (UnicodeDecodeError, ValueError):
        raise SealError(SealReason.MALFORMED, "not a sealed secret (not JSON)") from None
    if not isinstance(doc, dict) or doc.get("kind") != SECRET_KIND:
        raise SealError(SealReason.MALFORMED, "not a sealed secret")
    if doc.get("what") != what:
        raise SealError(SealReason.MALFORMED, f"holds a {str(doc.get('what'))[:40]}, not a {what}")
    if doc.get("aead") != AEAD:
        raise SealError(SealReason.UNSUPPORTED, f"cipher {str(doc.get('aead'))[:40]!r}")
    return doc


def open_secret(data: bytes, passphrase: str, *, what: str) -> bytes:
    doc = read_sealed_header(data, what)
    try:
        nonce = bytes.fromhex(doc.pop("nonce"))
        ciphertext = bytes.fromhex(doc.pop("ciphertext"))
    except (KeyError, TypeError, ValueError):
        raise SealError(SealReason.MALFORMED, "nonce or ciphertext") from None
    key = _check_passphrase(doc, passphrase)
    try:
        return ChaCha20Poly1305(key).decrypt(nonce, ciphertext, _canonical(doc))
    except (InvalidTag, ValueError):
        raise SealError(SealReason.TAMPERED, "the sealed contents or header were altered") from None


# -- a stream (office backups) -----------------------------------------------------------------


def _nonce(prefix: bytes, index: int, last: bool) -> bytes:
    return prefix + index.to_bytes(4, "big") + (b"\x01" if last else b"\x00")


class StreamSealer:
    """A write-only file that seals what is written to it, chunk by chunk, into ``out``.

    The header line goes out at once; each chunk once the next one has begun (so the
    last can be marked as last); :meth:`close` seals the final one.  Plaintext never
    touches the disk, however large the stream.
    """

    def __init__(
        self,
        out: IO[bytes],
        passphrase: str,
        *,
        public: dict[str, Any],
        params: ScryptParams = DEFAULT_SCRYPT,
        chunk_bytes: int = CHUNK_BYTES,
    ) -> None:
        kdf, key, check = _new_kdf(passphrase, params)
        self._prefix = secrets.token_bytes(7)
        header = {
            "kind": BACKUP_KIND,
            **public,
            "kdf": kdf,
            "aead": STREAM_AEAD,
            "chunk_bytes": chunk_bytes,
            "nonce_prefix": self._prefix.hex(),
            "check": check.hex(),
        }
        self._line = json.dumps(header, sort_keys=True, separators=(",", ":")).encode("utf-8")
        self._out = out
        self._cipher = ChaCha20Poly1305(key)
        self._chunk_bytes = chunk_bytes
        self._buffer = bytearray()
        self._index = 0
        self._closed = False
        out.write(self._line + b"\n")

    def write(self, data: bytes) -> int:
        self._buffer += data
        # Keep at least one byte back: the chunk that turns out to be last is sealed by close().
        while len(self._buffer) > self._chunk_bytes:
            self._seal(bytes(self._buffer[: self._chunk_bytes]), last=False)
            del self._buffer[: self._chunk_bytes]
        return len(data)

    def _seal(self, chunk: bytes, *, last: bool) -> None:
        if self._index >= 1 << 32:
            raise SealError(SealReason.UNSUPPORTED, "stream too long")
        self._out.write(self._cipher.encrypt(_nonce(self._prefix, self._index, last), chunk, self._line))
        self._index += 1

    def close(self) -> None:
        if not self._closed:
            self._seal(bytes(self._buffer), last=True)
            self._buffer.clear()
            self._closed = True

    def __enter__(self) -> StreamSealer:
        return self

    def __exit__(self, exc_type: object, *_: object) -> None:
        if exc_type is None:  # a failed writer must not leave a stream that verifies as complete
            self.close()


def read_stream_header(source: IO[bytes]) -> tuple[dict[str, Any], bytes]:
    line = source.readline(MAX_HEADER_BYTES + 1)
    if not line.endswith(b"\n"):
        raise SealError(SealReason.MALFORMED, "not a gatepost office backup (no header line)")
    try:
        header = json.loads(line)
    except (UnicodeDecodeError, ValueError):
        raise SealError(SealReason.MALFORMED, "not a gatepost office backup (header is not JSON)") from None
    if not isinstance(header, dict) or header.get("kind") != BACKUP_KIND:
        raise SealError(SealReason.MALFORMED, "not a gatepost office backup")
    if header.get("aead") != STREAM_AEAD:
        raise SealError(SealReason.UNSUPPORTED, f"cipher {str(header.get('aead'))[:40]!r}")
    return header, line.rstrip(b"\n")


def open_stream(source: IO[bytes], passphrase: str) -> tuple[dict[str, Any], Iterator[bytes]]:
    """The header, and the plaintext chunks; each is authenticated before it is yielded.

    A caller must consume the iterator to its end before trusting any of it: only the
    last chunk proves nothing was cut off (the ``tampered`` error comes at the end).
    """
    header, line = read_stream_header(source)
    key = _check_passphrase(header, passphrase)
    try:
        chunk_bytes = int(header["chunk_bytes"])
        prefix = bytes.fromhex(header["nonce_prefix"])
    except (KeyError, TypeError, ValueError):
        raise SealError(SealReason.MALFORMED, "chunk size or nonce") from None
    if not (1024 <= chunk_bytes <= 1 << 24) or len(prefix) != 7:
        raise SealError(SealReason.MALFORMED, "chunk size or nonce")
    cipher = ChaCha20Poly1305(key)

    def chunks() -> Iterator[bytes]:
        index = 0
        sealed = source.read(chunk_bytes + _TAG)
        while True:
            following = source.read(chunk_bytes + _TAG)
            last = not following
            try:
                yield cipher.decrypt(_nonce(prefix, index, last), sealed, line)
            except (InvalidTag, ValueError):
                raise SealError(
                    SealReason.TAMPERED, f"chunk {index} fails authentication: altered, damaged or cut short"
                ) from None
            if last:
                return
            sealed, index = following, index + 1

    return header, chunks()


def private_file(path: os.PathLike[str] | str) -> IO[bytes]:
    """A new file only we can read (0600, ``O_EXCL``): sealed output never lands world-readable."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    return os.fdopen(fd, "wb")
