"""Backup and restore of a whole site office, sealed under a passphrase.

A site office is the one place a site's passes can be issued and revoked from; losing
it means re-issuing every pass and re-provisioning every gate.  ``gatepost pass backup``
writes the whole folder — sealed root, signing and command keys, site secret, register,
photos, printed cards, public documents — as a tar stream sealed chunk by chunk
(:class:`~console.passes.sealed.StreamSealer`), so the private keys never lie on disk in
clear outside the office itself.  The register is copied with SQLite's backup API under
the office's lock, so the copy is one consistent state even while operators work.

``restore`` authenticates the entire file before writing a single file, into a new
folder beside the target, checks it is a working office (bundle verified under its own
root), and only then renames it into place: a wrong passphrase, a flipped bit or a
truncated file leaves nothing behind but a typed error.
"""

from __future__ import annotations

import io
import os
import secrets
import shutil
import sqlite3
import tarfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath

from console.passes.office import (
    LOCK_NAME,
    PUBLIC,
    REGISTER,
    ROOT_PUB,
    ROOT_SEALED,
    Office,
    OfficeError,
    OfficeReason,
    sealed_root_public_key,
)
from console.passes.sealed import DEFAULT_SCRYPT, ScryptParams, StreamSealer, open_stream, private_file
from protocol.errors import GatepostError
from protocol.passes.keys import load_public_key, public_hex

_SKIPPED_SUFFIXES = ("-wal", "-shm", "-journal", ".tmp")
MAX_MEMBERS = 1_000_000


@dataclass(frozen=True, slots=True)
class BackupSummary:
    site: str
    files: int
    bytes: int


def backup_office(
    directory: Path,
    out: Path,
    passphrase: str,
    *,
    root_file: Path | None = None,
    params: ScryptParams = DEFAULT_SCRYPT,
) -> BackupSummary:
    """Seal the office at ``directory`` into the new file ``out`` (0600; an existing file is refused).

    ``root_file`` adds a sealed root kept outside the folder (``--root``), as ``root.sealed``.
    """
    out = Path(out)
    with Office.open(directory) as office, office.locked():
        site = office.bundle.site
        files = 0
        total = 0
        try:
            with private_file(out) as sink:
                sealer = StreamSealer(
                    sink,
                    passphrase,
                    public={"site": site, "created_at": datetime.now(UTC).isoformat()},
                    params=params,
                )
                with tarfile.open(fileobj=sealer, mode="w|") as tar:
                    for arcname, data in _members(office, root_file):
                        info = tarfile.TarInfo(arcname)
                        info.size = len(data)
                        info.mode = 0o600
                        info.mtime = int(datetime.now(UTC).timestamp())
                        tar.addfile(info, io.BytesIO(data))
                        files += 1
                        total += len(data)
                sealer.close()
                sink.flush()
                os.fsync(sink.fileno())
        except FileExistsError:
            raise OfficeError(
                OfficeReason.ALREADY_INITIALISED, f"{out} exists; refusing to overwrite it"
            ) from None
        except BaseException:
            out.unlink(missing_ok=True)
            raise
    return BackupSummary(site, files, total)


def _members(office: Office, root_file: Path | None) -> list[tuple[str, bytes]]:
    """Every file of the office as (name in the archive, bytes); the register as one consistent copy."""
    members: list[tuple[str, bytes]] = []
    for path in sorted(office.dir.rglob("*")):
        relative = path.relative_to(office.dir)
        if path.is_dir() or path.is_symlink() or not path.is_file():
            continue
        if relative.name in (REGISTER, LOCK_NAME) or relative.name.endswith(_SKIPPED_SUFFIXES):
            continue
        members.append((relative.as_posix(), path.read_bytes()))
    source = sqlite3.connect(office.dir / REGISTER)
    copy = sqlite3.connect(":memory:")
    try:
        source.backup(copy)
        members.append((REGISTER, copy.serialize()))
    finally:
        copy.close()
        source.close()
    if root_file is not None:
        if (office.dir / ROOT_SEALED).exists():
            raise OfficeError(OfficeReason.ALREADY_INITIALISED, f"{office.dir} already holds a {ROOT_SEALED}")
        if sealed_root_public_key(root_file) != public_hex(office.root_public):
            raise OfficeError(
                OfficeReason.WRONG_ROOT, f"{root_file} is not the root key of {office.bundle.site}"
            )
        members.append((ROOT_SEALED, Path(root_file).read_bytes()))
    return members


