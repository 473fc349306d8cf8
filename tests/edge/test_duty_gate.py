"""Staff and patrol cards at a real gate: simulated readers, a real broker, counted at the console's store.

Issue 18's test: "attendance and patrol check-ins through real MQTT from simulated
readers, counted at the console".  The cards are pulsed onto Wiegand D0/D1 pins with
real timing (and sent by a simulated OSDP reader over a pty), decided by the agent,
taken into the outbox, delivered over TLS to mosquitto and stored exactly once by the
console's own ingestor.  The lock relay's whole pin history is read at the end: it was
never energised.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from broker.launcher import Broker
from console.ingest import Ingestor
from console.store import EventStore
from drivers.wiegand import H10301
from edge.osdp_readers import save_key
from simulator.osdp import SimulatedOsdpBus
from simulator.wiegand import VirtualWiegandReader
from tests.edge.duty_support import (
    BAD_UNIT,
    EXPIRED_STAFF,
    PATROL,
    RESIDENT,
    STAFF,
    DutyGate,
    card,
    gate_config,
    settle,
)
from tests.waiting import wait_until

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]

WIEGAND = {
    "wiegand": [
        {"name": "gate-in", "d0": "GPIO5", "d1": "GPIO6", "min_silence_ms": 150},
        {"name": "garage", "d0": "GPIO12", "d1": "GPIO13", "min_silence_ms": 150},
    ]
}


def everything(store: EventStore) -> list:
    return [(e.type, e.data.get("reason"), e.data.get("reader")) for e in store.events_after(0, limit=1000)]


def stored(store: EventStore, gate: str, event_type: str) -> list:
    return [e for e in store.events_after(0, limit=10_000) if e.gate == gate and e.type == event_type]


def test_staff_and_patrol_cards_reach_the_console_and_the_door_never_opens(
    tmp_path: Path, broker: Broker, unique_name: str
):
    gate = DutyGate(gate_config(tmp_path, unique_name, broker=broker, readers=WIEGAND))
    store = EventStore(tmp_path / "console.db")
    front = VirtualWiegandReader(gate.factory, "GPIO5", "GPIO6", pulse_us=100, gap_us=1000)
    garage = VirtualWiegandReader(gate.factory, "GPIO12", "GPIO13", pulse_us=100, gap_us=1000)
    try:
        with Ingestor(broker.endpoint(broker.add_console(f"c{unique_name}")), store) as ingestor:
            assert ingestor.wait_connected(10)
            front.send_card(*STAFF, H10301)  # on the allow-list too: duty is looked up first
            assert wait_until(lambda: stored(store, unique_name, "duty.check_in"), 20), everything(store)
            front.send_card(*PATROL, H10301)
            settle(0.5)  # a frame ends with silence on the wires; two cards back to back would be one
            garage.send_card(*PATROL, H10301)
            assert wait_until(lambda: len(stored(store, unique_name, "patrol.checkin")) == 2, 20), everything(
                store
            )
            front.send_card(*STAFF, H10301)
            assert wait_until(lambda: stored(store, unique_name, "duty.check_out"), 20), everything(store)
            front.send_card(*EXPIRED_STAFF, H10301)
            settle(0.5)
            front.send_card(*BAD_UNIT, H10301)
            assert wait_until(lambda: len(stored(store, unique_name, "duty.refused")) == 2, 20), everything(
                store
            )
            front.send_card(*RESIDENT, H10301)  # a resident's card still opens: the door works
            assert wait_until(lambda: stored(store, unique_name, "door.unlocked"), 20), everything(store)
            assert wait_until(lambda: gate.agent.outbox.backlog == 0, 20), everything(store)
        check_in = stored(store, unique_name, "duty.check_in")
        check_out = stored(store, unique_name, "duty.check_out")
        patrols = stored(store, unique_name, "patrol.checkin")
        refused = stored(store, unique_name, "duty.refused")
        assert len(check_in) == len(check_out) == 1  # exactly once at the console
        assert check_in[0].data == {
            "person": "p-wang",
            "name": "王芳",
            "method": "credential",
            "reader": "gate-in",
            "rostered": None,  # no duty sheet on this gate
            "on_duty_s": None,
            "guard": None,
        }
        assert check_out[0].data["person"] == "p-wang" and check_out[0].data["on_duty_s"] >= 0
        assert sorted(p.data["reader"] for p in patrols) == ["garage", "gate-in"]
        assert {p.data["person"] for p in patrols} == {"p-li"}
        assert sorted(r.data["reason"] for r in refused) == ["bad_unit", "not_valid_now"]
        # No access decision was recorded for any duty card: only the resident's.
        scans = [e for e in store.events_after(0, limit=10_000) if e.type == "access.scan"]
        assert [s.data["code"] for s in scans] == [card(RESIDENT)]
        unlocked = stored(store, unique_name, "door.unlocked")
        assert [u.data.get("credential") for u in unlocked] == [card(RESIDENT)]
    finally:
        gate.stop()
        store.close()


def test_duty_cards_never_energise_the_relay_and_the_light_tower_acknowledges(
    tmp_path: Path, unique_name: str
):
    gate = DutyGate(gate_config(tmp_path, unique_name, readers=WIEGAND))
    front = VirtualWiegandReader(gate.factory, "GPIO5", "GPIO6", pulse_us=100, gap_us=1000)
    buzzer = gate.factory.pin("GPIO26")
    try:
        for pair in (STAFF, PATROL, STAFF, EXPIRED_STAFF, BAD_UNIT):
            front.send_card(*pair, H10301)
            settle(0.5)
        gate.wait_for("duty.refused", 2)
        settle()
        assert not gate.relay_ever_energised()
        assert not gate.events("door.unlocked") and not gate.events("access.scan")
        assert [e.type for e in gate.events() if e.type.startswith(("duty.", "patrol."))] == [
            "duty.check_in",
            "patrol.checkin",
            "duty.check_out",
            "duty.refused",
            "duty.refused",
        ]
        assert sum(1 for s in buzzer.states if s.state) >= 3  # the chirps of the acknowledgements
    finally:
        gate.stop()


def test_patrol_card_at_two_osdp_readers_is_two_station_checkins_and_the_readers_acknowledge(
    tmp_path: Path, unique_name: str
):
    key = bytes.fromhex("0f1e2d3c4b5a69788796a5b4c3d2e1f0")
    save_key(tmp_path / "keys" / "north.key", key)
    save_key(tmp_path / "keys" / "south.key", key)
    with SimulatedOsdpBus(tmp_path / "ttyOSDP") as sim:
        north, south = sim.add_reader(1, key=key), sim.add_reader(2, key=key)
        readers = {
            "osdp": [
                {
                    "name": "bus1",
                    "url": sim.url,
                    "key_dir": str(tmp_path / "keys"),
                    "readers": [{"name": "north", "address": 1}, {"name": "south", "address": 2}],
                }
            ]
        }
        gate = DutyGate(gate_config(tmp_path, unique_name, readers=readers))
        try:
            assert wait_until(
                lambda: gate.agent.reader_states == {"north": "online", "south": "online"}, 20
            ), gate.agent.reader_states
            north.present_card(*PATROL)
            south.present_card(*PATROL)
            patrols = gate.wait_for("patrol.checkin", 2)
            assert sorted((p.data["person"], p.data["reader"]) for p in patrols) == [
                ("p-li", "north"),
                ("p-li", "south"),
            ]
            assert wait_until(lambda: north.leds() and south.leds(), 5)
            assert north.leds() == ["green"] and south.leds() == ["green"]  # acknowledged at the reader
            assert wait_until(lambda: north.beeps() and south.beeps(), 5)
            assert north.beeps() == [3] and south.beeps() == [3]  # three chirps: not a grant's silence
            settle()
            assert not gate.relay_ever_energised()
            assert not gate.events("access.scan")
        finally:
            gate.stop()


def test_a_staff_code_at_a_serial_qr_scanner_checks_in_and_out(tmp_path: Path, unique_name: str):
    """A scanner's code is a card-list credential too when the list has ``duty:<code>``."""
    from protocol.duty import DutyRole
    from simulator.duty import duty_card
    from simulator.scanner import VirtualScanner
    from tests.edge.duty_support import duty_entries

    code = "900000000001"
    entries = [*duty_entries(), duty_card(DutyRole.STAFF, code, "p-sun", "孙丽")]
    with VirtualScanner(tmp_path / "ttyACM0", baudrate=115200, pace=False) as scanner:
        readers = {"scanners": [{"name": "qr", "url": str(scanner.link_path), "baudrate": 115200}]}
        gate = DutyGate(gate_config(tmp_path, unique_name, readers=readers, entries=entries))
        try:
            assert wait_until(lambda: gate.agent.reader_states.get("qr") == "connected", 10)
            scanner.type(code)
            gate.wait_for("duty.check_in")
            scanner.type(code)
            out = gate.wait_for("duty.check_out")[0].data
            assert (out["person"], out["reader"], out["method"]) == ("p-sun", "qr", "credential")
            settle()
            assert not gate.relay_ever_energised() and not gate.events("access.scan")
        finally:
            gate.stop()


