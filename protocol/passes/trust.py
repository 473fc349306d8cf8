"""The trust bundle: which signing keys a gate accepts, and when.

A site has one root key.  It signs nothing but trust bundles, so it can live offline
(or at least away from the issuing code); each bundle lists the signing keys that
issue passes, with the window in which a gate accepts them.  A gate is provisioned
once with the root *public* key and afterwards believes only bundles that key signed,
newer than the one it holds.  This is the remedy the EU COVID certificates lacked:
a leaked signing key is retired by a new bundle, and passes from other keys stay good.

Version 2 of the bundle adds ``command_keys``: the console's keys that sign commands to
gates (:mod:`protocol.commands`).  Each entry is that key's certificate — public key,
role and validity window under the root's signature — and sits in its own list, so a
pass signing key can never sign a command, nor a command key a pass.  A bundle with
no command keys is still written as version 1, which gates from before commands read.

Rotation and retirement are pure functions from one bundle to the next (the console's
CLI wraps them); :class:`TrustStore` is the gate's side.
"""

from __future__ import annotations

import zoneinfo
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar

from nacl.signing import SigningKey, VerifyKey
from pydantic import AfterValidator, Field, ValidationError, model_validator

from protocol.passes.errors import DocumentError, DocumentRejectReason
from protocol.passes.format import MAX_KID, MAX_SITE_ID
from protocol.passes.keys import generate_signing_key, public_hex, save_signing_key
from protocol.passes.models import MAX_VERSION, SiteName, StrictModel, UtcTime
from protocol.passes.signed import ApplyOutcome, ApplyReason, atomic_write, open_envelope, rejected, seal

BUNDLE_KIND = "trust_bundle"


def _zone(value: str) -> str:
    try:
        zoneinfo.ZoneInfo(value)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError(f"unknown time zone {value!r}") from exc
    return value


class KeyEntry(StrictModel):
    """A signing key and the window ``[not_before, not_after)`` in which gates accept it."""

    kid: int = Field(ge=0, le=MAX_KID)
    public_key: str = Field(pattern=r"^[0-9a-f]{64}$")
    not_before: UtcTime
    not_after: UtcTime

    @model_validator(mode="after")
    def _window(self) -> KeyEntry:
        if self.not_after <= self.not_before:
            raise ValueError("not_after must be later than not_before")
        return self

    def valid_at(self, when: datetime) -> bool:
        return self.not_before <= when < self.not_after


COMMAND_ROLE = "command"


class CommandKeyEntry(KeyEntry):
    """A command key's certificate: the root vouches that this key may sign commands
    to the site's gates, and only within ``[not_before, not_after)``.

    ``role`` is signed with the rest, so the statement "this key is for commands" is the
    root's, not inferred from where the entry sits; ``holder`` says who keeps the private
    half (``web``, ``office``), for the operator reading a bundle.
    """

    role: Literal["command"] = COMMAND_ROLE
    holder: Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,31}$")] = "console"


class TrustBundle(StrictModel):
    """What a gate trusts: its site, the site's time zone, the signing keys and the command keys.

    ``timezone`` is here because daily windows on passes are site-local times and the
    root key is the authority on the site; ``version`` only ever grows.  Kids are unique
    across both lists, so a kid names one key whatever it signed.
    """

    v: Literal[1, 2] = 1
    site: SiteName
    site_id: int = Field(ge=0, le=MAX_SITE_ID)
    version: int = Field(ge=1, le=MAX_VERSION)
    issued_at: UtcTime
    timezone: Annotated[str, AfterValidator(_zone)] = "UTC"
    keys: tuple[KeyEntry, ...] = ()
    command_keys: tuple[CommandKeyEntry, ...] = ()

    @model_validator(mode="after")
    def _unique_kids(self) -> TrustBundle:
        kids = [k.kid for k in (*self.keys, *self.command_keys)]
        if len(set(kids)) != len(kids):
            raise ValueError("duplicate kid")
        if self.v == 1 and self.command_keys:
            raise ValueError("command keys need bundle format 2")
        return self

    def key(self, kid: int) -> KeyEntry | None:
        return next((k for k in self.keys if k.kid == kid), None)

    def command_key(self, kid: int) -> CommandKeyEntry | None:
        return next((k for k in self.command_keys if k.kid == kid), None)

    def next_kid(self) -> int:
        return max((k.kid for k in (*self.keys, *self.command_keys)), default=0) + 1

    def wire_json(self) -> str:
        """The JSON that is signed: a bundle without command keys omits the field, as version 1."""
        exclude: Any = {"command_keys"} if not self.command_keys else None
        return self.model_dump_json(exclude=exclude)


