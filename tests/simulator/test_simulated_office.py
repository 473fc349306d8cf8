"""The simulated office's passes get, at a real gate state, exactly the answers they are meant to."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from pathlib import Path

from edge.agent import GateAgent
from edge.config import EdgeConfig
from protocol import decode_event
from protocol.passes import GateState, RevocationState, TrustStore, decide
from protocol.passes.decision import ClockReading
from protocol.passes.keys import load_public_key
from simulator.passes import ScreenshotReplays, SimulatedOffice
from simulator.scanner import VirtualScanner


def test_genuine_passes_are_granted_and_each_refused_one_gets_its_reason(tmp_path: Path):
    office = SimulatedOffice(tmp_path / "office", site="longtan", residents=5)
    trust = TrustStore(load_public_key(office.root_key), "longtan", path=office.bundle)
    revocation = RevocationState(trust, path=office.revocations)
    state = GateState(trust=trust, revocation=revocation, site_secret=office.secret)
    now = ClockReading(datetime.now(UTC), True)
    assert all(decide(code, now, state).granted for code in office.corpus.genuine)
    for reason, codes in office.corpus.refused.items():
        for code in codes:
            decision = decide(code, now, state)
            assert not decision.granted
            assert decision.reason.value == reason or (
                reason == "bad_signature" and decision.reason.value == "malformed"
            )


def test_the_phone_pass_is_granted_live_and_its_screenshot_refused(tmp_path: Path):
    office = SimulatedOffice(tmp_path / "office", site="longtan", residents=2)
    trust = TrustStore(load_public_key(office.root_key), "longtan", path=office.bundle)
    state = GateState(
        trust=trust, revocation=RevocationState(trust, path=office.revocations), site_secret=office.secret
    )
    now = ClockReading(datetime.now(UTC), True)
    code = office.phone_code(now.wall)
    assert decide(code, now, state).reason.value == "granted"
    assert decide(code, now, state).reason.value == "replayed"


def test_screenshot_replays_at_a_real_gate(tmp_path: Path):
    """The simulator's replaying friend, typed by a virtual scanner into a real agent."""
    office = SimulatedOffice(tmp_path / "office", site="longtan", residents=2)
    scanner = VirtualScanner(tmp_path / "ttyACM0", baudrate=115200, pace=False)
    config = EdgeConfig.model_validate(
        {
            "site": "longtan",
            "gate": "north",
            "mqtt": {"host": "127.0.0.1", "port": 9},
            "scanners": [{"url": str(scanner.link_path), "baudrate": 115200, "max_length": 1024}],
            "outbox": {"path": str(tmp_path / "outbox.db")},
            "clock": {"trust": "trusted"},
            "passes": {
                "root_key": str(office.root_key),
                "trust_bundle": str(office.bundle),
                "revocation_list": str(office.revocations),
                "site_secret_file": str(office.site_secret),
            },
        }
    )
    agent = GateAgent(config)
    agent.start()
    replays = ScreenshotReplays(office, scanner, every_s=0.1, replay_after_s=3.0)
    try:
        replays.start()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and len(_scans(agent)) < 2:
            time.sleep(0.05)
        replays.stop()
        scans = _scans(agent)[:2]
        assert [(s["serial"], s["reason"]) for s in scans] == [
            (office.phone_serial, "granted"),
            (office.phone_serial, "replayed"),
        ]
        assert [reason for _code, reason in replays.shown[:2]] == ["granted", "replayed"]
    finally:
        replays.stop()
        agent.stop(drain_s=0)
        scanner.close()


def _scans(agent: GateAgent) -> list[dict]:
    events = (decode_event(row.body) for row in agent.outbox.pending(limit=100))
    return [e.data for e in events if e.type == "access.scan"]
