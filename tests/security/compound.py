"""A compound for the security tests: broker, site office, door gates, and the console's store.

Everything real, as in ``test_commands.py``'s docstring; the attempts live in the tests.
"""

from __future__ import annotations

import collections
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from gpiozero.pins.mock import MockFactory

from broker.launcher import Broker
from broker.provision import Credentials
from console.alarms import AlarmBook
from console.commands import OfficeCommandSigner
from console.db import Database
from console.ingest import Ingestor
from console.store import EventStore, StoredEvent
from edge.agent import GateAgent
from edge.config import EdgeConfig
from protocol import GateTopics
from protocol.commands import ALARMING_REASONS, CommandBody
from tests.offices import gate_passes_section
from tests.waiting import wait_until

PINS = {"relay": "GPIO17", "contact": "GPIO27", "exit_button": "GPIO22"}


@dataclass
class Compound:
    """One site: broker, office, gates ``north`` and ``south``, and the console's store."""

    site: str
    root: Path
    broker: Broker
    office: Path
    store: EventStore
    ingestor: Ingestor
    gates: dict[str, GateAgent] = field(default_factory=dict)
    creds: dict[str, Credentials] = field(default_factory=dict)

    def start_gate(self, gate: str, *, port: int | None = None) -> GateAgent:
        """A gate agent with a door; started again on the same folder it keeps its state (outbox, memory).

        ``port``: reach the broker there instead (a man in the middle, ``simulator/mitm.py``).
        """
        if gate not in self.creds:
            self.creds[gate] = self.broker.add_gate(self.site, gate)
        creds = self.creds[gate]
        folder = self.root / gate
        folder.mkdir(exist_ok=True)
        secret = folder / "mqtt.secret"
        secret.write_text(creds.password)
        passes = folder / "passes"
        section = (
            gate_passes_section(self.office, passes)
            if not passes.exists()
            else {
                "root_key": str(passes / "root.pub"),
                "trust_bundle": str(passes / "bundle"),
                "revocation_list": str(passes / "revocations"),
            }
        )
        config = EdgeConfig.model_validate(
            {
                "site": self.site,
                "gate": gate,
                "mqtt": {
                    "host": self.broker.host,
                    "port": port or self.broker.port,
                    "username": creds.username,
                    "password_file": str(secret),
                    "resend_after_s": 1.0,
                },
                "outbox": {"path": str(folder / "outbox.db")},
                "access": {"allow": []},
                "clock": {"trust": "trusted"},
                "gpio": {"pin_factory": "mock"},
                "door": {"pins": PINS, "behaviour": {"unlock_s": 1.0, "max_unlock_s": 5.0}},
                "passes": section,
            }
        )
        agent = GateAgent(config, pin_factory=MockFactory())
        agent.start()
        assert agent.link.wait_connected(10)
        self.gates[gate] = agent
        return agent

    def stop_gate(self, gate: str) -> None:
        self.gates.pop(gate).stop(drain_s=2.0)

    def events(self, gate: str | None = None, kind: str | None = None) -> list[StoredEvent]:
        """What the console stored (every event of this site, in order)."""
        found: list[StoredEvent] = []
        after = 0
        while batch := self.store.events_after(after, limit=1000):
            found += batch
            after = batch[-1].row_id
        return [
            e
            for e in found
            if e.site == self.site and (gate is None or e.gate == gate) and (kind is None or e.type == kind)
        ]

    def rejected(self, gate: str) -> list[str]:
        return [e.data["reason"] for e in self.events(gate, "command.rejected")]

    def wait_rejected(self, gate: str, count: int) -> list[str]:
        assert wait_until(lambda: len(self.rejected(gate)) >= count, timeout=15), self.rejected(gate)
        return self.rejected(gate)

    def unlocked(self, gate: str) -> list[dict[str, Any]]:
        return [e.data for e in self.events(gate, "door.unlocked")]

    def alarms(self) -> list[tuple[str, str, str]]:
        """The console's alarm rules over everything it stored: (kind, gate, the refusal's reason), one per occurrence.

        The console keeps one open alarm per kind and gate and counts occurrences into it
        (console/alarms.py); each refusal that counted is listed here, in the order the
        gates took them, and the counts the console kept must add up to the same.
        """
        events = self.events()
        book = AlarmBook(Database(str(self.root / "console.db")))
        try:
            book.observe_events(events)
            counted: collections.Counter[tuple[str, str]] = collections.Counter()
            for alarm in book.list():
                counted[alarm.kind, alarm.gate] += alarm.count
        finally:
            book.db.close()
        occurrences = [
            ("command.unverified", event.gate, str(event.data.get("reason", "")))
            for event in events
            if event.type == "command.rejected" and str(event.data.get("reason")) in ALARMING_REASONS
        ]
        assert collections.Counter((kind, gate) for kind, gate, _ in occurrences) == counted
        return occurrences

    def body(self, gate: str, **changes: Any) -> CommandBody:
        now = datetime.now(UTC)
        fields: dict[str, Any] = {
            "site": self.site,
            "gate": gate,
            "id": uuid.uuid4().hex,
            "name": "unlock",
            "args": {"seconds": 1.0},
            "issued_at": now,
            "expires_at": now + timedelta(seconds=30),
            "operator": "ana",
        }
        fields.update(changes)
        return CommandBody(**fields)

    def signed(self, gate: str, **changes: Any) -> bytes:
        """A command signed with the office's real command key (what the console would send)."""
        return OfficeCommandSigner(self.office).sign(self.body(gate, **changes))

    def command_topic(self, gate: str) -> str:
        return GateTopics(self.site, gate).command


@contextmanager
def running_compound(root: Path, broker: Broker, site: str, office: Path) -> Iterator[Compound]:
    """The console's ingest started for ``site``; every gate started in it is stopped at the end."""
    store = EventStore(root / "console.db")
    ingestor = Ingestor(broker.endpoint(broker.add_console("ingest")), store, name=f"c{site}").start()
    compound = Compound(site, root, broker, office, store, ingestor)
    try:
        assert ingestor.wait_connected(10)
        yield compound
    finally:
        for gate in list(compound.gates):
            compound.stop_gate(gate)
        ingestor.stop()
        store.close()