def test_a_staff_tag_at_a_serial_em4100_reader_checks_in_and_out(tmp_path: Path, unique_name: str):
    """The serial card reader (RDM6300 on a pty): a tag held, taken away, held again."""
    from drivers.em4100 import frame
    from protocol.duty import DutyRole
    from simulator.duty import duty_card
    from simulator.rdm6300 import VirtualRdm6300
    from tests.edge.duty_support import duty_entries

    tag = 0x1A2B3C4D5E
    credential = f"em4100:{frame(tag)[1:11].decode()}"
    entries = [*duty_entries(), duty_card(DutyRole.STAFF, credential, "p-zhou", "周杰")]
    with VirtualRdm6300() as rdm:
        readers = {"rdm6300": [{"name": "rfid", "url": rdm.port}]}
        gate = DutyGate(gate_config(tmp_path, unique_name, readers=readers, entries=entries))
        try:
            settle(0.5)
            rdm.present(tag)
            gate.wait_for("duty.check_in")
            rdm.remove()
            settle(0.5)
            rdm.present(tag)
            out = gate.wait_for("duty.check_out")[0].data
            rdm.remove()
            assert (out["person"], out["reader"]) == ("p-zhou", "rfid")
            settle()
            # a tag held in the field is one presentation, not a check-in and an immediate check-out
            assert len(gate.events("duty.check_in")) == len(gate.events("duty.check_out")) == 1
            assert not gate.relay_ever_energised() and not gate.events("access.scan")
        finally:
            gate.stop()
