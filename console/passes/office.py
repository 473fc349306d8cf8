"""The site office: everything needed to issue and revoke passes, in one private folder.

Layout of the office folder (created 0700; private files 0600, written once, never
overwritten)::

    root.sealed         the site root key, sealed under a passphrase (scrypt + ChaCha20-Poly1305);
                        it may as well live elsewhere (``--root FILE``, a USB stick)
    root.key            (offices from before: the root key in clear, until ``pass encrypt-root``)
    signing-<kid>.key   signing keys: sign passes and revocation lists
    command-<kid>.key   the command key: signs commands to gates (console/commands.py)
    site.secret         the dynamic-code secret (gates need a copy, phones never do)
    register.sqlite     serial counter, every pass issued, every revocation
    photos/             the photos whose digests the passes carry (the guard compares faces)
    public/root.pub     what a gate is provisioned with once
    public/bundle       the sealed trust bundle (root-signed): signing keys and command keys
    public/revocations  the sealed revocation list (signed by a signing key)

The root key signs trust bundles and nothing else, so it is needed only to start an
office, to renew, rotate or retire keys, and never to issue, revoke or send a command:
the web console works from this folder with the root's passphrase unknown to it, or the
sealed root file absent (``tests/security/test_office_keys.py``).  A web process that is
taken over yields the current signing and command keys, whose windows the root closes
with the next bundle — not the root, and so not the power to certify keys of its own.

``public/bundle`` is the source of truth for the keys: the office re-reads it and
verifies it against its own root key, so a hand-edited bundle is refused rather than
silently re-signed.  Every change takes an exclusive lock on the folder, so two
operators issuing at once get distinct serials and one bundle history.
"""

from __future__ import annotations

import fcntl
import logging
import os
import shutil
import sqlite3
import stat
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from enum import StrEnum
from pathlib import Path
from zoneinfo import ZoneInfo

from nacl.signing import SigningKey

from console.passes.sealed import (
    DEFAULT_SCRYPT,
    ScryptParams,
    check_new_passphrase,
    open_secret,
    private_file,
    read_sealed_header,
    seal_secret,
)
from protocol.commands import MAX_COMMAND_LIFETIME
from protocol.errors import GatepostError, Rejection
from protocol.passes import (
    DailyWindow,
    DocumentError,
    GatePolicy,
    GateState,
    KeyFileError,
    Pass,
    PassError,
    RevocationList,
    RevocationState,
    Role,
    TrustBundle,
    TrustStore,
    issue,
    issuing_key,
    make_revocation_list,
    new_bundle,
    open_bundle,
    photo_digest,
    retire,
    seal_bundle,
    seal_revocation_list,
)
from protocol.passes.dynamic import pass_key
from protocol.passes.keys import (
    destroy_key_file,
    generate_signing_key,
    generate_site_secret,
    load_public_key,
    load_signing_key,
    load_site_secret,
    public_hex,
    save_public_key,
    save_signing_key,
    save_site_secret,
)
from protocol.passes.signed import atomic_write
from protocol.passes.trust import command_signing_key, rotate_command_key, rotate_with_file

log = logging.getLogger("gatepost.console.office")

ROOT_KEY = "root.key"
"""The root key in clear: offices made before ``root.sealed``; ``pass encrypt-root`` seals it."""
ROOT_SEALED = "root.sealed"
ROOT_WHAT = "gatepost-site-root-key"
SITE_SECRET = "site.secret"
REGISTER = "register.sqlite"
PUBLIC = "public"
ROOT_PUB = "root.pub"
BUNDLE = "bundle"
REVOCATIONS = "revocations"
PHOTOS = "photos"
LOCK_NAME = ".lock"

DEFAULT_KEY_LIFETIME = timedelta(days=730)
"""How long a new signing key is accepted; rotate before then (``gatepost pass rotate-key``)."""
DEFAULT_COMMAND_KEY_LIFETIME = timedelta(days=90)
"""How long a command key is accepted: the web console holds it, so it lives a season and is
renewed (``gatepost pass renew-keys``), which needs the root's passphrase each time."""
COMMAND_KEY_BACKDATE = timedelta(minutes=5)
"""A new command key starts this long before it is made, so a gate whose clock runs a little
behind the office's accepts the first commands it signs."""
MAX_PHOTO_BYTES = 10 * 1024 * 1024

DEFAULT_DAYS = {Role.RESIDENT: 365, Role.STAFF: 365, Role.SERVICE_WORKER: 90, Role.VISITOR: 1}
"""Validity when neither days nor an end date is given: a visitor's pass should not outlive the visit."""


