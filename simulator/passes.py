"""Real signed passes for simulated residents — and the bad ones guards meet at a gate.

The simulated site plays its own site office with the real ``protocol.passes`` functions:
a root key, a signing key, a sealed trust bundle and revocation list written where a gate
reads them, and passes issued to residents.  Beside the genuine passes it keeps a corpus
of the passes a checkpoint must refuse — forged (one digit changed on a printed pass),
signed by a stranger's key, expired, revoked, from another compound — so that scenarios
and the demo show every answer a guard can get, with its reason.
"""

from __future__ import annotations

import random
import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Protocol

from nacl.signing import SigningKey

from protocol.passes import (
    Pass,
    Role,
    make_revocation_list,
    new_bundle,
    rotate,
    seal_bundle,
    seal_revocation_list,
)
from protocol.passes.codec import issue
from protocol.passes.dynamic import dynamic_text, pass_key
from protocol.passes.keys import generate_site_secret, save_public_key, save_site_secret
from simulator.scenario import Keyboard

HOLDERS = ["王小明", "李华", "张伟", "刘洋", "陈静", "杨帆", "赵磊", "黄丽", "周杰", "吴敏"]


@dataclass
class PassCorpus:
    """Genuine codes by holder, and refused ones by the reason a gate should give."""

    genuine: list[str] = field(default_factory=list)
    refused: dict[str, list[str]] = field(default_factory=dict)

    def pick_refused(self, rng: random.Random) -> tuple[str, str]:
        reason = rng.choice(sorted(self.refused))
        return reason, rng.choice(self.refused[reason])


class SiteOffice(Protocol):
    """What a simulated site needs of an office: the public files a gate is given, and passes to show.

    :class:`SimulatedOffice` plays the office itself; the demo instead runs a real site
    office (``gatepost/demo_office.py``) so that the web console can issue and revoke
    passes the simulated gates trust.
    """

    corpus: PassCorpus

    @property
    def root_key(self) -> Path: ...

    @property
    def bundle(self) -> Path: ...

    @property
    def revocations(self) -> Path: ...

    @property
    def site_secret(self) -> Path: ...

    def phone_code(self, when: datetime | None = None) -> str: ...


