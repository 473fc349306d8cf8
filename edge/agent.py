"""The gate agent: the one place that wires readers, decision, outbox and link together.

The scan path is ``reader thread -> decide -> answer the guard -> outbox commit`` and
touches no socket: the door's answer never waits on the network, and an event is taken
as soon as its row is durable.  The MQTT link drains the outbox on its own threads and
may be down for hours without the gate noticing anything but a growing backlog.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any

from drivers.scanner import Scan, ScannerState, ScanRejected, SerialScanner
from edge.clock import Clock
from edge.config import EdgeConfig
from edge.decision import AllowList, Decision
from edge.link import Link
from edge.outbox import Outbox
from protocol import Command, Event, GateTopics
from protocol import events as ev

log = logging.getLogger("gatepost.edge.agent")

TakenHook = Callable[[Scan, Decision, Event | None, int], None]
"""Called after a scan's event is durable: (scan, decision, event, commit time in monotonic ns)."""


class GateAgent:
    """One gate: its readers, its decision, its outbox and its link to the console."""

    def __init__(self, config: EdgeConfig, *, version: str = "", on_taken: TakenHook | None = None) -> None:
        self.config = config
        self.topics = GateTopics(config.site, config.gate)
        self.outbox = Outbox(
            config.outbox.path, site=config.site, gate=config.gate, capacity=config.outbox.capacity
        )
        not_before = (
            datetime.fromisoformat(self.outbox.last_event_time) if self.outbox.last_event_time else None
        )
        self.clock = Clock(config.clock.trust, not_before=not_before)
        self.decider = AllowList(config.access.codes())
        self.on_taken = on_taken
        self._version = version
        self._stopped = threading.Event()
        self._scanner_states: dict[str, str] = {}
        self.link = Link(
            config.mqtt.endpoint(),
            self.topics,
            self.outbox,
            version=version,
            window=config.mqtt.window,
            resend_after_s=config.mqtt.resend_after_s,
            clock_trusted=lambda: self.clock.now().trusted,
            on_rejected_command=self._command_rejected,
        )
        self.link.register("status", self._status_command)
        self.scanners = [
            SerialScanner(
                scanner.url,
                baudrate=scanner.baudrate,
                max_length=scanner.max_length,
                on_scan=lambda scan, name=scanner.name: self._on_scan(name, scan),
                on_reject=lambda rejected, name=scanner.name: self._on_reject(name, rejected),
                on_state=lambda state, detail, name=scanner.name: self._on_state(name, state, detail),
                name=scanner.name,
            )
            for scanner in config.scanners
        ]

    # -- lifecycle -------------------------------------------------------------------

    def start(self) -> None:
        reading = self.clock.now()
        self.record(
            ev.AGENT_STARTED,
            {"version": self._version, "clock_trusted": reading.trusted, "backlog": self.outbox.backlog},
        )
        if not reading.trusted:
            self.record(
                ev.CLOCK_UNTRUSTED, {"detail": self.clock.distrust_reason or "clock not synchronised"}
            )
        self.link.start()
        for scanner in self.scanners:
            scanner.start()
        log.info(
            "gate %s/%s up: %d reader(s), %d allowed code(s), %d event(s) waiting",
            self.config.site,
            self.config.gate,
            len(self.scanners),
            len(self.decider),
            self.outbox.backlog,
        )

    def stop(self, *, reason: str = "shutdown", drain_s: float = 2.0) -> None:
        """Close readers, record the stop, give the link a moment to deliver, then say ``stopped``."""
        if self._stopped.is_set():
            return
        self._stopped.set()
        for scanner in self.scanners:
            scanner.close()
        self.record(ev.AGENT_STOPPED, {"reason": reason})
        deadline = time.monotonic() + drain_s
        while self.outbox.backlog and self.link.connected and time.monotonic() < deadline:
            time.sleep(0.02)
        self.link.stop()
        self.outbox.close()

    def wait(self, timeout: float | None = None) -> bool:
        return self._stopped.wait(timeout)

    # -- events ----------------------------------------------------------------------

    def record(self, event_type: str, data: dict[str, Any]) -> Event | None:
        """Take an event: return once it is durable in the outbox."""
        reading = self.clock.now()
        return self.outbox.append(event_type, data, time=reading.wall, clock_trusted=reading.trusted)

    def _on_scan(self, reader: str, scan: Scan) -> None:
        decision = self.decider.decide(scan.code)
        log.info(
            "%s %s at %s (%s)",
            "GRANTED" if decision.granted else "DENIED",
            scan.code,
            reader,
            decision.reason,
        )
        event = self.record(
            ev.ACCESS_SCAN,
            {
                "credential": "pass",
                "code": scan.code,
                "granted": decision.granted,
                "reason": decision.reason.value,
                "reader": reader,
                "symbology": scan.symbology,
            },
        )
        if self.on_taken is not None:
            self.on_taken(scan, decision, event, time.monotonic_ns())

    def _on_reject(self, reader: str, rejected: ScanRejected) -> None:
        log.warning("rejected input at %s: %s (%s)", reader, rejected.reason, rejected.detail)
        self.record(
            ev.SCANNER_REJECTED,
            {
                "reader": reader,
                "reason": str(rejected.reason),
                "detail": rejected.detail,
                "length": rejected.length,
            },
        )

    def _on_state(self, reader: str, state: ScannerState, detail: str | None = None) -> None:
        previous = self._scanner_states.get(reader)
        self._scanner_states[reader] = str(state)
        if state == ScannerState.CONNECTED and previous != str(state):
            self.record(ev.SCANNER_CONNECTED, {"reader": reader, "detail": detail or ""})
        elif state == ScannerState.DISCONNECTED and previous == str(ScannerState.CONNECTED):
            self.record(ev.SCANNER_DISCONNECTED, {"reader": reader, "detail": detail or ""})

    def _command_rejected(self, reason: str, detail: str, command_id: str | None) -> None:
        self.record(ev.COMMAND_REJECTED, {"reason": reason, "detail": detail, "command_id": command_id})

    def _status_command(self, _command: Command) -> dict[str, Any]:
        reading = self.clock.now()
        return {
            "backlog": self.outbox.backlog,
            "last_seq": self.outbox.last_seq,
            "clock_trusted": reading.trusted,
            "readers": dict(self._scanner_states),
            "version": self._version,
        }
