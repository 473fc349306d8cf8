"""Remote unlock end to end: web form -> CommandClient -> real mosquitto -> real GateAgent's door -> response.

The gate runs its real door state machine on gpiozero's mock pins; the console side is
the real app with its own command connection.  Every attempt lands in the audit log.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from gpiozero.pins.mock import MockFactory

from broker.launcher import Broker
from console.commands import CommandClient, OfficeCommandSigner
from edge.agent import GateAgent
from edge.config import EdgeConfig
from protocol import decode_event
from tests.console.web.web_support import Web, login, post_form
from tests.offices import create_office, gate_passes_section
from tests.waiting import wait_until

PINS = {"relay": "GPIO17", "contact": "GPIO27", "exit_button": "GPIO22"}


@pytest.fixture
def office(tmp_path: Path) -> Path:
    """The site office whose command key the console signs with and whose root the gate pins."""
    directory = tmp_path / "office"
    create_office(directory, site="s1").close()
    return directory


@pytest.fixture
def door_gate(tmp_path: Path, broker: Broker, unique_name: str, office: Path) -> Iterator[GateAgent]:
    creds = broker.add_gate("s1", unique_name)
    secret = tmp_path / "gate.secret"
    secret.write_text(creds.password)
    config = EdgeConfig.model_validate(
        {
            "site": "s1",
            "gate": unique_name,
            "mqtt": {
                "host": broker.host,
                "port": broker.port,
                "username": creds.username,
                "password_file": str(secret),
            },
            "outbox": {"path": str(tmp_path / "outbox.db")},
            "access": {"allow": []},
            "clock": {"trust": "trusted"},
            "gpio": {"pin_factory": "mock"},
            "door": {"pins": PINS, "behaviour": {"unlock_s": 1.0, "max_unlock_s": 5.0}},
            "passes": gate_passes_section(office, tmp_path / "gate-passes"),
        }
    )
    agent = GateAgent(config, pin_factory=MockFactory())
    agent.start()
    try:
        assert agent.link.wait_connected(10)
        yield agent
    finally:
        agent.stop(drain_s=0)


def _outbox_types(agent: GateAgent) -> list[tuple[str, dict]]:
    return [(e.type, e.data) for e in (decode_event(r.body) for r in agent.outbox.pending(limit=1000))]


def test_an_operator_unlocks_a_door_through_the_page(
    web_factory: Callable[..., Web], broker: Broker, door_gate: GateAgent, office: Path
):
    creds = broker.add_console("console")
    web = web_factory(endpoint=broker.endpoint(creds), unlock_seconds=2.0, office=str(office))
    web.add_user("ana")
    gate = door_gate.config.gate
    web.ctx.users.grant("ana", "unlock", f"s1/{gate}")  # unlock is granted per gate (or site)
    with web.client() as client:
        login(client, "ana")
        assert web.ctx.commands is not None and web.ctx.commands.wait_connected(10)
        confirm = client.get(f"/gates/s1/{gate}/unlock")
        assert confirm.status_code == 200 and 'name="confirm"' in confirm.text
        unconfirmed = post_form(client, f"/gates/s1/{gate}/unlock", {}, page=f"/gates/s1/{gate}/unlock")
        assert unconfirmed.status_code == 400
        done = post_form(
            client, f"/gates/s1/{gate}/unlock", {"confirm": "yes"}, page=f"/gates/s1/{gate}/unlock"
        )
        assert done.status_code == 200, done.text
        assert "the gate confirmed" in done.text
    assert wait_until(lambda: any(t == "door.unlocked" for t, _ in _outbox_types(door_gate)))
    unlocked = next(d for t, d in _outbox_types(door_gate) if t == "door.unlocked")
    assert unlocked["cause"] == "remote" and unlocked["seconds"] == 2.0
    (entry,) = [e for e in web.ctx.audit.entries() if e.action == "unlock"]
    assert entry.user == "ana" and entry.target == f"s1/{gate}"
    assert entry.detail["status"] == "ok" and entry.detail["command_id"] == unlocked["command_id"]


def test_a_refusal_and_a_silent_gate_are_reported_not_hidden(
    broker: Broker, door_gate: GateAgent, office: Path
):
    signer = OfficeCommandSigner(office)
    client = CommandClient(broker.endpoint(broker.add_console("console")), name="t", signer=signer).start()
    try:
        assert client.wait_connected(10)
        gate = door_gate.config.gate
        refused = client.send("s1", gate, "unlock", {"seconds": 999}, operator="ana")
        assert (refused.status, refused.ok) == ("refused", False)
        assert refused.error == "bad_duration"
        too_far = client.send("s1", gate, "unlock", ttl_s=3600)
        assert too_far.status == "refused" and too_far.error == "expiry_too_far"
        silent = client.send("s1", "no-such-gate", "unlock", timeout_s=0.5)
        assert silent.status == "timeout"
    finally:
        client.stop()
    offline = CommandClient(
        broker.endpoint(), name="t2", signer=signer
    )  # never started: no broker connection
    assert offline.send("s1", "x", "unlock", timeout_s=0.1).status == "unreachable"
    unsigned = CommandClient(broker.endpoint(), name="t3")  # no command key: nothing is sent at all
    assert unsigned.send("s1", "x", "unlock", timeout_s=0.1).status == "unsigned"
