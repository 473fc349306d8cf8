"""Signed, versioned revocation lists, and the gate's refusal to go back to an older one.

A list names whole serials (every generation of that credential) and "generations of
this serial below N" (a lost phone: the re-issued pass carries generation N, the old
screenshot does not).  Lists are signed by a signing key of the trust bundle: whoever
may issue passes may revoke them.  ``version`` only grows; a gate that applied version
7 refuses 6 forever (also across restarts, when it has a ``path``), so replaying an old
list cannot un-revoke a pass.

A gate that has not heard from the console for a while cannot know what was revoked
since: :meth:`RevocationState.is_stale` says so, and the decision applies the site's
policy (deny, or grant and flag).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta
from pathlib import Path
from typing import Annotated, Literal

from nacl.signing import SigningKey
from pydantic import Field, ValidationError

from protocol.passes.errors import DocumentError, DocumentRejectReason
from protocol.passes.format import MAX_GENERATION, MAX_SERIAL
from protocol.passes.models import MAX_VERSION, SiteName, StrictModel, UtcTime
from protocol.passes.signed import ApplyOutcome, ApplyReason, atomic_write, open_envelope, rejected, seal
from protocol.passes.trust import TrustStore

REVOCATION_KIND = "revocation_list"

Serial = Annotated[int, Field(ge=0, le=MAX_SERIAL)]


class RevocationList(StrictModel):
    v: Literal[1] = 1
    site: SiteName
    version: int = Field(ge=1, le=MAX_VERSION)
    issued_at: UtcTime
    serials: tuple[Serial, ...] = ()
    """Every generation of these serials is revoked."""
    before_generation: tuple[tuple[Serial, Annotated[int, Field(ge=0, le=MAX_GENERATION)]], ...] = ()
    """``(serial, n)``: generations of ``serial`` lower than ``n`` are revoked."""


def make_revocation_list(
    *,
    site: str,
    version: int,
    issued_at: datetime,
    serials: Iterable[int] = (),
    before_generation: Mapping[int, int] | None = None,
) -> RevocationList:
    return RevocationList(
        site=site,
        version=version,
        issued_at=issued_at,
        serials=tuple(sorted(set(serials))),
        before_generation=tuple(sorted((before_generation or {}).items())),
    )


def seal_revocation_list(revocations: RevocationList, key: SigningKey, kid: int) -> bytes:
    return seal(REVOCATION_KIND, revocations.model_dump_json(), key, kid)


class RevocationState:
    """The newest revocation list a gate has accepted, as fast lookups.

    ``trust`` supplies the keys that may sign lists; ``path`` (optional) keeps the
    accepted list on disk so the anti-rollback rule survives a restart.
    """

    def __init__(self, trust: TrustStore, *, path: Path | None = None) -> None:
        self.trust = trust
        self.path = Path(path) if path is not None else None
        self.current: RevocationList | None = None
        self._serials: frozenset[int] = frozenset()
        self._before: dict[int, int] = {}
        if self.path is not None and self.path.exists():
            outcome = self.apply(self.path.read_bytes(), persist=False)
            if not outcome.applied:
                raise DocumentError(
                    DocumentRejectReason(outcome.reason.value), f"{self.path}: {outcome.detail}"
                )

    @property
    def version(self) -> int | None:
        return self.current.version if self.current else None

    def apply(self, data: bytes, *, persist: bool = True) -> ApplyOutcome:
        """Adopt ``data`` if it is a validly signed list for this site, newer than the current one.

        The signing key must be in the trust bundle and valid at the list's
        ``issued_at``: a key retired before that date cannot publish lists.
        """
        try:
            revocations = self._open(data)
        except DocumentError as exc:
            return rejected(exc, self.version)
        if self.current is not None and revocations.version <= self.current.version:
            reason = ApplyReason.SAME if revocations.version == self.current.version else ApplyReason.OLDER
            return ApplyOutcome(False, reason, self.version, f"offered {revocations.version}")
        self.current = revocations
        self._serials = frozenset(revocations.serials)
        self._before = dict(revocations.before_generation)
        if persist and self.path is not None:
            atomic_write(self.path, bytes(data))
        return ApplyOutcome(True, ApplyReason.APPLIED, revocations.version)

    def _open(self, data: bytes) -> RevocationList:
        envelope = open_envelope(data, REVOCATION_KIND)
        trusted = self.trust.key(envelope.kid) if envelope.kid is not None else None
        if trusted is None:
            raise DocumentError(
                DocumentRejectReason.UNKNOWN_KEY, f"kid {envelope.kid} is not in the trust bundle"
            )
        envelope.verify(trusted.verify_key)
        try:
            revocations = RevocationList.model_validate_json(envelope.body)
        except ValidationError as exc:
            raise DocumentError(
                DocumentRejectReason.MALFORMED, f"revocation list: {exc.error_count()} errors"
            ) from None
        if revocations.site != self.trust.site:
            raise DocumentError(DocumentRejectReason.WRONG_SITE, f"list for {revocations.site}")
        if not trusted.entry.valid_at(revocations.issued_at):
            raise DocumentError(
                DocumentRejectReason.UNKNOWN_KEY, f"kid {envelope.kid} not valid at issued_at"
            )
        return revocations

    def is_revoked(self, serial: int, generation: int) -> bool:
        return serial in self._serials or generation < self._before.get(serial, 0)

    def age(self, now: datetime) -> timedelta | None:
        """How old the list is by ``now``; None when the gate has never had one."""
        return None if self.current is None else now - self.current.issued_at

    def is_stale(self, now: datetime, max_age: timedelta) -> bool:
        age = self.age(now)
        return age is None or age > max_age
