"""The demo's site office: a real ``console.passes`` office whose passes the simulated gates check.

Before this, the demo's gates trusted keys the simulator made up (``simulator.passes.
SimulatedOffice``) and the web console had no office at all, so its Passes pages answered
503.  Here the demo makes a real office (``console/passes/office.py``) in its state
folder, issues the simulated residents' passes from it, and gives its public files to the
gates; the web console is pointed at the same folder.  A pass a newcomer issues in the
browser is then signed by the key the gates trust, and a revocation made there travels
the way a site's does: a new signed list, published retained to the gates.

The site root key is sealed under a passphrase, as in every office.  The demo cannot ask
for one without stopping a newcomer at the first step, and must not ship one in the
source (anyone could then sign bundles for every demo office ever made, and the habit
would leak into real sites).  So it generates one per office, prints it at start, and
keeps it in ``<state>/office-passphrase`` (0600, outside the office folder) so that a
``--state`` run can be continued with ``gatepost pass rotate-key`` and friends.  A real
office never writes its passphrase down; that file is the demo's only concession.
"""

from __future__ import annotations

import json
import os
import random
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from nacl.signing import SigningKey

from console.passes.office import BUNDLE, PUBLIC, REVOCATIONS, ROOT_PUB, SITE_SECRET, Office, PassRequest
from protocol.passes import Pass, Role, issuing_key
from protocol.passes.codec import issue
from protocol.passes.dynamic import dynamic_text, pass_key
from protocol.passes.keys import load_signing_key, load_site_secret

if TYPE_CHECKING:
    from simulator.passes import PassCorpus
    from simulator.present_page import OfferedPass, PresentPage
    from simulator.site import SimulatedSite

OFFICE_DIR = "office"
PASSPHRASE_FILE = "office-passphrase"
CORPUS_FILE = "office-corpus.json"
"""The simulated arrivals' passes, kept so that a ``--state`` run shows the same ones again."""
BACKDATE = timedelta(days=30)
"""The office's first keys start this long ago, so an expired pass (valid until two days ago)
was signed by a key valid at the time and is refused as ``expired``, not as a bad signature."""
SITE_ID = 1


@dataclass
class DemoOffice:
    """A real office folder, its passphrase, and the passes the simulated arrivals show."""

    folder: Path
    site: str
    passphrase: str
    corpus: PassCorpus
    phone_serial: int
    phone_text: str
    created: bool
    """False when an earlier ``--state`` run made it."""

    @property
    def root_key(self) -> Path:
        return self.folder / PUBLIC / ROOT_PUB

    @property
    def bundle(self) -> Path:
        return self.folder / PUBLIC / BUNDLE

    @property
    def revocations(self) -> Path:
        return self.folder / PUBLIC / REVOCATIONS

    @property
    def site_secret(self) -> Path:
        return self.folder / SITE_SECRET

    def phone_code(self, when: datetime | None = None) -> str:
        """What the resident's phone shows now: the pass and the code of the current step."""
        key = pass_key(load_site_secret(self.site_secret), self.phone_serial, 0)
        return dynamic_text(self.phone_text, key, when or datetime.now(UTC))

    @classmethod
    def open_or_create(
        cls, state: Path, *, site: str, timezone: str, residents: int = 60, seed: int = 7
    ) -> DemoOffice:
        """The office of an earlier ``--state`` run, or a new one with its residents' passes."""
        folder = state / OFFICE_DIR
        corpus_file = state / CORPUS_FILE
        passphrase_file = state / PASSPHRASE_FILE
        from simulator.passes import PassCorpus

        if corpus_file.exists() and (folder / PUBLIC / BUNDLE).exists():
            saved = json.loads(corpus_file.read_text())
            return cls(
                folder,
                site,
                passphrase_file.read_text().strip() if passphrase_file.exists() else "",
                PassCorpus(saved["genuine"], saved["refused"]),
                saved["phone_serial"],
                saved["phone_text"],
                created=False,
            )
        passphrase = secrets.token_urlsafe(15)
        now = datetime.now(UTC)
        with Office.create(
            folder, site=site, site_id=SITE_ID, passphrase=passphrase, timezone=timezone, now=now - BACKDATE
        ) as office:
            office.lock_root()  # the root is needed to start an office, never to issue or revoke
            corpus, phone = _issue_corpus(office, now, residents, random.Random(seed))
        with _private(passphrase_file) as f:
            f.write(passphrase + "\n")
        corpus_file.write_text(
            json.dumps(
                {
                    "genuine": corpus.genuine,
                    "refused": corpus.refused,
                    "phone_serial": phone[0],
                    "phone_text": phone[1],
                },
                indent=1,
                ensure_ascii=False,
            )
        )
        return cls(folder, site, passphrase, corpus, phone[0], phone[1], created=True)


