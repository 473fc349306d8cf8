"""Private keys and secrets on disk: created 0600, refused when anyone else could read them.

The console holds the site root key (signs trust bundles) and the signing keys (sign
passes and revocation lists); a gate holds only public keys and the dynamic-code site
secret.  Files are created with ``O_EXCL`` so that issuing a key never overwrites the
one already in use, and loading refuses a file that group or others can access, the
way ``ssh`` refuses a world-readable identity.
"""

from __future__ import annotations

import os
import secrets
import stat
from pathlib import Path

from nacl.signing import SigningKey, VerifyKey

from protocol.passes.errors import KeyFileError, KeyFileReason

PRIVATE_KEY_KIND = "gatepost-ed25519-private-v1"
PUBLIC_KEY_KIND = "gatepost-ed25519-public-v1"
SITE_SECRET_KIND = "gatepost-site-secret-v1"
SITE_SECRET_BYTES = 32
_MAX_FILE_BYTES = 4096


def generate_signing_key() -> SigningKey:
    return SigningKey.generate()


def generate_site_secret() -> bytes:
    return secrets.token_bytes(SITE_SECRET_BYTES)


def public_hex(key: SigningKey | VerifyKey) -> str:
    verify = key.verify_key if isinstance(key, SigningKey) else key
    return bytes(verify).hex()


def write_secret(path: Path, kind: str, secret: bytes) -> None:
    """Write ``kind hex`` to a new file with mode 0600, durably; an existing file is an error."""
    path = Path(path)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    except FileExistsError:
        raise KeyFileError(KeyFileReason.EXISTS, f"{path} exists; refusing to overwrite a key") from None
    try:
        os.fchmod(fd, 0o600)  # the umask can only remove bits, but be explicit
        os.write(fd, f"{kind} {secret.hex()}\n".encode("ascii"))
        os.fsync(fd)
    except BaseException:
        os.close(fd)
        path.unlink(missing_ok=True)
        raise
    os.close(fd)
    _fsync_dir(path.parent)


def read_secret(path: Path, kind: str, *, private: bool = True) -> bytes:
    """Read a file written by :func:`write_secret`, checking its kind and (if private) its mode."""
    path = Path(path)
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    try:
        info = os.fstat(fd)
        if private and (info.st_mode & 0o077 or (hasattr(os, "geteuid") and info.st_uid != os.geteuid())):
            raise KeyFileError(
                KeyFileReason.INSECURE_PERMISSIONS,
                f"{path} has mode {stat.filemode(info.st_mode)} (owner {info.st_uid}); it must be 0600 and ours",
            )
        raw = os.read(fd, _MAX_FILE_BYTES + 1)
    finally:
        os.close(fd)
    try:
        found, hex_value = raw.decode("ascii").split()
        value = bytes.fromhex(hex_value)
    except ValueError:
        raise KeyFileError(KeyFileReason.MALFORMED, f"{path} is not a {kind} file") from None
    if found != kind:
        raise KeyFileError(KeyFileReason.MALFORMED, f"{path} holds a {found}, not a {kind}")
    return value


def save_signing_key(path: Path, key: SigningKey) -> None:
    write_secret(path, PRIVATE_KEY_KIND, bytes(key))


def load_signing_key(path: Path) -> SigningKey:
    seed = read_secret(path, PRIVATE_KEY_KIND)
    if len(seed) != 32:
        raise KeyFileError(KeyFileReason.MALFORMED, f"{path}: an Ed25519 seed is 32 bytes")
    return SigningKey(seed)


def save_public_key(path: Path, key: SigningKey | VerifyKey) -> None:
    """The root public key a gate is provisioned with; readable by anyone, still never overwritten."""
    write_secret(path, PUBLIC_KEY_KIND, bytes.fromhex(public_hex(key)))
    os.chmod(path, 0o644)


def load_public_key(path: Path) -> VerifyKey:
    raw = read_secret(path, PUBLIC_KEY_KIND, private=False)
    if len(raw) != 32:
        raise KeyFileError(KeyFileReason.MALFORMED, f"{path}: an Ed25519 public key is 32 bytes")
    return VerifyKey(raw)


def save_site_secret(path: Path, secret: bytes) -> None:
    write_secret(path, SITE_SECRET_KIND, secret)


def load_site_secret(path: Path) -> bytes:
    secret = read_secret(path, SITE_SECRET_KIND)
    if len(secret) < 16:
        raise KeyFileError(KeyFileReason.MALFORMED, f"{path}: a site secret is at least 16 bytes")
    return secret


def destroy_key_file(path: Path) -> None:
    """Overwrite then delete a retired private key, so a later backup of the disk does not hold it.

    Flash storage may keep old blocks anyway; this is hygiene, not a guarantee.
    """
    path = Path(path)
    size = path.stat().st_size
    with open(path, "r+b") as f:
        f.write(secrets.token_bytes(size))
        f.flush()
        os.fsync(f.fileno())
    path.unlink()
    _fsync_dir(path.parent)


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
