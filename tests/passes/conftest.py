"""A real site for pass tests: root key, signing key, sealed bundle, revocation list, gate state.

Everything is real Ed25519 (PyNaCl) and real files under ``tmp_path``; nothing is mocked.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from nacl.signing import SigningKey

from protocol.passes import (
    DailyWindow,
    GatePolicy,
    GateState,
    Pass,
    RevocationState,
    Role,
    TrustBundle,
    TrustStore,
    make_revocation_list,
    new_bundle,
    photo_digest,
    rotate,
    seal_bundle,
    seal_revocation_list,
)
from protocol.passes.codec import issue
from protocol.passes.dynamic import dynamic_text, pass_key

NOW = datetime(2026, 3, 2, 7, 30, tzinfo=UTC)  # 15:30 in Asia/Shanghai
SITE = "maple"
SITE_ID = 7


@dataclass
class Site:
    """The console's side of one site, with helpers to build the gate's side."""

    root: SigningKey
    signer: SigningKey
    kid: int
    bundle: TrustBundle
    secret: bytes = field(default=b"s" * 32)
    revocation_version: int = 0

    def make_pass(self, **overrides: Any) -> Pass:
        fields: dict[str, Any] = {
            "kid": self.kid,
            "site_id": SITE_ID,
            "serial": 12_345_678,
            "holder": "王小明",
            "unit": "3-2-501",
            "role": Role.RESIDENT,
            "zones": frozenset({0, 1}),
            "valid_from": NOW - timedelta(days=30),
            "valid_until": NOW + timedelta(days=335),
            "generation": 1,
            "photo_digest": photo_digest(b"portrait"),
        }
        fields.update(overrides)
        return Pass(**fields)

    def code(self, key: SigningKey | None = None, **overrides: Any) -> str:
        return issue(self.make_pass(**overrides), key or self.signer)

    def dynamic_code(self, when: datetime, **overrides: Any) -> str:
        p = self.make_pass(dynamic=True, **overrides)
        return dynamic_text(issue(p, self.signer), pass_key(self.secret, p.serial, p.generation), when)

    def sealed_bundle(self) -> bytes:
        return seal_bundle(self.bundle, self.root)

    def revocations(self, *, issued_at: datetime = NOW, serials=(), before=None, version=None) -> bytes:
        self.revocation_version = version or self.revocation_version + 1
        rl = make_revocation_list(
            site=SITE,
            version=self.revocation_version,
            issued_at=issued_at,
            serials=serials,
            before_generation=before,
        )
        return seal_revocation_list(rl, self.signer, self.kid)

    def gate(
        self, tmp: Path | None = None, policy: GatePolicy | None = None, *, fresh_list: bool = True
    ) -> GateState:
        trust = TrustStore(self.root.verify_key, SITE, path=tmp / "bundle.json" if tmp else None)
        assert trust.apply(self.sealed_bundle()).applied
        revocation = RevocationState(trust, path=tmp / "revocations.json" if tmp else None)
        if fresh_list:
            assert revocation.apply(self.revocations()).applied
        return GateState(trust=trust, revocation=revocation, policy=policy, site_secret=self.secret)


def make_site() -> Site:
    root, signer = SigningKey.generate(), SigningKey.generate()
    bundle = new_bundle(site=SITE, site_id=SITE_ID, timezone="Asia/Shanghai", now=NOW - timedelta(days=400))
    bundle, kid = rotate(
        bundle,
        signer,
        now=NOW - timedelta(days=400),
        lifetime=timedelta(days=1000),
        grace=timedelta(days=400),
    )
    return Site(root=root, signer=signer, kid=kid, bundle=bundle)


@pytest.fixture
def site() -> Site:
    return make_site()


MILK_WINDOW = DailyWindow.from_hours("06:00", "09:00")