def _private(path: Path) -> TextIO:
    path.parent.mkdir(parents=True, exist_ok=True)
    return os.fdopen(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w")


def _unit(rng: random.Random) -> str:
    return f"{rng.randint(1, 9)}-{rng.randint(1, 4)}-{rng.randint(1, 6)}0{rng.randint(1, 4)}"


def _issue_corpus(
    office: Office, now: datetime, residents: int, rng: random.Random
) -> tuple[PassCorpus, tuple[int, str]]:
    """Residents' passes from the office's register, and every kind of pass a gate must refuse.

    Genuine, revoked and phone passes go through :meth:`Office.issue` and :meth:`Office.revoke`
    (they are in the register, so the Passes page finds them).  What an office would never
    issue — expired on issue, another site's, a stranger's signature, a forged digit — is
    signed directly with the same keys, as the bad passes a guard meets are made.
    """
    from simulator.passes import HOLDERS, PassCorpus

    def resident() -> str:
        request = PassRequest(holder=rng.choice(HOLDERS), unit=_unit(rng), role=Role.RESIDENT, days=300)
        return office.issue(request, now=now).text

    corpus = PassCorpus(genuine=[resident() for _ in range(residents)])
    revoked_serials = []
    revoked = []
    for _ in range(3):
        revoked.append(resident())
        revoked_serials.append(office.search(limit=1)[0].serial)
    for serial in revoked_serials:
        office.revoke(serial, now=now)
    phone = office.issue(
        PassRequest(holder=rng.choice(HOLDERS), unit=_unit(rng), role=Role.RESIDENT, days=300, dynamic=True),
        now=now,
    )
    assert phone.phone_key is not None
    old_screenshot = dynamic_text(phone.text, phone.phone_key, now - timedelta(minutes=20))
    entry = issuing_key(office.bundle, now)
    assert entry is not None
    key = load_signing_key(office.dir / f"signing-{entry.kid}.key")

    def signed(
        serial: int, *, by: SigningKey = key, site_id: int = SITE_ID, until: datetime | None = None
    ) -> str:
        p = Pass(
            kid=entry.kid,
            site_id=site_id,
            serial=serial,
            holder=rng.choice(HOLDERS),
            unit=_unit(rng),
            role=Role.RESIDENT,
            zones=frozenset({0}),
            valid_from=now - timedelta(days=20),
            valid_until=until or now + timedelta(days=300),
            generation=0,
        )
        return issue(p, by)

    forged = []
    for code in corpus.genuine[:5]:
        digits = list(code)
        at = rng.randrange(10, len(digits) - 10)
        digits[at] = str((int(digits[at]) + 1 + rng.randrange(8)) % 10)
        forged.append("".join(digits))
    corpus.refused = {
        "bad_dynamic_code": [old_screenshot, phone.text],  # a 20-minute-old screenshot; no code at all
        "revoked": revoked,
        "bad_signature": [*forged, signed(8001, by=SigningKey.generate())],
        "expired": [signed(8101, until=now - timedelta(days=2))],
        "wrong_site": [signed(8201, site_id=SITE_ID + 1)],
    }
    return corpus, (phone.pass_.serial, phone.text)


def offered_passes(office: DemoOffice, limit: int = 8) -> list[OfferedPass]:
    """The office's newest passes with the code each holder would show now (a phone's, made now)."""
    from simulator.present_page import OfferedPass

    now = datetime.now(UTC)
    with Office.open(office.folder) as register:
        secret = register.site_secret()
        offered = []
        for record in register.search("", limit):
            texts = {p.generation: p.text for p in register.registered(record.serial)}
            code = texts.get(record.generation, "")
            if record.dynamic:
                code = dynamic_text(code, pass_key(secret, record.serial, record.generation), now)
            offered.append(
                OfferedPass(
                    record.serial, record.generation, record.holder, record.unit, code, record.revoked
                )
            )
    return offered


def reason_label(lang: str, reason: str) -> str:
    """A gate's reason in the web console's words (``reason.<code>`` in its catalogues), else the code."""
    from console.web.i18n import translator
    from console.web.labels import code_label

    return code_label(translator(lang), "reason", reason)


def configure_gates(
    site: SimulatedSite,
    gates: list[str],
    set_table: Callable[[Path, str, list[str]], None],
    *,
    doors: list[str] = (),  # type: ignore[assignment]
    timezone: str = "Asia/Shanghai",
) -> None:
    """``[photos]`` at each pass gate, ``[cards]`` at each door: what the console's Cards page sends.

    The console sends holders' thumbnails (the guard screen shows them) and the door-card
    list; a door decides a card from that list first and its ``[access] allow`` list after.
    """
    for gate in gates:
        config = site.gate_config(gate)
        set_table(config, "photos", [f"dir = {json.dumps(str(config.parent / 'photos'))}"])
    for door in doors:
        config = site.gate_config(door)
        lines = [
            f"store = {json.dumps(str(config.parent / 'cards.db'))}",
            f"timezone = {json.dumps(timezone)}",
        ]
        set_table(config, "cards", lines)


def start_present_page(
    site: SimulatedSite, office: DemoOffice, console_url: str | None
) -> tuple[PresentPage, str]:
    """The demo's page for holding a pass up to a simulated scanner gate."""
    from simulator.present_page import PresentPage

    page = PresentPage(
        site.scanners,
        site.console_rows,
        passes=lambda: offered_passes(office),
        reason_label=reason_label,
        console_url=console_url,
    )
    return page, page.start()
