"""A gate with OSDP readers: cards reach ``present()``, decisions light the reader, faults are events."""

from __future__ import annotations

import stat
import time
from pathlib import Path

import pytest

from edge.agent import GateAgent
from edge.config import EdgeConfig, load_config
from edge.osdp_readers import KeyFileError, load_key, save_key
from protocol import decode_event
from protocol.configfile import ConfigError
from simulator.osdp import SimulatedOsdpBus

pytestmark = pytest.mark.timeout(90)

KEY = bytes.fromhex("0f1e2d3c4b5a69788796a5b4c3d2e1f0")
ALLOWED = "wiegand26:13:13067"


def make_agent(tmp_path: Path, url: str, readers: list[dict], **bus) -> GateAgent:
    config = EdgeConfig.model_validate(
        {
            "site": "s1",
            "gate": "lobby",
            "mqtt": {"host": "127.0.0.1", "port": 9},
            "outbox": {"path": str(tmp_path / "outbox.db")},
            "clock": {"trust": "trusted"},
            "metrics": {"listen": ""},
            "access": {"allow": [ALLOWED], "repeat_s": 0},
            "osdp": [
                {"name": "bus1", "url": url, "key_dir": str(tmp_path / "keys"), "readers": readers, **bus}
            ],
        }
    )
    return GateAgent(config)


def events(agent: GateAgent) -> list:
    return [decode_event(row.body) for row in agent.outbox.pending(limit=1000)]


def wait_for(agent: GateAgent, predicate, timeout: float = 10.0) -> list:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = [e for e in events(agent) if predicate(e)]
        if found:
            return found
        time.sleep(0.05)
    raise AssertionError(f"no such event; have {[e.type for e in events(agent)]}")


def test_osdp_cards_are_decided_like_any_card_and_the_reader_shows_the_answer(tmp_path):
    save_key(tmp_path / "keys" / "front.key", KEY)
    save_key(tmp_path / "keys" / "back.key", KEY)
    with SimulatedOsdpBus(tmp_path / "ttyOSDP") as sim:
        front, back = sim.add_reader(1, key=KEY), sim.add_reader(2, key=KEY)
        agent = make_agent(
            tmp_path,
            sim.url,
            [
                {"name": "front", "address": 1, "direction": "in"},
                {"name": "back", "address": 2, "direction": "out"},
            ],
        )
        agent.start()
        try:
            wait_for(agent, lambda e: e.type == "reader.online" and e.data["reader"] == "back")
            front.present_card(13, 13067)
            granted = wait_for(agent, lambda e: e.type == "access.scan")[0].data
            assert (granted["granted"], granted["code"], granted["reader"], granted["direction"]) == (
                True,
                ALLOWED,
                "front",
                "in",
            )
            back.present_card(13, 999)
            denied = wait_for(agent, lambda e: e.type == "access.scan" and e.data["reader"] == "back")[0].data
            assert (denied["granted"], denied["reason"], denied["direction"]) == (False, "unknown", "out")
            deadline = time.monotonic() + 5
            while (not front.leds() or not back.beeps()) and time.monotonic() < deadline:
                time.sleep(0.02)
            # The guard's patterns (edge/feedback.py): green for in; red and one beep for not ours.
            assert front.leds() == ["green"] and front.beeps() == []
            assert back.leds() == ["red"] and back.beeps() == [1]
            assert agent.reader_states == {"front": "online", "back": "online"}
        finally:
            agent.stop(drain_s=0)


def test_a_cut_cable_is_an_offline_event_and_the_reconnect_says_all_are_back(tmp_path):
    save_key(tmp_path / "keys" / "front.key", KEY)
    with SimulatedOsdpBus(tmp_path / "ttyOSDP") as sim:
        front = sim.add_reader(1, key=KEY)
        agent = make_agent(tmp_path, sim.url, [{"name": "front", "address": 1}])
        agent.start()
        try:
            wait_for(agent, lambda e: e.type == "reader.online")
            front.cut()
            offline = wait_for(agent, lambda e: e.type == "reader.offline")[0].data
            assert (offline["reader"], offline["bus"], offline["address"]) == ("front", "bus1", 1)
            assert agent.reader_states["front"] == "offline"
            front.reconnect()
            seen = len(wait_for(agent, lambda e: e.type == "reader.offline"))
            assert seen == 1
            deadline = time.monotonic() + 20
            while len([e for e in events(agent) if e.type == "reader.online"]) < 2:
                assert time.monotonic() < deadline, "no reader.online after the reconnect"
                time.sleep(0.05)
            back = [e for e in events(agent) if e.type == "reader.online"][-1].data
            assert (back["offline_readers"], back["refused_readers"]) == (0, 0)
            front.tamper(True)
            tamper = wait_for(agent, lambda e: e.type == "reader.tamper")[0].data
            assert tamper["reader"] == "front"
            assert not [e for e in events(agent) if e.type == "reader.power"]  # power did not change
        finally:
            agent.stop(drain_s=0)


