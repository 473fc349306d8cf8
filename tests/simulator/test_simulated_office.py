"""The simulated office's passes get, at a real gate state, exactly the answers they are meant to."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from protocol.passes import GateState, RevocationState, TrustStore, decide
from protocol.passes.decision import ClockReading
from protocol.passes.keys import load_public_key
from simulator.passes import SimulatedOffice


def test_genuine_passes_are_granted_and_each_refused_one_gets_its_reason(tmp_path: Path):
    office = SimulatedOffice(tmp_path / "office", site="longtan", residents=5)
    trust = TrustStore(load_public_key(office.root_key), "longtan", path=office.bundle)
    revocation = RevocationState(trust, path=office.revocations)
    state = GateState(trust=trust, revocation=revocation)
    now = ClockReading(datetime.now(UTC), True)
    assert all(decide(code, now, state).granted for code in office.corpus.genuine)
    for reason, codes in office.corpus.refused.items():
        for code in codes:
            decision = decide(code, now, state)
            assert not decision.granted
            assert decision.reason.value == reason or (
                reason == "bad_signature" and decision.reason.value == "malformed"
            )