def restore_office(backup: Path, directory: Path, passphrase: str) -> BackupSummary:
    """Recreate the office sealed in ``backup`` at ``directory`` (which must not exist, or be empty)."""
    directory = Path(directory)
    if directory.exists() and (not directory.is_dir() or any(directory.iterdir())):
        raise OfficeError(OfficeReason.ALREADY_INITIALISED, f"{directory} exists and is not empty")
    directory.parent.mkdir(parents=True, exist_ok=True)
    staging = directory.with_name(f".{directory.name}.restoring-{secrets.token_hex(4)}")
    staging.mkdir(mode=0o700)
    try:
        plain = staging / ".backup.tar"
        with open(backup, "rb") as source:
            header, chunks = open_stream(source, passphrase)
            with private_file(plain) as sink:
                for chunk in chunks:  # every chunk authenticated, the last one proving the end
                    sink.write(chunk)
        summary = _extract(plain, staging, str(header.get("site", "")))
        plain.unlink()
        _check_restored(staging)
        if directory.exists():
            directory.rmdir()
        os.rename(staging, directory)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return summary


def _extract(archive: Path, target: Path, site: str) -> BackupSummary:
    """Write the archive's files under ``target``: regular files at plain relative paths only."""
    files = 0
    total = 0
    try:
        with tarfile.open(archive, mode="r:") as tar:
            for count, member in enumerate(tar):
                if count >= MAX_MEMBERS:
                    raise OfficeError(OfficeReason.CORRUPT, "too many files in the backup")
                name = PurePosixPath(member.name)
                if (
                    not member.isfile()
                    or name.is_absolute()
                    or not name.parts
                    or any(part in ("", ".", "..") for part in name.parts)
                ):
                    raise OfficeError(
                        OfficeReason.CORRUPT, f"backup member {member.name[:80]!r} is not a plain file"
                    )
                path = target.joinpath(*name.parts)
                public = name.parts[0] == PUBLIC
                for parent in reversed(path.relative_to(target).parents[:-1]):
                    folder = target / parent
                    if not folder.exists():
                        folder.mkdir(mode=0o755 if parent.parts[0] == PUBLIC else 0o700)
                extracted = tar.extractfile(member)
                assert extracted is not None
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
                with os.fdopen(fd, "wb") as f:
                    shutil.copyfileobj(extracted, f)
                    f.flush()
                    os.fsync(f.fileno())
                os.chmod(path, 0o644 if public else 0o600)
                files += 1
                total += member.size
    except tarfile.TarError as exc:
        raise OfficeError(OfficeReason.CORRUPT, f"backup archive: {exc}") from None
    except FileExistsError:
        raise OfficeError(OfficeReason.CORRUPT, "the backup names one file twice") from None
    return BackupSummary(site, files, total)


def _check_restored(directory: Path) -> None:
    """A restored folder is an office whose bundle its own root signed, and whose sealed root is that root."""
    os.chmod(directory, 0o700)
    try:
        with Office.open(directory):
            pass
        if (directory / ROOT_SEALED).exists():
            pinned = public_hex(load_public_key(directory / PUBLIC / ROOT_PUB))
            if sealed_root_public_key(directory / ROOT_SEALED) != pinned:
                raise OfficeError(
                    OfficeReason.WRONG_ROOT, "the sealed root in the backup is not the office's root"
                )
    except (OSError, GatepostError) as exc:
        if isinstance(exc, OfficeError):
            raise
        raise OfficeError(OfficeReason.CORRUPT, f"the restored office does not open: {exc}") from None