class SimulatedOffice:
    """A site office on disk: keys, bundle, revocation list, and a corpus of passes."""

    def __init__(
        self, folder: Path, *, site: str, site_id: int = 1, residents: int = 60, seed: int = 7
    ) -> None:
        self.folder = folder
        self.site = site
        self.site_id = site_id
        folder.mkdir(parents=True, exist_ok=True)
        now = datetime.now(UTC)
        self._root = SigningKey.generate()
        self._signer = SigningKey.generate()
        bundle = new_bundle(
            site=site, site_id=site_id, timezone="Asia/Shanghai", now=now - timedelta(days=30)
        )
        self._bundle, self._kid = rotate(
            bundle,
            self._signer,
            now=now - timedelta(days=30),
            lifetime=timedelta(days=730),
            grace=timedelta(days=1),
        )
        save_public_key(self.root_key, self._root.verify_key)
        self.bundle.write_bytes(seal_bundle(self._bundle, self._root))
        rng = random.Random(seed)
        corpus = PassCorpus()
        for serial in range(1, residents + 1):
            corpus.genuine.append(self._issue(serial, now, rng))
        revoked = [self._issue(serial, now, rng) for serial in range(9001, 9004)]
        rl = make_revocation_list(site=site, version=1, issued_at=now, serials=range(9001, 9004))
        self.revocations.write_bytes(seal_revocation_list(rl, self._signer, self._kid))
        forged = []
        for code in corpus.genuine[:5]:
            digits = list(code)
            at = rng.randrange(10, len(digits) - 10)
            digits[at] = str((int(digits[at]) + 1 + rng.randrange(8)) % 10)
            forged.append("".join(digits))
        self.secret = generate_site_secret()
        save_site_secret(self.site_secret, self.secret)
        self.phone_serial = 7001
        self.phone = self._issue(self.phone_serial, now, rng, dynamic=True)
        """A resident's phone pass: its dynamic part must be made at the moment it is shown."""
        old_screenshot = dynamic_text(self.phone, self.phone_key, now - timedelta(minutes=20))
        stranger = SigningKey.generate()
        corpus.refused = {
            "bad_dynamic_code": [old_screenshot, self.phone],  # a 20-minute-old screenshot; no code at all
            "revoked": revoked,
            "bad_signature": [*forged, self._issue(8001, now, rng, key=stranger)],
            "expired": [self._issue(8101, now, rng, valid_until=now - timedelta(days=2))],
            "wrong_site": [self._issue(8201, now, rng, site_id=site_id + 1)],
        }
        self.corpus = corpus

    @property
    def phone_key(self) -> bytes:
        return pass_key(self.secret, self.phone_serial, 0)

    def phone_code(self, when: datetime | None = None) -> str:
        """What the resident's phone shows now: the pass and the code of the current step."""
        return dynamic_text(self.phone, self.phone_key, when or datetime.now(UTC))

    @property
    def site_secret(self) -> Path:
        return self.folder / "site.secret"

    @property
    def root_key(self) -> Path:
        return self.folder / "root.pub"

    @property
    def bundle(self) -> Path:
        return self.folder / "bundle"

    @property
    def revocations(self) -> Path:
        return self.folder / "revocations"

    def _issue(
        self,
        serial: int,
        now: datetime,
        rng: random.Random,
        *,
        key: SigningKey | None = None,
        valid_until: datetime | None = None,
        site_id: int | None = None,
        dynamic: bool = False,
    ) -> str:
        p = Pass(
            kid=self._kid,
            site_id=self.site_id if site_id is None else site_id,
            serial=serial,
            holder=rng.choice(HOLDERS),
            unit=f"{rng.randint(1, 9)}-{rng.randint(1, 4)}-{rng.randint(1, 6)}0{rng.randint(1, 4)}",
            role=Role.RESIDENT,
            zones=frozenset({0}),
            valid_from=now - timedelta(days=20),
            valid_until=valid_until or now + timedelta(days=300),
            generation=0,
            dynamic=dynamic,
        )
        return issue(p, key or self._signer)

    def passes_section(self) -> list[str]:
        """The ``[passes]`` lines of a gate's configuration for this office's public files."""
        return [
            "[passes]",
            f'root_key = "{self.root_key}"',
            f'trust_bundle = "{self.bundle}"',
            f'revocation_list = "{self.revocations}"',
            f'site_secret_file = "{self.site_secret}"',
        ]


class ScreenshotReplays:
    """Now and then, a resident shows their phone pass and a friend shows a screenshot of it.

    The phone's code is made at the moment it is shown, so the gate grants it; the same
    code shown again a few seconds later — a screenshot sent on — is refused as
    ``replayed``.  Runs on its own thread beside the arrival scenario, at one gate, and
    keeps its own log of what it typed and what the gate should answer.
    """

    def __init__(
        self,
        office: SiteOffice,
        scanner: Keyboard,
        *,
        every_s: float = 20.0,
        replay_after_s: float = 4.0,
    ) -> None:
        self.office = office
        self.scanner = scanner
        self.every_s = every_s
        self.replay_after_s = replay_after_s
        self.shown: list[tuple[str, str]] = []
        """(code, expected reason) in the order typed."""
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="screenshot-replays", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _run(self) -> None:
        while not self._stop.wait(self.every_s):
            code = self.office.phone_code()
            try:
                self.scanner.type(code)
                self.shown.append((code, "granted"))
                if self._stop.wait(self.replay_after_s):
                    return
                self.scanner.type(code)
                self.shown.append((code, "replayed"))
            except OSError:  # the scanner was closed at shutdown
                return
