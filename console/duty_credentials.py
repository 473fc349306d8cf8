"""A person's staff and patrol credentials, kept as ``duty:`` entries in the site's card list.

protocol/duty.py: an entry whose credential is ``duty:<credential>`` makes ``<credential>``
a duty credential; its ``holder`` is the person's name and its ``unit`` is
``<role>:<person id>``.  The card registry (console/credentials.py) is therefore the one
place a duty credential lives: there is no second table that could say otherwise, every
change is a new list version, and the card publisher (console/card_sync.py) delivers it
to the gates as a delta like any card change.

A person has at most one credential per role.  Giving them a new one adds it before the
old one is removed, so for a moment both check them in, never neither.  A credential that
is already another person's duty credential is refused: one card, one person.
"""

from __future__ import annotations

from dataclasses import dataclass

from console.credentials import CardRegistry
from protocol.credentials import CardEntry, CredentialListError
from protocol.duty import DUTY_PREFIX, DutyRole, duty_credential, duty_unit, parse_duty_unit

MAX_CREDENTIAL_CHARS = 100


class DutyCredentialError(ValueError):
    """A duty credential that cannot be given: ``reason`` is a stable code the page translates."""

    def __init__(self, reason: str, detail: str = "") -> None:
        self.reason = reason
        self.detail = detail
        super().__init__(f"{reason}: {detail}" if detail else reason)


@dataclass(frozen=True, slots=True)
class DutyCredential:
    person: str
    role: DutyRole
    credential: str
    """As the reader produces it, without the ``duty:`` prefix."""


def duty_credentials(registry: CardRegistry, person: str | None = None) -> list[DutyCredential]:
    """The duty credentials in the list (of one person when ``person`` is given), by person and role."""
    found: list[DutyCredential] = []
    offset = 0
    while True:
        page = registry.search(DUTY_PREFIX, 1000, offset)
        for entry in page:
            if not entry.credential.startswith(DUTY_PREFIX):
                continue  # the search also matches holders and units containing "duty:"
            parsed = parse_duty_unit(entry.unit)
            if parsed is None or (person is not None and parsed[1] != person):
                continue
            found.append(DutyCredential(parsed[1], parsed[0], entry.credential[len(DUTY_PREFIX) :]))
        if len(page) < 1000:
            break
        offset += len(page)
    return sorted(found, key=lambda c: (c.person, c.role.value, c.credential))


def duty_entry(person: str, name: str, role: DutyRole, credential: str) -> CardEntry:
    """The card-list entry for a duty credential, checked as every gate's decoder will check it."""
    credential = credential.strip()
    if not credential or len(credential) > MAX_CREDENTIAL_CHARS:
        raise DutyCredentialError("bad_credential", credential[:40])
    if credential.startswith(DUTY_PREFIX):
        raise DutyCredentialError(
            "bad_credential", "give the credential as the reader reads it, without duty:"
        )
    try:
        entry = CardEntry(duty_credential(credential), name[:100], duty_unit(role, person), zones=0)
        entry.line()
    except (CredentialListError, ValueError) as exc:
        raise DutyCredentialError("bad_credential", str(getattr(exc, "detail", exc))[:200]) from None
    return entry


def give(registry: CardRegistry, person: str, name: str, role: DutyRole, credential: str) -> int:
    """Make ``credential`` the person's ``role`` credential (replacing theirs); returns the list version."""
    entry = duty_entry(person, name, role, credential)
    held = registry.get(entry.credential)
    if held is not None and held.unit != entry.unit:
        raise DutyCredentialError("credential_taken", held.holder)
    version = registry.put([entry])
    stale = [
        duty_credential(c.credential)
        for c in duty_credentials(registry, person)
        if c.role is role and duty_credential(c.credential) != entry.credential
    ]
    if stale:
        version = registry.remove(stale)
    return version


def take_away(registry: CardRegistry, person: str, role: DutyRole) -> list[str]:
    """Remove the person's ``role`` credential(s); returns the credentials removed."""
    gone = [c.credential for c in duty_credentials(registry, person) if c.role is role]
    if gone:
        registry.remove([duty_credential(c) for c in gone])
    return gone