def test_wrong_key_and_missing_key_are_refused_with_a_reason(tmp_path):
    save_key(tmp_path / "keys" / "front.key", KEY)
    with SimulatedOsdpBus(tmp_path / "ttyOSDP") as sim:
        sim.add_reader(1, key=bytes(16))
        sim.add_reader(2, key=KEY)
        agent = make_agent(
            tmp_path, sim.url, [{"name": "front", "address": 1}, {"name": "side", "address": 2}]
        )
        agent.start()
        try:
            refused = {
                e.data["reader"]: e.data["detail"]
                for e in wait_for(
                    agent,
                    lambda e: e.type == "reader.refused",
                    timeout=15,
                )
            }
            deadline = time.monotonic() + 10
            while len(refused) < 2 and time.monotonic() < deadline:
                refused |= {
                    e.data["reader"]: e.data["detail"] for e in events(agent) if e.type == "reader.refused"
                }
                time.sleep(0.1)
            assert "not the one the gate holds" in refused["front"]
            assert "holds no key" in refused["side"]
            assert not [e for e in events(agent) if e.type == "reader.online"]
        finally:
            agent.stop(drain_s=0)


def test_install_mode_keeps_the_new_key_in_the_key_store(tmp_path):
    with SimulatedOsdpBus(tmp_path / "ttyOSDP") as sim:
        reader = sim.add_reader(7, key=None)
        agent = make_agent(tmp_path, sim.url, [{"name": "gate7", "address": 7}], install=True)
        agent.start()
        try:
            wait_for(agent, lambda e: e.type == "reader.key_installed")
            wait_for(agent, lambda e: e.type == "reader.online")
        finally:
            agent.stop(drain_s=0)
    path = tmp_path / "keys" / "gate7.key"
    assert load_key(path) == reader.key
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    with pytest.raises(FileExistsError):
        save_key(path, KEY)  # a key a reader holds is never replaced


def test_a_bad_key_file_is_a_typed_error(tmp_path):
    path = tmp_path / "r.key"
    path.write_text("not hex")
    with pytest.raises(KeyFileError, match="hex"):
        load_key(path)
    path.write_text("00ff")
    with pytest.raises(KeyFileError, match="32 hex digits"):
        load_key(path)
    assert load_key(tmp_path / "none.key") is None


def test_check_config_names_each_osdp_mistake_by_file_line_and_key(tmp_path):
    path = tmp_path / "gate.toml"
    path.write_text(
        """site = "s1"
gate = "g1"

[[osdp]]
name = "bus1"
url = "/dev/ttyUSB0"
baudrate = 115000
secure = false
install = true

[[osdp.readers]]
name = "front"
address = 1

[[osdp.readers]]
name = "back"
address = 200
""",
        encoding="utf-8",
    )
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    found = {(issue.key, issue.line) for issue in caught.value.issues}
    assert ("osdp.0.baudrate", 7) in found
    assert ("osdp.0.readers.1.address", 17) in found
    text = str(caught.value)
    assert "115000 is no rate OSDP uses" in text and str(path) in text


def test_check_config_refuses_shared_addresses_and_names(tmp_path):
    path = tmp_path / "gate.toml"
    path.write_text(
        """site = "s1"
gate = "g1"

[[wiegand]]
name = "front"
d0 = 5
d1 = 6

[[osdp]]
url = "socket://127.0.0.1:9"
key_dir = "keys"

[[osdp.readers]]
name = "front"
address = 3

[[osdp.readers]]
name = "other"
address = 3
""",
        encoding="utf-8",
    )
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    text = str(caught.value)
    assert "share address 3" in text
    path.write_text(
        path.read_text().replace(
            'address = 3\n\n[[osdp.readers]]\nname = "other"',
            'address = 4\n\n[[osdp.readers]]\nname = "other"',
        )
    )
    with pytest.raises(ConfigError, match="unique across all readers"):
        load_config(path)
    path.write_text(
        path.read_text().replace('name = "front"\naddress = 4', 'name = "front-osdp"\naddress = 4')
    )
    config = load_config(path)
    assert config.osdp[0].key_dir == tmp_path / "keys"  # relative to the file
    assert config.osdp[0].key_path(config.osdp[0].readers[0]) == tmp_path / "keys" / "front-osdp.key"
