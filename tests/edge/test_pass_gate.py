"""Signed passes at a real gate: printed on a pass, typed by a virtual scanner, decided offline.

The gate holds only public material (root key, sealed trust bundle, sealed revocation
list); the test plays the site office that signs them.  Genuine, forged, revoked and
foreign passes each get their own reason in the event — and a card still goes by the
allow-list.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from edge.agent import GateAgent
from edge.config import EdgeConfig
from protocol import decode_event
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
from protocol.passes.keys import generate_signing_key, save_public_key
from simulator.scanner import VirtualScanner

SITE = "longtan"
SITE_ID = 3
NOW = datetime.now(UTC)


class Office:
    """The site office: root and signing keys, the bundle, the revocation list."""

    def __init__(self, folder: Path) -> None:
        self.root = generate_signing_key()
        self.signer = generate_signing_key()
        bundle = new_bundle(
            site=SITE, site_id=SITE_ID, timezone="Asia/Shanghai", now=NOW - timedelta(days=10)
        )
        self.bundle, self.kid = rotate(
            bundle,
            self.signer,
            now=NOW - timedelta(days=10),
            lifetime=timedelta(days=400),
            grace=timedelta(days=1),
        )
        self.folder = folder
        save_public_key(folder / "root.pub", self.root.verify_key)
        (folder / "bundle").write_bytes(seal_bundle(self.bundle, self.root))
        self.revoke([])

    def revoke(self, serials: list[int], version: int = 1) -> None:
        rl = make_revocation_list(
            site=SITE, version=version, issued_at=NOW, serials=serials, before_generation={}
        )
        (self.folder / "revocations").write_bytes(seal_revocation_list(rl, self.signer, self.kid))

    def code(self, serial: int, *, key=None, site_id: int = SITE_ID, **overrides) -> str:
        fields = {
            "kid": self.kid,
            "site_id": site_id,
            "serial": serial,
            "holder": "王小明",
            "unit": "3-2-501",
            "role": Role.RESIDENT,
            "zones": frozenset({0}),
            "valid_from": NOW - timedelta(days=1),
            "valid_until": NOW + timedelta(days=30),
            "generation": 1,
        }
        fields.update(overrides)
        return issue(Pass(**fields), key or self.signer)


@pytest.fixture
def gate(tmp_path: Path) -> Iterator[tuple[GateAgent, VirtualScanner, Office]]:
    office = Office(tmp_path)
    office.revoke([666])
    scanner = VirtualScanner(tmp_path / "ttyACM0", baudrate=115200, pace=False)
    config = EdgeConfig.model_validate(
        {
            "site": SITE,
            "gate": "north",
            "mqtt": {"host": "127.0.0.1", "port": 9},
            "scanners": [{"url": str(scanner.link_path), "baudrate": 115200, "max_length": 1024}],
            "outbox": {"path": str(tmp_path / "outbox.db")},
            "access": {"allow": ["wiegand26:13:13067"]},
            "clock": {"trust": "trusted"},
            "passes": {
                "root_key": str(tmp_path / "root.pub"),
                "trust_bundle": str(tmp_path / "bundle"),
                "revocation_list": str(tmp_path / "revocations"),
            },
        }
    )
    agent = GateAgent(config)
    agent.start()
    deadline = time.monotonic() + 5
    while agent.reader_states.get("scanner") != "connected" and time.monotonic() < deadline:
        time.sleep(0.01)
    try:
        yield agent, scanner, office
    finally:
        agent.stop(drain_s=0)
        scanner.close()


def scans(agent: GateAgent, n: int) -> list:
    deadline = time.monotonic() + 10
    found: list = []
    while time.monotonic() < deadline:
        events = [decode_event(row.body) for row in agent.outbox.pending(limit=1000)]
        found = [event for event in events if event.type == "access.scan"]
        if len(found) >= n:
            break
        time.sleep(0.02)
    return found


def test_genuine_forged_revoked_and_foreign_passes(gate):
    agent, scanner, office = gate
    genuine = office.code(1001)
    digits = list(office.code(1002))
    digits[40] = "1" if digits[40] != "1" else "2"  # one digit changed on the printed pass
    forged = "".join(digits)
    stranger = generate_signing_key()
    shown = [
        genuine,
        forged,
        office.code(666),  # revoked
        office.code(1003, key=stranger),  # forged signature under the site's key id
        office.code(1006, key=stranger, kid=99),  # signed by a key the bundle does not list
        office.code(1004, valid_until=NOW - timedelta(minutes=5), valid_from=NOW - timedelta(days=3)),
        office.code(1005, site_id=SITE_ID + 1),  # another compound's pass
    ]
    for code in shown:
        scanner.type(code)
    found = scans(agent, len(shown))
    reasons = [(event.data["granted"], event.data["reason"]) for event in found]
    assert reasons[0] == (True, "granted")
    assert reasons[1][0] is False and reasons[1][1] in ("bad_signature", "malformed")
    assert reasons[2:] == [
        (False, "revoked"),
        (False, "bad_signature"),
        (False, "unknown_key"),
        (False, "expired"),
        (False, "wrong_site"),
    ]
    granted = found[0].data
    assert (granted["serial"], granted["holder"], granted["unit"], granted["role"]) == (
        1001,
        "王小明",
        "3-2-501",
        "resident",
    )
    assert granted["code"] is None  # the pass is named by its serial, not by its 300 digits


def test_cards_still_go_by_the_allow_list(gate):
    agent, _scanner, _office = gate
    assert agent.present  # the same entry point every reader uses
    from edge.agent import Presented

    decision = agent.present(
        Presented("wiegand26:13:13067", "card", "reader", time.monotonic_ns(), "wiegand26:13:13067")
    )
    assert decision is not None and decision.granted


def test_revocation_reaches_a_gate_over_mqtt_and_never_rolls_back(tmp_path: Path, broker):
    from console.documents import publish_documents

    office = Office(tmp_path)  # version 1, nothing revoked
    scanner = VirtualScanner(tmp_path / "ttyACM0", baudrate=115200, pace=False)
    gate_creds = broker.add_gate(SITE, "north")
    console_creds = broker.add_console("office")
    (tmp_path / "gate.secret").write_text(gate_creds.password)
    gate_dir = tmp_path / "gate"
    gate_dir.mkdir()
    for name in ("root.pub", "bundle", "revocations"):
        (gate_dir / name).write_bytes((tmp_path / name).read_bytes())
    (gate_dir / "root.pub").chmod(0o644)
    config = EdgeConfig.model_validate(
        {
            "site": SITE,
            "gate": "north",
            "mqtt": {
                "host": broker.host,
                "port": broker.port,
                "username": gate_creds.username,
                "password_file": str(tmp_path / "gate.secret"),
            },
            "scanners": [{"url": str(scanner.link_path), "baudrate": 115200, "max_length": 1024}],
            "outbox": {"path": str(tmp_path / "outbox.db")},
            "clock": {"trust": "trusted"},
            "passes": {
                "root_key": str(gate_dir / "root.pub"),
                "trust_bundle": str(gate_dir / "bundle"),
                "revocation_list": str(gate_dir / "revocations"),
            },
        }
    )
    agent = GateAgent(config)
    agent.start()
    try:
        assert agent.link.wait_connected(10)
        public = tmp_path / "public"
        public.mkdir()
        office.folder = public
        office.revoke([1001], version=2)
        publish_documents(broker.endpoint(console_creds).for_connection("publish"), SITE, public)

        def documents() -> list:
            events = [decode_event(row.body) for row in agent.outbox.pending(limit=1000)]
            return [event.data for event in events if event.type == "passes.document"]

        deadline = time.monotonic() + 10
        while not any(d["document"] == "revocation" and d["applied"] for d in documents()):
            assert time.monotonic() < deadline, documents()
            time.sleep(0.05)
        assert agent.decider.passes is not None and agent.decider.passes.revocation.version == 2
        while agent.reader_states.get("scanner") != "connected" and time.monotonic() < deadline:
            time.sleep(0.01)
        scanner.type(office.code(1001))
        found = scans(agent, 1)
        assert (found[0].data["granted"], found[0].data["reason"]) == (False, "revoked")

        # A replayed older list (version 1, nothing revoked) must not un-revoke the pass.
        office.revoke([], version=1)
        publish_documents(broker.endpoint(console_creds).for_connection("web"), SITE, public)
        while not any(d["document"] == "revocation" and not d["applied"] for d in documents()):
            assert time.monotonic() < deadline, documents()
            time.sleep(0.05)
        refused = [d for d in documents() if d["document"] == "revocation" and not d["applied"]]
        assert refused[0]["reason"] == "older"
        assert agent.decider.passes.revocation.version == 2
        status = agent._status_command(None)  # type: ignore[arg-type]
        assert (status["revocation_version"], status["revocation_stale"]) == (2, False)
    finally:
        agent.stop(drain_s=0)
        scanner.close()