class OfficeReason(StrEnum):
    """Why the office refused to act.  Stable strings, shown to the operator."""

    NOT_INITIALISED = "not_initialised"
    ALREADY_INITIALISED = "already_initialised"
    INSECURE_PERMISSIONS = "insecure_permissions"
    CORRUPT = "corrupt"
    NO_SIGNING_KEY = "no_signing_key"
    UNKNOWN_KEY = "unknown_key"
    UNKNOWN_SERIAL = "unknown_serial"
    OUTLIVES_KEY = "outlives_key"
    ROOT_LOCKED = "root_locked"
    """The operation needs the root key, and it was not unlocked with its passphrase."""
    ROOT_MISSING = "root_missing"
    WRONG_ROOT = "wrong_root"
    """The sealed root opened, but it is not the key this office's gates pin."""
    ROOT_ALREADY_SEALED = "root_already_sealed"
    NO_COMMAND_KEY = "no_command_key"


class OfficeError(Rejection[OfficeReason], RuntimeError):
    """The office's own state forbids the operation (missing, insecure, or inconsistent)."""


class RequestReason(StrEnum):
    """Why a pass request (a command line or a CSV row) cannot become a pass."""

    MISSING = "missing"
    BAD_ROLE = "bad_role"
    BAD_DAYS = "bad_days"
    BAD_DATE = "bad_date"
    BAD_ZONES = "bad_zones"
    BAD_WINDOW = "bad_window"
    BAD_PHOTO = "bad_photo"
    BAD_FIELD = "bad_field"
    """The pass format refuses a value (a name longer than 64 UTF-8 bytes, ...)."""


class RequestError(Rejection[RequestReason], ValueError):
    """One field of a pass request is unusable; ``field`` names it (a CSV column, a CLI option)."""

    def __init__(self, reason: RequestReason, field: str, detail: str) -> None:
        self.field = field
        super().__init__(reason, detail)

    def _describe(self) -> str:
        return f"{self.field}: {super()._describe()}"


# -- requests ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PassRequest:
    """What an operator asks for; validity is resolved against the site's clock when issued."""

    holder: str
    unit: str
    role: Role
    zones: frozenset[int] = frozenset({0})
    days: int | None = None
    until: date | None = None
    """Last valid day (site-local, inclusive)."""
    daily_window: DailyWindow | None = None
    photo: Path | None = None
    dynamic: bool = False


def parse_role(text: str, field: str = "role") -> Role:
    name = text.strip().lower().replace("-", "_").replace(" ", "_")
    try:
        return Role[name.upper()]
    except KeyError:
        choices = ", ".join(r.name.lower() for r in Role)
        raise RequestError(RequestReason.BAD_ROLE, field, f"{text!r} is not one of {choices}") from None


def parse_zones(text: str, field: str = "zones") -> frozenset[int]:
    try:
        zones = frozenset(int(part) for part in text.replace(";", ",").split(",") if part.strip())
    except ValueError:
        raise RequestError(RequestReason.BAD_ZONES, field, f"{text!r} is not a list like 0,1") from None
    if not zones or not all(0 <= z < 64 for z in zones):
        raise RequestError(RequestReason.BAD_ZONES, field, "zones are numbers 0-63, at least one")
    return zones


def parse_window(text: str, field: str = "window") -> DailyWindow:
    """``06:00-09:00``; ``22:00-06:00`` wraps midnight."""
    start, sep, end = text.strip().partition("-")
    try:
        if not sep:
            raise ValueError
        minutes = []
        for part in (start, end):
            hours, colon, mins = part.strip().partition(":")
            h, m = int(hours), int(mins) if colon else 0
            if not (0 <= h <= 23 and 0 <= m <= 59):
                raise ValueError
            minutes.append(h * 60 + m)
        return DailyWindow(minutes[0], minutes[1])
    except (ValueError, PassError):
        raise RequestError(
            RequestReason.BAD_WINDOW, field, f"{text!r} is not a window like 06:00-09:00"
        ) from None


def parse_days(text: str, field: str = "days") -> int:
    try:
        days = int(text)
    except ValueError:
        raise RequestError(RequestReason.BAD_DAYS, field, f"{text!r} is not a whole number of days") from None
    if not 1 <= days <= 36500:
        raise RequestError(RequestReason.BAD_DAYS, field, "days must be 1-36500")
    return days


def parse_until(text: str, field: str = "until") -> date:
    try:
        return date.fromisoformat(text.strip())
    except ValueError:
        raise RequestError(RequestReason.BAD_DATE, field, f"{text!r} is not a date like 2026-12-31") from None


# -- the office -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class IssuedPass:
    pass_: Pass
    text: str
    """The QR numeric-mode digits, exactly what the printed code holds."""
    photo: Path | None
    """The office's copy of the photo, if any."""
    phone_key: bytes | None = None
    """For a dynamic pass: the per-pass key the holder's phone computes codes with."""