# -- issuing side -------------------------------------------------------------------------


def new_bundle(*, site: str, site_id: int, timezone: str = "UTC", now: datetime) -> TrustBundle:
    """Version 1 of a site's bundle, with no keys yet (add one with :func:`rotate`)."""
    return TrustBundle(site=site, site_id=site_id, version=1, issued_at=now, timezone=timezone)


def _next(
    bundle: TrustBundle,
    keys: Iterable[KeyEntry],
    now: datetime,
    command_keys: Iterable[CommandKeyEntry] | None = None,
) -> TrustBundle:
    commands = tuple(bundle.command_keys if command_keys is None else command_keys)
    return TrustBundle(
        v=2 if commands else 1,
        site=bundle.site,
        site_id=bundle.site_id,
        version=bundle.version + 1,
        issued_at=now,
        timezone=bundle.timezone,
        keys=tuple(keys),
        command_keys=commands,
    )


_TICK = timedelta(microseconds=1)

_K = TypeVar("_K", bound=KeyEntry)


def _end_by(key: _K, when: datetime) -> _K:
    """``key`` ending no later than ``when`` (a key that had not started yet gets an empty-ish window)."""
    if key.not_after <= when:
        return key
    return key.model_copy(update={"not_after": max(when, key.not_before + _TICK)})


def add_key(
    bundle: TrustBundle,
    public: VerifyKey | SigningKey,
    *,
    now: datetime,
    not_before: datetime,
    not_after: datetime,
) -> tuple[TrustBundle, int]:
    """The next bundle with one more key, and the kid it was given."""
    kid = bundle.next_kid()
    entry = KeyEntry(kid=kid, public_key=public_hex(public), not_before=not_before, not_after=not_after)
    return _next(bundle, (*bundle.keys, entry), now), kid


def rotate(
    bundle: TrustBundle,
    public: VerifyKey | SigningKey,
    *,
    now: datetime,
    lifetime: timedelta,
    grace: timedelta,
) -> tuple[TrustBundle, int]:
    """Add a key valid from ``now`` for ``lifetime``; every older key ends ``grace`` from now.

    ``grace`` should be the longest validity of a pass the old keys signed: those passes
    keep working until they would have expired anyway, while the issuer signs only with
    the new key from now on (:func:`issuing_key` picks it).
    """
    kept = [_end_by(k, now + grace) for k in bundle.keys]
    kid = bundle.next_kid()
    entry = KeyEntry(kid=kid, public_key=public_hex(public), not_before=now, not_after=now + lifetime)
    return _next(bundle, (*kept, entry), now), kid


def rotate_command_key(
    bundle: TrustBundle,
    public: VerifyKey | SigningKey,
    *,
    now: datetime,
    lifetime: timedelta,
    grace: timedelta,
    backdate: timedelta = timedelta(0),
    holder: str = "console",
) -> tuple[TrustBundle, int]:
    """Certify a new command key valid from ``now - backdate`` until ``now + lifetime``; older
    command keys end ``grace`` from now.

    ``grace`` should be the longest lifetime of a command, so a command signed just before
    the renewal still verifies until it expires; after that the old key signs nothing a
    gate accepts.  ``backdate`` lets a gate whose clock lags a little accept the new key
    at once.
    """
    kept = [_end_by(k, now + grace) for k in bundle.command_keys]
    kid = bundle.next_kid()
    entry = CommandKeyEntry(
        kid=kid,
        public_key=public_hex(public),
        not_before=now - backdate,
        not_after=now + lifetime,
        holder=holder,
    )
    return _next(bundle, bundle.keys, now, (*kept, entry)), kid


def retire(bundle: TrustBundle, kid: int, *, now: datetime) -> TrustBundle:
    """Stop accepting ``kid`` now (a leaked or lost key): every pass or command it signed stops working.

    The entry stays in the bundle with a closed window, so a gate can tell "retired"
    from "never heard of" in its logs, and its kid is never reused.
    """
    if bundle.key(kid) is None and bundle.command_key(kid) is None:
        raise DocumentError(
            DocumentRejectReason.UNKNOWN_KEY, f"kid {kid} is not in bundle version {bundle.version}"
        )
    return _next(
        bundle,
        [_end_by(k, now) if k.kid == kid else k for k in bundle.keys],
        now,
        [_end_by(k, now) if k.kid == kid else k for k in bundle.command_keys],
    )


