"""A gate with duty cards in its card list, a door on mock pins, and optionally a real broker."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from gpiozero.pins.mock import MockFactory

from broker.launcher import Broker
from edge.agent import GateAgent
from edge.config import EdgeConfig
from protocol import decode_event
from protocol.duty import DutyRole
from simulator.door import DoorModel
from simulator.duty import duty_card
from tests.waiting import wait_until

SITE = "longtan"
PINS = {
    "relay": "GPIO17",
    "contact": "GPIO27",
    "exit_button": "GPIO22",
    "tamper": "GPIO23",
    "green": "GPIO24",
    "red": "GPIO25",
}
FEEDBACK = {"green": "GPIO20", "red": "GPIO21", "buzzer": "GPIO26"}
STAFF = (13, 5001)  # wiegand26:13:5001: 王芳's staff card; also on the allow-list, to prove duty comes first
PATROL = (13, 5002)  # wiegand26:13:5002: 李强's patrol card
EXPIRED_STAFF = (13, 5003)
BAD_UNIT = (13, 5004)
RESIDENT = (13, 1001)
NOW = datetime.now(UTC).replace(microsecond=0)


def load_cards(store_path: Path, registry_path: Path, entries: list[Any]) -> None:
    """Give a gate's card store ``entries`` as the console would: a snapshot of its registry."""
    from console.credentials import CardRegistry
    from edge.credentials import CardStore

    registry = CardRegistry(registry_path)
    registry.put(entries)
    store = CardStore(store_path)
    try:
        store.apply_snapshot_chunks(registry.snapshot())
    finally:
        store.close()


def pin_hashes(pins: dict[str, tuple[str, str]]) -> dict[str, tuple[str, str]]:
    """``{person: (name, PIN)}`` → ``{person: (name, scrypt hash)}``, cheaper than a real hash (same format)."""
    from edge.guard.pin import hash_pin

    return {person: (name, hash_pin(pin, n=2**12)) for person, (name, pin) in pins.items()}


def card(pair: tuple[int, int]) -> str:
    return f"wiegand26:{pair[0]}:{pair[1]}"


def duty_entries() -> list[Any]:
    from protocol.credentials import CardEntry

    return [
        duty_card(DutyRole.STAFF, card(STAFF), "p-wang", "王芳", valid_until=NOW + timedelta(days=30)),
        duty_card(DutyRole.PATROL, card(PATROL), "p-li", "李强"),
        duty_card(DutyRole.STAFF, card(EXPIRED_STAFF), "p-zhao", "赵敏", valid_until=NOW - timedelta(days=1)),
        CardEntry("duty:" + card(BAD_UNIT), holder="钱", unit="janitor:p-qian"),
        CardEntry(card(RESIDENT), holder="李华", unit="5-1-302"),
    ]


def gate_config(
    tmp_path: Path,
    gate: str,
    *,
    broker: Broker | None = None,
    readers: dict[str, Any] | None = None,
    guard_pin_hash: str | None = None,
    entries: list[Any] | None = None,
    failover: list[str] | None = None,
) -> EdgeConfig:
    """A gate of site :data:`SITE`: duty cards in its list, a door and a light tower on mock pins."""
    store = tmp_path / f"{gate}-cards.db"
    if not store.exists():
        load_cards(
            store, tmp_path / f"{gate}-registry.db", entries if entries is not None else duty_entries()
        )
    mqtt: dict[str, Any] = {"host": "127.0.0.1", "port": 9}  # nothing listens: the network is down
    if broker is not None:
        creds = broker.add_gate(SITE, gate)
        mqtt = {
            "host": broker.host,
            "port": broker.tls_port,
            "username": creds.username,
            "tls_ca": str(creds.tls_ca),
            "tls_cert": str(creds.tls_cert),
            "tls_key": str(creds.tls_key),
            "resend_after_s": 1.0,
            "failover": failover or [],
        }
    raw: dict[str, Any] = {
        "site": SITE,
        "gate": gate,
        "mqtt": mqtt,
        "outbox": {"path": str(tmp_path / f"{gate}-outbox.db")},
        "access": {"allow": [card(STAFF)], "repeat_s": 0},
        "clock": {"trust": "trusted"},
        "metrics": {"listen": ""},
        "cards": {"store": str(store), "timezone": "Asia/Shanghai"},
        "gpio": {"pin_factory": "mock"},
        "door": {"pins": PINS, "behaviour": {"unlock_s": 0.5, "max_unlock_s": 2.0}},
        "feedback": FEEDBACK,
        **(readers or {}),
    }
    if guard_pin_hash is not None:
        raw["guard_screen"] = {
            "enabled": True,
            "listen": "127.0.0.1:0",
            "pin_hash": guard_pin_hash,
            "visitor_db": str(tmp_path / f"{gate}-visitors.db"),
        }
    return EdgeConfig.model_validate(raw)


class DutyGate:
    """One running agent with its door model; ``relay_ever_energised`` reads the relay pin's whole history."""

    def __init__(self, config: EdgeConfig, factory: MockFactory | None = None) -> None:
        self.factory = factory or MockFactory()
        self.config = config
        self.agent = GateAgent(config, pin_factory=self.factory)
        assert config.door is not None
        self.door = DoorModel(self.factory, config.door.pins)
        self.relay = self.factory.pin(PINS["relay"])
        self.agent.start()

    def relay_ever_energised(self) -> bool:
        """Whether the lock relay was driven to its energised level at any moment since start."""
        active_high = self.config.door.pins.relay_active_high  # type: ignore[union-attr]
        return any(bool(state.state) == active_high for state in self.relay.states)

    def events(self, event_type: str | None = None) -> list[Any]:
        rows = self.agent.outbox.pending(limit=10_000)
        found = [decode_event(row.body) for row in rows]
        return [e for e in found if event_type is None or e.type == event_type]

    def wait_for(self, event_type: str, count: int = 1, timeout: float = 10.0) -> list[Any]:
        assert wait_until(lambda: len(self.events(event_type)) >= count, timeout), [
            e.type for e in self.events()
        ]
        return self.events(event_type)

    def stop(self) -> None:
        self.agent.stop(drain_s=0)


def settle(seconds: float = 0.3) -> None:
    """Let the door's own thread act on anything it was told (it must not have been told to open)."""
    time.sleep(seconds)