@dataclass(frozen=True, slots=True)
class RegisteredPass:
    serial: int
    generation: int
    kid: int
    holder: str
    unit: str
    role: Role
    valid_until: datetime
    text: str
    issued_at: datetime


@dataclass(frozen=True, slots=True)
class PassRecord:
    """One generation of a pass as the register holds it, with its revocation: what a search finds.

    Times stay the register's ISO text; the pages format them for the site's zone.
    """

    serial: int
    generation: int
    holder: str
    unit: str
    role: str
    zones: str
    valid_from: str
    valid_until: str
    daily_window: str | None
    dynamic: bool
    issued_at: str
    photo_digest: str | None
    revoked_at: str | None
    """When the serial was revoked, if it was, whether or not this generation is covered."""
    revoked_all: bool
    revoked_before_generation: int | None

    @property
    def revoked(self) -> bool:
        """This generation is on the revocation list (all generations, or one before the cut)."""
        if self.revoked_at is None:
            return False
        return self.revoked_all or self.generation < (self.revoked_before_generation or 0)


_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) STRICT;
CREATE TABLE IF NOT EXISTS passes (
    serial INTEGER NOT NULL,
    generation INTEGER NOT NULL,
    kid INTEGER NOT NULL,
    holder TEXT NOT NULL,
    unit TEXT NOT NULL,
    role TEXT NOT NULL,
    zones TEXT NOT NULL,
    valid_from TEXT NOT NULL,
    valid_until TEXT NOT NULL,
    daily_window TEXT,
    photo_digest TEXT,
    dynamic INTEGER NOT NULL,
    text TEXT NOT NULL,
    issued_at TEXT NOT NULL,
    PRIMARY KEY (serial, generation)
) STRICT;
CREATE TABLE IF NOT EXISTS revocations (
    serial INTEGER PRIMARY KEY,
    all_generations INTEGER NOT NULL,
    before_generation INTEGER NOT NULL,
    revoked_at TEXT NOT NULL
) STRICT;
"""


def _utcnow() -> datetime:
    return datetime.now(UTC)


def _make_private_dir(path: Path) -> None:
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(path, 0o700)


class Office:
    """One site's issuing state.  Create with :meth:`create`, then :meth:`open` it for each command."""

    def __init__(self, directory: Path) -> None:
        self.dir = Path(directory)
        if not (self.dir / REGISTER).exists() or not (self.dir / PUBLIC / ROOT_PUB).exists():
            raise OfficeError(
                OfficeReason.NOT_INITIALISED, f"{self.dir} is not a site office (run `pass init`)"
            )
        self._root_key: SigningKey | None = None
        info = self.dir.stat()
        if info.st_mode & 0o077 or info.st_uid != os.geteuid():
            raise OfficeError(
                OfficeReason.INSECURE_PERMISSIONS,
                f"{self.dir} has mode {stat.filemode(info.st_mode)}; it must be 0700 and ours",
            )
        self.public = self.dir / PUBLIC
        self.db = sqlite3.connect(self.dir / REGISTER, isolation_level=None)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=FULL")
        try:
            self.root_public = load_public_key(self.public / ROOT_PUB)
            self.bundle = open_bundle((self.public / BUNDLE).read_bytes(), self.root_public)
        except (OSError, KeyFileError, DocumentError) as exc:
            raise OfficeError(OfficeReason.CORRUPT, f"public files: {exc}") from None

    # -- lifecycle ----------------------------------------------------------------------------

    @classmethod
    def create(
        cls,
        directory: Path,
        *,
        site: str,
        site_id: int,
        passphrase: str,
        timezone: str = "Asia/Shanghai",
        now: datetime | None = None,
        key_lifetime: timedelta = DEFAULT_KEY_LIFETIME,
        command_key_lifetime: timedelta = DEFAULT_COMMAND_KEY_LIFETIME,
        root_file: Path | None = None,
        kdf: ScryptParams = DEFAULT_SCRYPT,
    ) -> Office:
        """A new office: sealed root key, first signing key, command key, site secret, bundle, empty revocation list.

        The root key is sealed under ``passphrase`` at ``root_file`` (``DIR/root.sealed``
        by default) and never written in clear; the office returned holds it unlocked.
        """
        now = now or _utcnow()
        directory = Path(directory)
        root_file = Path(root_file) if root_file is not None else directory / ROOT_SEALED
        if (directory / REGISTER).exists() or (directory / ROOT_KEY).exists() or root_file.exists():
            raise OfficeError(OfficeReason.ALREADY_INITIALISED, f"{directory} already holds a site office")
        check_new_passphrase(passphrase)
        try:
            bundle = new_bundle(site=site, site_id=site_id, timezone=timezone, now=now)
        except (ValueError, GatepostError) as exc:
            raise RequestError(RequestReason.BAD_FIELD, "site", str(exc).splitlines()[0]) from None
        _make_private_dir(directory)
        _make_private_dir(directory / PHOTOS)
        (directory / PUBLIC).mkdir(mode=0o755, exist_ok=True)
        root = generate_signing_key()
        _write_sealed_root(root_file, root, passphrase, site=site, kdf=kdf)
        save_public_key(directory / PUBLIC / ROOT_PUB, root)
        save_site_secret(directory / SITE_SECRET, generate_site_secret())
        bundle, _kid, _path = rotate_with_file(
            bundle, directory, now=now, lifetime=key_lifetime, grace=timedelta(0)
        )
        bundle, _ckid = _new_command_key(bundle, directory, now=now, lifetime=command_key_lifetime)
        atomic_write(directory / PUBLIC / BUNDLE, seal_bundle(bundle, root))
        db = sqlite3.connect(directory / REGISTER, isolation_level=None)
        try:
            db.executescript(_SCHEMA)
            db.executemany(
                "INSERT INTO meta VALUES (?, ?)",
                [("next_serial", "1"), ("revocation_version", "0")],
            )
        finally:
            db.close()
        os.chmod(directory / REGISTER, 0o600)
        office = cls(directory)
        office._root_key = root
        with office.locked():
            office._publish_revocations(now)
        return office

    @classmethod
    def open(cls, directory: Path) -> Office:
        return cls(directory)

    def close(self) -> None:
        self.db.close()

    def __enter__(self) -> Office:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    @contextmanager
    def locked(self) -> Iterator[None]:
        """Hold the office's exclusive lock, and re-read the bundle another process may have changed."""
        fd = os.open(self.dir / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            self.bundle = open_bundle((self.public / BUNDLE).read_bytes(), self.root_public)
            yield
        finally:
            os.close(fd)

    # -- keys ---------------------------------------------------------------------------------

    @property
    def timezone(self) -> ZoneInfo:
        return ZoneInfo(self.bundle.timezone)

    # -- the root key ---------------------------------------------------------------------------

    @property
    def root_in_clear(self) -> bool:
        """An office from before sealing: ``root.key`` in clear, to migrate with :meth:`encrypt_root`."""
        return (self.dir / ROOT_KEY).exists()

    def unlock_root(self, passphrase: str, root_file: Path | None = None) -> None:
        """Open the sealed root key for this process's operations (it stays in memory only)."""
        path = Path(root_file) if root_file is not None else self.dir / ROOT_SEALED
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            raise OfficeError(
                OfficeReason.ROOT_MISSING, f"no sealed root key at {path} (give --root FILE where it is kept)"
            ) from None
        root = SigningKey(open_secret(data, passphrase, what=ROOT_WHAT))
        if bytes(root.verify_key) != bytes(self.root_public):
            raise OfficeError(OfficeReason.WRONG_ROOT, f"{path} is not the root key of {self.bundle.site}")
        self._root_key = root

    def lock_root(self) -> None:
        self._root_key = None

    def _root(self) -> SigningKey:
        if self._root_key is not None:
            return self._root_key
        if self.root_in_clear:
            log.warning("%s: the root key is not encrypted; run `gatepost pass encrypt-root`", self.dir)
            return load_signing_key(self.dir / ROOT_KEY)
        raise OfficeError(
            OfficeReason.ROOT_LOCKED,
            "this needs the site root key: give its passphrase (--passphrase-file, $GATEPOST_PASSPHRASE or the prompt)",
        )

    def encrypt_root(
        self, passphrase: str, *, root_file: Path | None = None, kdf: ScryptParams = DEFAULT_SCRYPT
    ) -> Path:
        """Seal an office's clear ``root.key`` under ``passphrase``, check the seal opens, then destroy the clear file."""
        path = Path(root_file) if root_file is not None else self.dir / ROOT_SEALED
        with self.locked():
            if not self.root_in_clear:
                raise OfficeError(
                    OfficeReason.ROOT_ALREADY_SEALED, f"{self.dir} has no root key in clear to encrypt"
                )
            check_new_passphrase(passphrase)
            root = load_signing_key(self.dir / ROOT_KEY)
            if bytes(root.verify_key) != bytes(self.root_public):
                raise OfficeError(
                    OfficeReason.WRONG_ROOT, f"{self.dir / ROOT_KEY} does not match public/root.pub"
                )
            if path.exists():
                raise OfficeError(
                    OfficeReason.ALREADY_INITIALISED, f"{path} exists; refusing to overwrite it"
                )
            _write_sealed_root(path, root, passphrase, site=self.bundle.site, kdf=kdf)
            if open_secret(path.read_bytes(), passphrase, what=ROOT_WHAT) != bytes(root):
                raise OfficeError(OfficeReason.CORRUPT, f"{path} does not read back")
            destroy_key_file(self.dir / ROOT_KEY)
            self._root_key = root
        return path

    def _signing(self, now: datetime) -> tuple[int, SigningKey]:
        entry = issuing_key(self.bundle, now)
        if entry is None:
            raise OfficeError(
                OfficeReason.NO_SIGNING_KEY, "no signing key is valid now; run `pass rotate-key`"
            )
        return entry.kid, load_signing_key(self.dir / f"signing-{entry.kid}.key")

    def _publish_bundle(self, bundle: TrustBundle) -> None:
        atomic_write(self.public / BUNDLE, seal_bundle(bundle, self._root()))
        self.bundle = bundle

    def _latest_valid_until(self, now: datetime) -> datetime:
        row = self.db.execute("SELECT max(valid_until) FROM passes").fetchone()
        latest = datetime.fromisoformat(row[0]) if row and row[0] else now
        return max(latest, now)

    def rotate_key(self, *, now: datetime | None = None, lifetime: timedelta = DEFAULT_KEY_LIFETIME) -> int:
        """A new signing key; older keys stay accepted exactly as long as the passes they signed.

        The grace is the latest expiry in the register, so no issued pass stops working
        early and no old key is accepted longer than needed.
        """
        now = now or _utcnow()
        with self.locked():
            self._root()  # before any key file is made
            grace = self._latest_valid_until(now) - now + timedelta(minutes=1)
            bundle, kid, _path = rotate_with_file(
                self.bundle, self.dir, now=now, lifetime=lifetime, grace=grace
            )
            self._publish_bundle(bundle)
        return kid

    def retire_key(self, kid: int, *, now: datetime | None = None) -> int | None:
        """Stop accepting ``kid`` (a signing or a command key) now.

        If no valid key of its kind would remain, a new one is added; its kid is returned.
        A retired command key's private file is destroyed: nothing it signs counts any more.
        """
        now = now or _utcnow()
        with self.locked():
            self._root()  # before any key file is made
            command = self.bundle.command_key(kid) is not None
            if self.bundle.key(kid) is None and not command:
                raise OfficeError(
                    OfficeReason.UNKNOWN_KEY, f"kid {kid} is not in bundle v{self.bundle.version}"
                )
            bundle = retire(self.bundle, kid, now=now)
            added = None
            if command:
                remaining_command = command_signing_key(bundle, now)
                if remaining_command is None or remaining_command.kid == kid:
                    bundle, added = _new_command_key(
                        bundle, self.dir, now=now, lifetime=DEFAULT_COMMAND_KEY_LIFETIME
                    )
            else:
                remaining = issuing_key(bundle, now)
                if remaining is None or remaining.kid == kid:
                    bundle, added, _path = rotate_with_file(
                        bundle, self.dir, now=now, lifetime=DEFAULT_KEY_LIFETIME, grace=timedelta(0)
                    )
            self._publish_bundle(bundle)
            if command:
                _destroy_if_present(self.dir / f"command-{kid}.key")
            else:
                # A list signed by the retired key stays valid for gates, but re-sign it with a
                # key we still trust, so the newest list never depends on a leaked key.
                self._publish_revocations(now)
        return added

    def renew_keys(
        self,
        *,
        now: datetime | None = None,
        lifetime: timedelta = DEFAULT_KEY_LIFETIME,
        command_lifetime: timedelta = DEFAULT_COMMAND_KEY_LIFETIME,
    ) -> tuple[int, int]:
        """New signing and command keys for the web console; the superseded private keys are destroyed.

        Older signing keys stay accepted as long as the passes they signed (as with
        :meth:`rotate_key`), older command keys for :data:`MAX_COMMAND_LIFETIME`, so
        nothing already issued or in flight stops working; but only the new private keys
        remain on disk, so a copy of this folder taken later signs nothing older.
        Returns ``(signing kid, command kid)``.
        """
        now = now or _utcnow()
        with self.locked():
            self._root()  # before any key file is made
            grace = self._latest_valid_until(now) - now + timedelta(minutes=1)
            bundle, kid, _path = rotate_with_file(
                self.bundle, self.dir, now=now, lifetime=lifetime, grace=grace
            )
            bundle, command_kid = _new_command_key(bundle, self.dir, now=now, lifetime=command_lifetime)
            self._publish_bundle(bundle)
            self._publish_revocations(now)  # signed by the new key, so no list depends on an old one
            for path in [*self.dir.glob("signing-*.key"), *self.dir.glob("command-*.key")]:
                if path.name not in (f"signing-{kid}.key", f"command-{command_kid}.key"):
                    _destroy_if_present(path)
        return kid, command_kid

    def command_key(self, now: datetime | None = None) -> tuple[int, SigningKey]:
        """The command key to sign with now, or :class:`OfficeError` (``no_command_key``)."""
        entry = command_signing_key(self.bundle, now or _utcnow())
        path = self.dir / f"command-{entry.kid}.key" if entry is not None else None
        if entry is None or path is None or not path.exists():
            raise OfficeError(
                OfficeReason.NO_COMMAND_KEY, "no command key is valid now; run `gatepost pass renew-keys`"
            )
        return entry.kid, load_signing_key(path)

    # -- issuing ------------------------------------------------------------------------------

    def resolve_validity(self, request: PassRequest, now: datetime) -> tuple[datetime, datetime]:
        """From now (to the minute) until the end of ``until`` (site-local) or ``days`` later."""
        start = now.astimezone(UTC).replace(second=0, microsecond=0)
        if request.until is not None:
            end = datetime.combine(request.until + timedelta(days=1), time(0), tzinfo=self.timezone)
            if end <= start:
                raise RequestError(RequestReason.BAD_DATE, "until", f"{request.until} is already past")
            return start, end.astimezone(UTC)
        days = request.days if request.days is not None else DEFAULT_DAYS[request.role]
        return start, start + timedelta(days=days)

    def issue(self, request: PassRequest, *, now: datetime | None = None) -> IssuedPass:
        """Assign the next serial, sign, and record; the register and the serial move together."""
        now = now or _utcnow()
        photo_bytes = _read_photo(request.photo) if request.photo is not None else None
        with self.locked():
            self.db.execute("BEGIN IMMEDIATE")
            try:
                serial = int(self.db.execute("SELECT value FROM meta WHERE key='next_serial'").fetchone()[0])
                issued = self._sign_and_record(request, serial, 0, photo_bytes, None, now)
                self.db.execute("UPDATE meta SET value=? WHERE key='next_serial'", (str(serial + 1),))
                self.db.execute("COMMIT")
            except BaseException:
                self.db.execute("ROLLBACK")
                raise
        return issued

    def reissue(
        self,
        serial: int,
        *,
        days: int | None = None,
        until: date | None = None,
        photo: Path | None = None,
        now: datetime | None = None,
    ) -> tuple[IssuedPass, RevocationList]:
        """A new generation of a pass — lost, photographed, or a phone replaced — and the old ones revoked.

        The holder keeps the serial; the new pass carries the next generation, and one
        revocation entry ("every generation of this serial below N") retires all earlier
        ones at every gate.  A dynamic pass gets a new per-pass key with it, so a copied
        phone key stops working too.  Holder, unit, role, zones, daily window and photo are
        kept (a new photo may be given); the validity starts again from now.
        """
        now = now or _utcnow()
        photo_bytes = _read_photo(photo) if photo is not None else None
        with self.locked():
            row = self.db.execute(
                "SELECT generation, holder, unit, role, zones, daily_window, photo_digest, dynamic "
                "FROM passes WHERE serial=? ORDER BY generation DESC LIMIT 1",
                (serial,),
            ).fetchone()
            if row is None:
                raise OfficeError(OfficeReason.UNKNOWN_SERIAL, f"serial {serial} was never issued here")
            generation, holder, unit, role, zones, window, digest, dynamic = row
            request = PassRequest(
                holder=holder,
                unit=unit,
                role=Role[role.upper()],
                zones=frozenset(int(z) for z in zones.split(",") if z),
                days=days,
                until=until,
                daily_window=DailyWindow(*map(int, window.split("-"))) if window else None,
                photo=photo,
                dynamic=bool(dynamic),
            )
            kept = bytes.fromhex(digest) if digest and photo_bytes is None else None
            self.db.execute("BEGIN IMMEDIATE")
            try:
                issued = self._sign_and_record(request, serial, generation + 1, photo_bytes, kept, now)
                self.db.execute("COMMIT")
            except BaseException:
                self.db.execute("ROLLBACK")
                raise
        revocations = self.revoke(serial, before_generation=generation + 1, now=now)
        return issued, revocations

    def _sign_and_record(
        self,
        request: PassRequest,
        serial: int,
        generation: int,
        photo_bytes: bytes | None,
        kept_digest: bytes | None,
        now: datetime,
    ) -> IssuedPass:
        """Sign one pass and add it to the register; the caller holds the lock and the transaction."""
        valid_from, valid_until = self.resolve_validity(request, now)
        kid, key = self._signing(now)
        entry = self.bundle.key(kid)
        assert entry is not None
        if valid_until > entry.not_after:
            raise OfficeError(
                OfficeReason.OUTLIVES_KEY,
                f"the pass would outlive signing key {kid} (accepted until {entry.not_after:%Y-%m-%d}); "
                "run `pass rotate-key` or shorten it",
            )
        try:
            p = Pass(
                kid=kid,
                site_id=self.bundle.site_id,
                serial=serial,
                holder=request.holder,
                unit=request.unit,
                role=request.role,
                zones=request.zones,
                valid_from=valid_from,
                valid_until=valid_until,
                daily_window=request.daily_window,
                photo_digest=photo_digest(photo_bytes) if photo_bytes is not None else kept_digest,
                dynamic=request.dynamic,
                generation=generation,
            )
        except PassError as exc:
            raise RequestError(RequestReason.BAD_FIELD, _field_of(exc.detail), exc.detail) from None
        text = issue(p, key)
        self.db.execute(
            "INSERT INTO passes VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
            (
                serial,
                p.generation,
                kid,
                p.holder,
                p.unit,
                p.role.name.lower(),
                ",".join(map(str, sorted(p.zones))),
                p.valid_from.isoformat(),
                p.valid_until.isoformat(),
                f"{p.daily_window.start}-{p.daily_window.end}" if p.daily_window else None,
                p.photo_digest.hex() if p.photo_digest else None,
                int(p.dynamic),
                text,
                now.isoformat(),
            ),
        )
        photo = None
        if request.photo is not None and photo_bytes is not None:
            photo = self.dir / PHOTOS / f"{serial}-{p.generation}{request.photo.suffix.lower()}"
            shutil.copyfile(request.photo, photo)
            os.chmod(photo, 0o600)
        elif kept_digest is not None:
            photo = next(iter(sorted((self.dir / PHOTOS).glob(f"{serial}-*"))[-1:]), None)
        phone_key = pass_key(self.site_secret(), serial, p.generation) if p.dynamic else None
        return IssuedPass(p, text, photo, phone_key)

    def site_secret(self) -> bytes:
        return load_site_secret(self.dir / SITE_SECRET)

    def registered(self, serial: int) -> list[RegisteredPass]:
        rows = self.db.execute(
            "SELECT serial, generation, kid, holder, unit, role, valid_until, text, issued_at "
            "FROM passes WHERE serial=? ORDER BY generation",
            (serial,),
        ).fetchall()
        return [
            RegisteredPass(
                r[0], r[1], r[2], r[3], r[4], Role[r[5].upper()],
                datetime.fromisoformat(r[6]), r[7], datetime.fromisoformat(r[8]),
            )
            for r in rows
        ]  # fmt: skip

    def search(self, text: str = "", limit: int = 100, *, serial_only: bool = False) -> list[PassRecord]:
        """Passes newest first: a number finds that serial, any text holders and units containing it.

        Reads the register with the office's connection under no lock: SQLite WAL readers
        see the last committed state, so a search never waits on an operator issuing.
        ``serial_only`` matches the serial and nothing else (a pass's own page).
        """
        text = text.strip()[:200]
        where: list[str] = []
        params: list[object] = []
        if text and not serial_only:
            like = "%" + text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
            where += ["p.holder LIKE ? ESCAPE '\\'", "p.unit LIKE ? ESCAPE '\\'"]
            params += [like, like]
        if text and text.isascii() and text.isdigit() and len(text) < 19:
            where.append("p.serial = ?")
            params.append(int(text))
        elif serial_only:
            return []
        sql = (
            "SELECT p.serial, p.generation, p.holder, p.unit, p.role, p.zones, p.valid_from, p.valid_until,"
            " p.daily_window, p.dynamic, p.issued_at, p.photo_digest,"
            " r.revoked_at, r.all_generations, r.before_generation"
            " FROM passes p LEFT JOIN revocations r ON r.serial = p.serial"
        )
        if where:
            sql += " WHERE " + " OR ".join(where)
        sql += " ORDER BY p.serial DESC, p.generation DESC LIMIT ?"
        rows = self.db.execute(sql, (*params, max(0, limit))).fetchall()
        return [
            PassRecord(
                r[0], r[1], r[2], r[3], r[4], r[5], r[6], r[7], r[8], bool(r[9]), r[10], r[11],
                r[12], bool(r[13]), r[14],
            )
            for r in rows
        ]  # fmt: skip

    # -- revocation ---------------------------------------------------------------------------

    def revoke(
        self, serial: int, *, before_generation: int | None = None, now: datetime | None = None
    ) -> RevocationList:
        """Revoke a serial (every generation, or those below ``before_generation``) and publish a new list."""
        now = now or _utcnow()
        with self.locked():
            if not self.registered(serial):
                raise OfficeError(OfficeReason.UNKNOWN_SERIAL, f"serial {serial} was never issued here")
            self.db.execute(
                "INSERT INTO revocations VALUES (?, ?, ?, ?) ON CONFLICT(serial) DO UPDATE SET "
                "all_generations = max(all_generations, excluded.all_generations), "
                "before_generation = max(before_generation, excluded.before_generation), "
                "revoked_at = excluded.revoked_at",
                (serial, int(before_generation is None), before_generation or 0, now.isoformat()),
            )
            return self._publish_revocations(now)

    def _publish_revocations(self, now: datetime) -> RevocationList:
        """Seal the next list version.  Serials whose every pass has expired are left out: gates deny those anyway."""
        rows = self.db.execute(
            "SELECT r.serial, r.all_generations, r.before_generation FROM revocations r "
            "WHERE EXISTS (SELECT 1 FROM passes p WHERE p.serial = r.serial AND p.valid_until > ?)",
            (now.astimezone(UTC).isoformat(),),
        ).fetchall()
        version = (
            int(self.db.execute("SELECT value FROM meta WHERE key='revocation_version'").fetchone()[0]) + 1
        )
        revocations = make_revocation_list(
            site=self.bundle.site,
            version=version,
            issued_at=now,
            serials=[s for s, whole, _b in rows if whole],
            before_generation={s: b for s, whole, b in rows if not whole and b},
        )
        kid, key = self._signing(now)
        atomic_write(self.public / REVOCATIONS, seal_revocation_list(revocations, key, kid))
        self.db.execute("UPDATE meta SET value=? WHERE key='revocation_version'", (str(version),))
        return revocations

    # -- what a gate sees ---------------------------------------------------------------------

    def gate_state(self, policy: GatePolicy | None = None) -> GateState:
        return gate_state_from(self.public, self.bundle.site, policy=policy, site_secret=self.site_secret())


def _write_sealed_root(
    path: Path, root: SigningKey, passphrase: str, *, site: str, kdf: ScryptParams
) -> None:
    sealed = seal_secret(
        bytes(root),
        passphrase,
        what=ROOT_WHAT,
        public={"site": site, "public_key": public_hex(root)},
        params=kdf,
    )
    with private_file(path) as f:
        f.write(sealed)
        f.flush()
        os.fsync(f.fileno())


def sealed_root_public_key(path: Path) -> str:
    """The public key a sealed root file names (readable without its passphrase)."""
    return str(read_sealed_header(Path(path).read_bytes(), ROOT_WHAT).get("public_key", ""))


def _new_command_key(
    bundle: TrustBundle, directory: Path, *, now: datetime, lifetime: timedelta
) -> tuple[TrustBundle, int]:
    """Certify a fresh command key in the next bundle and store it as ``command-<kid>.key``."""
    key = generate_signing_key()
    bundle, kid = rotate_command_key(
        bundle,
        key,
        now=now,
        lifetime=lifetime,
        grace=MAX_COMMAND_LIFETIME,
        backdate=COMMAND_KEY_BACKDATE,
        holder="console",
    )
    save_signing_key(Path(directory) / f"command-{kid}.key", key)
    return bundle, kid


def _destroy_if_present(path: Path) -> None:
    with suppress(FileNotFoundError):
        destroy_key_file(path)


def gate_state_from(
    public: Path,
    site: str | None = None,
    *,
    policy: GatePolicy | None = None,
    site_secret: bytes | None = None,
) -> GateState:
    """A gate's state built from an office's ``public/`` folder, as a freshly provisioned gate would hold it."""
    public = Path(public)
    root = load_public_key(public / ROOT_PUB)
    data = (public / BUNDLE).read_bytes()
    if site is None:
        site = open_bundle(data, root).site
    trust = TrustStore(root, site)
    outcome = trust.apply(data)
    if not outcome.applied:
        raise OfficeError(OfficeReason.CORRUPT, f"{public / BUNDLE}: {outcome.reason.value} {outcome.detail}")
    revocation = RevocationState(trust)
    if (public / REVOCATIONS).exists():
        revocation.apply((public / REVOCATIONS).read_bytes())
    return GateState(trust=trust, revocation=revocation, policy=policy, site_secret=site_secret)


def _read_photo(path: Path) -> bytes:
    try:
        size = path.stat().st_size
        if size > MAX_PHOTO_BYTES:
            raise RequestError(RequestReason.BAD_PHOTO, "photo", f"{path} is over {MAX_PHOTO_BYTES} bytes")
        data = path.read_bytes()
    except OSError as exc:
        raise RequestError(RequestReason.BAD_PHOTO, "photo", f"{path}: {exc.strerror}") from None
    from console.passes.printing import check_photo

    check_photo(data, str(path))
    return data


def _field_of(detail: str) -> str:
    for name in ("holder", "unit", "zones", "valid"):
        if detail.startswith(name):
            return "until" if name == "valid" else name
    return "pass"