def issuing_key(bundle: TrustBundle, now: datetime) -> KeyEntry | None:
    """The key an issuer should sign with now: the newest one that is currently valid."""
    valid = [k for k in bundle.keys if k.valid_at(now)]
    return max(valid, key=lambda k: (k.not_before, k.kid), default=None)


def command_signing_key(bundle: TrustBundle, now: datetime) -> CommandKeyEntry | None:
    """The command key a console should sign with now: the newest one that is currently valid."""
    valid = [k for k in bundle.command_keys if k.valid_at(now)]
    return max(valid, key=lambda k: (k.not_before, k.kid), default=None)


def rotate_with_file(
    bundle: TrustBundle, directory: Path, *, now: datetime, lifetime: timedelta, grace: timedelta
) -> tuple[TrustBundle, int, Path]:
    """Generate a signing key, store it as ``signing-<kid>.key`` (0600), and rotate to it."""
    key = generate_signing_key()
    new, kid = rotate(bundle, key, now=now, lifetime=lifetime, grace=grace)
    path = Path(directory) / f"signing-{kid}.key"
    save_signing_key(path, key)
    return new, kid, path


def seal_bundle(bundle: TrustBundle, root: SigningKey) -> bytes:
    """The bytes a gate receives: public keys and windows only, signed by the root key."""
    return seal(BUNDLE_KIND, bundle.wire_json(), root, None)


def open_bundle(data: bytes, root: VerifyKey) -> TrustBundle:
    """Verify and parse a sealed bundle, or raise :class:`DocumentError`."""
    envelope = open_envelope(data, BUNDLE_KIND)
    if envelope.kid is not None:
        raise DocumentError(DocumentRejectReason.UNKNOWN_KEY, "a trust bundle is signed by the root key")
    envelope.verify(root)
    try:
        return TrustBundle.model_validate_json(envelope.body)
    except ValidationError as exc:
        raise DocumentError(
            DocumentRejectReason.MALFORMED, f"trust bundle: {exc.error_count()} errors"
        ) from None


# -- gate side ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TrustedKey:
    entry: KeyEntry
    verify_key: VerifyKey


class TrustStore:
    """The gate's current bundle, replaced only by a newer one signed by the pinned root.

    With ``path`` the accepted bundle is written there (atomically) and read back at
    start, re-verified, so a restart cannot be used to roll the gate back.
    """

    def __init__(self, root: VerifyKey, site: str, *, path: Path | None = None) -> None:
        self.root = root
        self.site = site
        self.path = Path(path) if path is not None else None
        self.bundle: TrustBundle | None = None
        self._keys: dict[int, TrustedKey] = {}
        self._command_keys: dict[int, TrustedKey] = {}
        if self.path is not None and self.path.exists():
            outcome = self.apply(self.path.read_bytes(), persist=False)
            if not outcome.applied:
                raise DocumentError(
                    DocumentRejectReason(outcome.reason.value), f"{self.path}: {outcome.detail}"
                )

    @property
    def version(self) -> int | None:
        return self.bundle.version if self.bundle else None

    def apply(self, data: bytes, *, persist: bool = True) -> ApplyOutcome:
        try:
            bundle = open_bundle(data, self.root)
            if bundle.site != self.site:
                raise DocumentError(DocumentRejectReason.WRONG_SITE, f"bundle for {bundle.site}")
        except DocumentError as exc:
            return rejected(exc, self.version)
        if self.bundle is not None and bundle.version <= self.bundle.version:
            reason = ApplyReason.SAME if bundle.version == self.bundle.version else ApplyReason.OLDER
            return ApplyOutcome(False, reason, self.version, f"offered {bundle.version}")
        self.bundle = bundle
        self._keys = {k.kid: TrustedKey(k, VerifyKey(bytes.fromhex(k.public_key))) for k in bundle.keys}
        self._command_keys = {
            k.kid: TrustedKey(k, VerifyKey(bytes.fromhex(k.public_key))) for k in bundle.command_keys
        }
        if persist and self.path is not None:
            atomic_write(self.path, bytes(data))
        return ApplyOutcome(True, ApplyReason.APPLIED, bundle.version)

    def key(self, kid: int) -> TrustedKey | None:
        """A pass signing key (never a command key)."""
        return self._keys.get(kid)

    def command_key(self, kid: int) -> TrustedKey | None:
        """A command key (never a pass signing key)."""
        return self._command_keys.get(kid)
