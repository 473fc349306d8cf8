"""The gate agent: the one place that wires readers, decision, door, outbox and link together.

The access path is ``reader thread -> repeat filter -> decide -> door (relay, lights,
buzzer) -> outbox commit`` and touches no socket: the door opens before anything is
written and never waits on the network, and an event is taken as soon as its row is
durable.  Every kind of reader — serial pass scanner, Wiegand, EM4100, keyboard-mode,
camera — ends in the same :meth:`GateAgent.present`, so the same credential gets the same
answer and the same repeat suppression wherever it is shown.  The MQTT link drains the
outbox on its own threads and may be down for hours without the gate noticing anything
but a growing backlog.
"""

from __future__ import annotations

import contextlib
import logging
import sqlite3
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol

from drivers.cards import CardGone, CardRead, CardRejected, KeyPress, Reading
from drivers.scanner import Scan, ScannerState, ScanRejected, SerialScanner
from edge.card_sync import CardSync, ThumbnailStore
from edge.clock import Clock, ClockReading
from edge.commands import CommandVerifier, ReplayMemory
from edge.config import Direction, EdgeConfig
from edge.decision import AllowList, Decision, GateDecider
from edge.door import DoorCommandError, DoorController, DoorEvent, DoorEventType, remote_unlock_seconds
from edge.feedback import GuardFeedback, pattern_for
from edge.health import HealthReporter
from edge.link import CommandRefused, Link
from edge.metrics import GateMetrics
from edge.outbox import Outbox
from edge.pass_memory import PassMemory
from gatepost.supervision import InFlight
from protocol import Command, Event, GateTopics
from protocol import events as ev
from protocol.certs import not_after
from protocol.passes import GateState, Reason
from protocol.topics import SiteDocument

log = logging.getLogger("gatepost.edge.agent")

TakenHook = Callable[["Presented", Decision, Event | None, int], None]
"""Called after a decision's event is durable: (what was shown, decision, event, commit time in monotonic ns)."""

_DOOR_EVENTS_SAID_ELSEWHERE = {
    DoorEventType.ACCESS_GRANTED,
    DoorEventType.ACCESS_DENIED,
    DoorEventType.CARD_READ,
}
"""The door machine reports decisions and card reads too; ``access.scan`` already says them once."""
_DOOR_ALARMS = {
    DoorEventType.FORCED,
    DoorEventType.HELD_OPEN_WARNING,
    DoorEventType.HELD_OPEN,
    DoorEventType.TAMPER,
    DoorEventType.RELAY_WATCHDOG,
    DoorEventType.FIRE_ALARM,
    DoorEventType.FIRE_ALARM_CLEARED,
}
"""Door events the guard must see at once on the guard screen, not only in the console."""


class Device(Protocol):
    def start(self) -> None: ...

    def close(self) -> None: ...


@dataclass(frozen=True, slots=True)
class Presented:
    """A credential shown at one of the gate's readers, whatever the wire."""

    credential: str
    kind: str  # "pass" or "card"
    reader: str
    at_ns: int
    code: str  # what the reader read: the pass code, or the card's credential string
    symbology: str | None = None
    direction: Direction | None = None
    """Which way the reader faces, from its configuration; filled in by the agent if not given."""
    image: bytes | None = None
    """A plate's crop (JPEG, at most 12 KB), carried into the event for the console."""
    confidence: float | None = None
    """A plate reading's confidence (0..1), when the source gives one."""


class RepeatFilter:
    """The same credential within ``window_s`` is one presentation, not several.

    A pass held under a scanner, a card left on a reader or a camera seeing the same
    phone for a second would otherwise open, log and count the same person many times.
    """

    def __init__(self, window_s: float) -> None:
        self._window_ns = int(window_s * 1e9)
        self._last: OrderedDict[str, int] = OrderedDict()
        self._lock = threading.Lock()
        self.suppressed = 0

    def fresh(self, credential: str, at_ns: int) -> bool:
        with self._lock:
            # Kept in the order seen, so the stale ones are at the front and leave one by one:
            # sweeping the whole table past a size made every scan pay for thousands of
            # credentials once that many had been seen inside one window.
            horizon = at_ns - self._window_ns
            while self._last:
                when = next(iter(self._last.values()))
                if when > horizon:
                    break
                self._last.popitem(last=False)
            last = self._last.get(credential)
            if last is not None and at_ns - last < self._window_ns:
                self.suppressed += 1
                return False
            self._last[credential] = at_ns
            self._last.move_to_end(credential)
            return True

    def __len__(self) -> int:
        """Credentials remembered now: those seen within the last window, and no others."""
        with self._lock:
            return len(self._last)


class GateAgent:
    """One gate: its readers, decision, door, outbox and link to the console."""

    def __init__(
        self,
        config: EdgeConfig,
        *,
        version: str = "",
        on_taken: TakenHook | None = None,
        pin_factory: Any = None,
    ) -> None:
        self.config = config
        self.topics = GateTopics(config.site, config.gate)
        self.outbox = Outbox(
            config.outbox.path,
            site=config.site,
            gate=config.gate,
            capacity=config.outbox.capacity,
            journal_capacity=config.outbox.journal_capacity,
            held_records=config.outbox.held_records,
            retry_min_s=config.outbox.retry_min_s,
            retry_max_s=config.outbox.retry_max_s,
        )
        not_before = (
            datetime.fromisoformat(self.outbox.last_event_time) if self.outbox.last_event_time else None
        )
        self.clock = Clock(
            config.clock.trust,
            not_before=not_before,
            anchor_path=config.outbox.path.with_suffix(".clock.json"),
            on_change=self._clock_changed,
        )
        self.decider = GateDecider(
            AllowList(config.access.codes()), _pass_state(config), *_card_store(config)
        )
        self.repeats = RepeatFilter(config.access.repeat_s)
        self.directions: dict[str, Direction] = {
            reader.name: reader.direction
            for reader in (
                *config.scanners,
                *config.cameras,
                *config.wiegand,
                *config.rdm6300,
                *config.keyboards,
                *(reader for bus in config.osdp for reader in bus.readers),
            )
            if reader.direction is not None
        }
        self.pass_memory: PassMemory | None = None
        if self.decider.passes is not None:
            memory_path = config.outbox.path.with_suffix(".passes.db")
            try:
                self.pass_memory = PassMemory.for_state(memory_path, self.decider.passes)
            except (sqlite3.Error, OSError) as exc:  # a failed disk must not keep the door shut
                log.error(
                    "cannot open the pass memory %s (%s): replay and passback checks run from memory only",
                    memory_path,
                    exc,
                )
            else:
                remembered = self.pass_memory.attach(self.decider.passes)
                if remembered:
                    log.info("remembered %d recent pass grant(s) from before the restart", remembered)
        self.on_taken = on_taken
        self._version = version
        self.started_at = time.monotonic()
        self._stopped = threading.Event()
        self.deciding = InFlight("decision")
        self.recording = InFlight("event-commit")
        """Calls in progress, for the systemd watchdog (edge/supervision.py): none may hang."""
        self.reader_states: dict[str, str] = {}
        self.card_sync: CardSync | None = None
        subscriptions: list[tuple[str, Callable[[str, bytes], None]]] = []
        if config.cards is not None:
            self.card_sync = CardSync(
                config.cards.store,
                self.topics,
                self.record,
                lambda topic, body: self.link.publish(topic, body),
            )
            subscriptions += self.card_sync.subscriptions()
        self.duty = _duty_desk(self)
        subscriptions += self.duty.subscriptions(self.topics.duty)
        self.thumbnails = (
            ThumbnailStore(config.photos.dir, config.site) if config.photos is not None else None
        )
        if self.thumbnails is not None:
            subscriptions += self.thumbnails.subscriptions()
        brokers = config.mqtt.endpoints()  # [mqtt] host:port, then each [mqtt] failover one
        self.link = Link(
            brokers[0],
            self.topics,
            self.outbox,
            version=version,
            window=config.mqtt.window,
            resend_after_s=config.mqtt.resend_after_s,
            resend_overtaken_s=config.mqtt.resend_overtaken_s,
            clock_trusted=lambda: self.clock.now().trusted,
            on_rejected_command=self._command_rejected,
            on_document=self._on_document,
            status_extra=self._status_extra,
            subscriptions=subscriptions,
            on_connected=self._on_connected,
            failover=brokers[1:],
        )
        self.link.register("status", self._status_command)
        self.outbox.add_state_listener(self._outbox_state_changed)
        self.metrics = GateMetrics(self)
        self.metrics.certificate_expiry = self._certificates
        self.health = HealthReporter(self, config.health.interval_s)
        # Commands act only once signed by a command key the site root certified (edge/commands.py).
        self.command_memory = _replay_memory(config.outbox.path.with_suffix(".commands.db"))
        self.link.command_verifier = CommandVerifier(
            self.decider.passes.trust if self.decider.passes is not None else None,
            self.command_memory,
            site=config.site,
            gate=config.gate,
            clock=self.clock.now,
        )
        self.pin_factory = pin_factory
        if pin_factory is None and (
            config.door is not None or config.wiegand or config.feedback is not None or config.lane
        ):
            from drivers.door_io import make_pin_factory

            self.pin_factory = make_pin_factory(config.gpio.pin_factory)
        self.door: DoorController | None = None
        self.hardware: Any = None
        self.feedback: GuardFeedback | None = None
        self.osdp: Any = None
        """The OSDP buses (edge/osdp_readers.py): their readers show each decision's pattern."""
        self.devices: list[Device] = []
        self.lanes: dict[str, Any] = {}
        """Vehicle lanes by name (= the reader of their plates): edge/lane.py, built by edge/vehicles.py."""
        self.vehicles: Any = None
        try:
            if config.feedback is not None:
                self.feedback = GuardFeedback(config.feedback, pin_factory=self.pin_factory)
            self._build_door()
            self._build_readers()
            self._build_lanes()
            self.guard = _guard_screen(self)
        except BaseException:
            self._close_devices()
            self.command_memory.close()
            self.duty.close()
            self.outbox.close()
            raise

    # -- construction ----------------------------------------------------------------

    def _build_door(self) -> None:
        if self.config.door is None:
            return
        from drivers.door_io import DoorHardware

        settings = self.config.door.behaviour
        self.hardware = DoorHardware(
            self.config.door.pins, relay_max_on_s=settings.relay_max_on_s, pin_factory=self.pin_factory
        )
        self.door = DoorController(settings, self.hardware, self._door_event)
        self.link.register("unlock", self._unlock_command)
        self.link.register("lock", self._lock_command)

    def _build_lanes(self) -> None:
        if not self.config.lane:
            return
        from edge.vehicles import VehicleLanes

        self.vehicles = VehicleLanes(self)
        self.lanes = self.vehicles.lanes
        self.devices.extend(self.vehicles.devices())

    def _build_readers(self) -> None:
        for scanner in self.config.scanners:
            self.devices.append(
                SerialScanner(
                    scanner.url,
                    baudrate=scanner.baudrate,
                    max_length=scanner.max_length,
                    on_scan=lambda scan, name=scanner.name: self._on_scan(name, scan),
                    on_reject=lambda rejected, name=scanner.name: self._on_reject(name, rejected),
                    on_state=lambda state, detail, name=scanner.name: self._on_state(name, state, detail),
                    name=scanner.name,
                )
            )
        if self.config.wiegand:
            from drivers.wiegand import WiegandDecoder, WiegandReader

            for reader in self.config.wiegand:
                decoder = WiegandDecoder(
                    reader=reader.name,
                    min_silence_ns=int(reader.min_silence_ms * 1e6),
                    silence_periods=reader.silence_periods,
                )
                self.devices.append(
                    _Started(
                        lambda r=reader, d=decoder: WiegandReader(
                            r.d0, r.d1, self._on_reading, name=r.name, pin_factory=self.pin_factory, decoder=d
                        )
                    )
                )
        if self.config.rdm6300:
            from drivers.em4100 import Rdm6300Reader

            for reader in self.config.rdm6300:
                self.devices.append(
                    _Started(
                        lambda r=reader: Rdm6300Reader(
                            r.url, self._on_reading, name=r.name, baudrate=r.baudrate
                        )
                    )
                )
        if self.config.keyboards:
            from drivers.keyboard import KeyboardReader

            for reader in self.config.keyboards:
                self.devices.append(
                    _Started(
                        lambda r=reader: KeyboardReader(r.path, self._on_reading, name=r.name, grab=r.grab)
                    )
                )
        if self.config.osdp:
            from edge.osdp_readers import OsdpReaders

            self.osdp = OsdpReaders(
                self.config.osdp,
                self._on_reading,
                self.record,
                states=self.reader_states,
                on_change=lambda: self.health.poke(),
            )
            self.devices.append(self.osdp)
        if self.config.cameras:
            from drivers.camera_scanner import CameraScanner

            for camera in self.config.cameras:
                self.devices.append(
                    CameraScanner(
                        camera.source,
                        width=camera.width,
                        height=camera.height,
                        fps=camera.fps,
                        decoder=camera.decoder,
                        hold_off_s=camera.hold_off_s,
                        on_scan=lambda scan, name=camera.name: self._on_scan(name, scan),
                        on_reject=lambda rejected, name=camera.name: self._on_reject(name, rejected),
                        on_state=lambda state, detail, name=camera.name: self._on_state(name, state, detail),
                        name=camera.name,
                    )
                )

    # -- lifecycle -------------------------------------------------------------------

    @property
    def version(self) -> str:
        return self._version

    def start(self) -> None:
        if self.config.metrics.listen:
            self.metrics.serve(self.config.metrics.listen)
        reading = self.clock.now()
        self.record(
            ev.AGENT_STARTED,
            {"version": self._version, "clock_trusted": reading.trusted, "backlog": self.outbox.backlog},
        )
        if not reading.trusted:
            self.record(
                ev.CLOCK_UNTRUSTED, {"detail": self.clock.distrust_reason or "clock not synchronised"}
            )
        if self.door is not None:
            self.door.start()
        if self.card_sync is not None:
            self.card_sync.start()
        self.link.start()
        self.health.start()
        if self.guard is not None:
            self.guard.start()
        for device in self.devices:
            device.start()
        log.info(
            "gate %s/%s up: %d reader(s), %s, %d allowed credential(s), %d event(s) waiting",
            self.config.site,
            self.config.gate,
            len(self.devices),
            "a door" if self.door else "no door",
            len(self.decider),
            self.outbox.backlog,
        )

    def stop(self, *, reason: str = "shutdown", drain_s: float = 2.0) -> None:
        """Close readers, lock the door, record the stop, let the link deliver, then say ``stopped``."""
        if self._stopped.is_set():
            return
        self._stopped.set()
        self._close_devices()
        if self.guard is not None:
            self.guard.stop()
        self.record(ev.AGENT_STOPPED, {"reason": reason})
        deadline = time.monotonic() + drain_s
        while self.outbox.backlog and self.link.connected and time.monotonic() < deadline:
            time.sleep(0.02)
        self.health.stop()
        self.link.stop()
        self.metrics.close()
        if self.card_sync is not None:
            self.card_sync.close()
        if self.pass_memory is not None:
            self.pass_memory.close()
        self.command_memory.close()
        self.duty.close()
        self.outbox.close()

    def _close_devices(self) -> None:
        for device in self.devices:
            try:
                device.close()
            except Exception:
                log.exception("closing a reader failed")
        if self.door is not None:
            self.door.stop()  # locks the door and delivers its last events
        if self.hardware is not None:
            self.hardware.close()
        if self.feedback is not None:
            self.feedback.close()

    def wait(self, timeout: float | None = None) -> bool:
        return self._stopped.wait(timeout)

    # -- events ----------------------------------------------------------------------

    def record(
        self, event_type: str, data: dict[str, Any], reading: ClockReading | None = None
    ) -> Event | None:
        """Take an event: return once it is durable in the outbox (stamped ``reading``, or now)."""
        with self.recording:
            reading = reading or self.clock.now()
            return self.outbox.append(event_type, data, time=reading.wall, clock_trusted=reading.trusted)

    def _clock_changed(self, reading: ClockReading, detail: str) -> None:
        """Trust lost or regained after start: say so in the event stream, without waiting.

        Called from whichever thread read the clock (a reader's, deciding), so the event
        is queued, not awaited; ``clock.untrusted`` at start is recorded by :meth:`start`.
        """
        event_type = ev.CLOCK_TRUSTED if reading.trusted else ev.CLOCK_UNTRUSTED
        try:
            self.outbox.submit(
                event_type, {"detail": detail}, time=reading.wall, clock_trusted=reading.trusted
            )
        except Exception as exc:  # closing: the next start reports the state again
            log.debug("clock change not recorded: %s", exc)

    def present(self, shown: Presented) -> Decision | None:
        """Decide on a credential, answer at the door, then take the event.  ``None``: a repeat."""
        with self.deciding:
            return self._present(shown)

    def _present(self, shown: Presented) -> Decision | None:
        if not self.repeats.fresh(shown.credential, shown.at_ns):
            return None
        direction = shown.direction or self.directions.get(shown.reader)
        reading = self.clock.now()  # one reading: the event says the time the decision used
        duty_entry = self.duty.entry_for(shown.credential)  # duty:<credential> first: it never opens
        if duty_entry is not None:
            return self._duty(shown, duty_entry, reading)
        decision = self.decider.decide(shown.credential, reading, direction)
        lane = self.lanes.get(shown.reader)
        if lane is not None:
            lane.access(decision.granted, decision)  # the contract of issue 19: access(granted, decision)
        elif self.door is not None:
            self.door.access(
                granted=decision.granted,
                credential=shown.credential,
                reason=decision.reason.value,
                reader=shown.reader,
            )
        if self.feedback is not None or self.osdp is not None:
            pattern = pattern_for(decision.granted, decision.reason, flagged=bool(decision.flags))
            if self.osdp is not None:
                self.osdp.show(shown.reader, pattern)  # at the OSDP reader itself, if it is one
            if self.feedback is not None:
                self.feedback.show(pattern)
        if self.guard is not None:
            self.guard.show(shown, decision)
        answered_ns = time.monotonic_ns()
        data: dict[str, Any] = {
            "credential": shown.kind,
            "code": shown.code if decision.holder is None else None,  # a signed pass is named by its serial
            "granted": decision.granted,
            "reason": decision.reason.value,
            "reader": shown.reader,
            **decision.event_fields(),
        }
        if shown.symbology is not None:
            data["symbology"] = shown.symbology
        if shown.kind == "plate":
            data.update(_plate_fields(shown))
        if direction is not None:
            data["direction"] = direction
        event = self.record(ev.ACCESS_SCAN, data, reading)
        taken_ns = self.outbox.taken_ns()  # the commit's own moment, before the link is woken
        # Counting and logging wait until the event is taken: neither is needed to answer at
        # the door or to make the event durable, and a log line on a slow console or journal
        # would otherwise sit between the scan and its commit.
        self.metrics.decided(decision.granted, decision.reason.value, shown.at_ns, answered_ns)
        log.info(
            "%s %s at %s (%s)",
            "GRANTED" if decision.granted else "DENIED",
            shown.credential,
            shown.reader,
            decision.reason,
        )
        if self.on_taken is not None:
            self.on_taken(shown, decision, event, taken_ns)
        return decision

    def _duty(self, shown: Presented, entry: Any, reading: ClockReading) -> Decision:
        """A staff or patrol credential: record the check, acknowledge it, never touch the door or lane."""
        try:
            outcome = self.duty.take(entry, reader=shown.reader, reading=reading)
        except Exception:  # a fault here must not kill the reader's thread; nothing was opened
            log.exception("duty credential at %s not recorded", shown.reader)
            return Decision(False, Reason.UNKNOWN, detail="duty error", duty="error")
        if self.osdp is not None:
            self.osdp.show(shown.reader, outcome.pattern)
        if self.feedback is not None:
            self.feedback.show(outcome.pattern)
        if self.guard is not None:
            self.guard.show_duty(outcome)
        decision = Decision(
            False,  # the door's answer: a duty credential never opens anything
            Reason.GRANTED if outcome.taken else Reason.UNKNOWN,
            detail=outcome.event_type,
            card_holder=outcome.name or None,
            duty=outcome.event_type,
        )
        if self.on_taken is not None:
            self.on_taken(shown, decision, None, time.monotonic_ns())
        return decision

    def _on_scan(self, reader: str, scan: Scan) -> None:
        self.present(Presented(scan.code, "pass", reader, scan.at_ns, scan.code, scan.symbology))

    def _on_reading(self, reading: Reading) -> None:
        if isinstance(reading, CardRead):
            self.present(
                Presented(reading.credential, "card", reading.reader, reading.at_ns, reading.credential)
            )
        elif isinstance(reading, CardRejected):
            if self.door is not None:
                self.door.reading(reading)  # becomes door.card_rejected through the door's events
            else:
                self.record(
                    ev.SCANNER_REJECTED,
                    {
                        "reader": reading.reader,
                        "reason": reading.reason.value,
                        "detail": reading.detail,
                        "length": reading.bits,
                    },
                )
        elif isinstance(reading, KeyPress | CardGone):
            pass  # PIN keys are never logged; a tag leaving the field is not an event

    def _door_event(self, event: DoorEvent) -> None:
        self.metrics.door_event(str(event.type), event.data)
        if event.type in _DOOR_EVENTS_SAID_ELSEWHERE:
            return
        self.record(str(event.type), dict(event.data))
        if self.guard is not None and event.type in _DOOR_ALARMS:
            self.guard.door_alarm(str(event.type).removeprefix("door."))

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
        previous = self.reader_states.get(reader)
        self.reader_states[reader] = str(state)
        if previous != str(state):
            self.health.poke()
        if state == ScannerState.CONNECTED and previous != str(state):
            self.record(ev.SCANNER_CONNECTED, {"reader": reader, "detail": detail or ""})
        elif state == ScannerState.DISCONNECTED and previous == str(ScannerState.CONNECTED):
            self.record(ev.SCANNER_DISCONNECTED, {"reader": reader, "detail": detail or ""})

    # -- signed documents from the console ----------------------------------------------

    def _on_document(self, document: SiteDocument, payload: bytes) -> None:
        """A retained trust bundle or revocation list: verify, keep if newer, say what happened.

        The gate checks the signatures itself against its pinned root, so a document
        that a broker or an impostor console slipped in is refused here; an older one is
        refused too, so a replayed list cannot un-revoke a pass.
        """
        passes = self.decider.passes
        if passes is None:
            log.debug("ignoring %s document: this gate has no [passes] section", document)
            return
        target = passes.trust if document is SiteDocument.TRUST else passes.revocation
        try:
            outcome = target.apply(payload)
        except Exception as exc:  # a store that cannot be written must not stop the link
            log.error("could not apply %s document: %s", document, exc)
            self.record(
                ev.PASSES_DOCUMENT,
                {"document": document.value, "applied": False, "reason": "error", "detail": str(exc)[:200]},
            )
            return
        if outcome.reason.value == "same":
            return  # the retained copy again, on reconnect
        (log.info if outcome.applied else log.warning)(
            "%s document: %s (%s)", document, outcome.reason, outcome.detail
        )
        self.record(
            ev.PASSES_DOCUMENT,
            {
                "document": document.value,
                "applied": outcome.applied,
                "reason": outcome.reason.value,
                "version": outcome.version,
                "detail": outcome.detail,
            },
        )

    def _outbox_state_changed(self) -> None:
        """The outbox's disk failed or came back (writer thread: must not block): say so at once."""
        self.link.announce()
        self.health.poke()

    def _on_connected(self) -> None:
        if self.card_sync is not None:
            self.card_sync.on_connected()
        self.health.poke()

    def _certificates(self) -> dict[str, datetime]:
        """When the gate's TLS certificates expire, read at each scrape (a renewal shows at once)."""
        found: dict[str, datetime] = {}
        for name, path in (("client", self.config.mqtt.tls_cert), ("ca", self.config.mqtt.tls_ca)):
            if path is not None:
                with contextlib.suppress(OSError, ValueError):
                    found[name] = not_after(path)
        return found

    def _status_extra(self) -> dict[str, Any]:
        """What the retained status carries beyond the link's own fields."""
        status = self._pass_status()
        if self.outbox.degraded is not None:
            status.update(held=self.outbox.held, outbox_error=self.outbox.degraded)
        return status

    def _pass_status(self) -> dict[str, Any]:
        status: dict[str, Any] = {}
        if self.config.mqtt.tls_cert is not None:
            # Read at every status: `enroll --install` may have renewed it since the start.
            with contextlib.suppress(OSError, ValueError):
                status["cert_not_after"] = not_after(self.config.mqtt.tls_cert)
        if self.decider.cards is not None:
            cards = self.decider.cards.state
            status.update(cards_version=cards.version, cards_hash=cards.hash, cards_count=cards.count)
        passes = self.decider.passes
        if passes is None:
            return status
        max_age = passes.policy.revocation_max_age
        return {
            **status,
            "trust_version": passes.trust.version,
            "revocation_version": passes.revocation.version,
            "revocation_stale": passes.revocation.is_stale(self.clock.now().wall, max_age),
            "revocation_issued_at": passes.revocation.current.issued_at
            if passes.revocation.current
            else None,
        }

    # -- commands --------------------------------------------------------------------

    def _command_rejected(self, reason: str, detail: str, command_id: str | None) -> None:
        self.record(ev.COMMAND_REJECTED, {"reason": reason, "detail": detail, "command_id": command_id})

    def _status_command(self, _command: Command) -> dict[str, Any]:
        reading = self.clock.now()
        status: dict[str, Any] = {
            "backlog": self.outbox.backlog,
            "last_seq": self.outbox.last_seq,
            "clock_trusted": reading.trusted,
            "readers": dict(self.reader_states),
            "version": self._version,
            "repeats_suppressed": self.repeats.suppressed,
            **self._status_extra(),
        }
        if self.door is not None:
            machine = self.door.machine
            status["door"] = {
                "unlocked": machine.unlocked,
                "open": machine.door_open,
                "tampered": machine.tampered,
            }
        return status

    def _unlock_command(self, command: Command) -> dict[str, Any]:
        assert self.door is not None
        reading = self.clock.estimate()
        try:
            seconds = remote_unlock_seconds(
                command,
                retained=False,  # the link already refused retained commands
                now=reading.wall,
                clock_trusted=reading.trusted,
                error_s=reading.error_s,
                settings=self.door.settings,
            )
        except DoorCommandError as exc:
            self._command_rejected(exc.reason.value, exc.detail, command.id)
            raise CommandRefused(exc.reason.value) from None
        self.door.remote_unlock(seconds, command_id=command.id)
        return {"unlocked_for_s": seconds}

    def _lock_command(self, command: Command) -> dict[str, Any]:
        assert self.door is not None
        try:
            self.door.remote_lock()
        except DoorCommandError as exc:  # the fire alarm holds the door released
            self._command_rejected(exc.reason.value, exc.detail, command.id)
            raise CommandRefused(exc.reason.value) from None
        return {"locked": True}


def _plate_fields(shown: Presented) -> dict[str, Any]:
    """A plate's text, confidence and crop (base64 JPEG) for the ``access.scan`` event (issue 19's contract)."""
    import base64

    fields: dict[str, Any] = {"plate": shown.code, "confidence": shown.confidence}
    if shown.image is not None:
        fields["crop"] = base64.b64encode(shown.image).decode("ascii")
    return fields


def _replay_memory(path: Path) -> ReplayMemory:
    """The signed commands' replay memory, or one in memory when the disk refuses the file.

    A failed disk must not keep the door shut by stopping the agent at start.  In memory,
    a command is still acted on once in this run; only a restart before the disk works
    again forgets, and a command lives minutes at most (``MAX_COMMAND_LIFETIME``).
    """
    try:
        return ReplayMemory(path)
    except (sqlite3.Error, OSError) as exc:
        log.error("cannot open the command replay memory %s (%s): keeping it in memory", path, exc)
        return ReplayMemory(Path(":memory:"))


def _guard_screen(agent: GateAgent) -> Any:
    """The guard screen (docs/guard-screen.md) when ``[guard_screen]`` is enabled, else ``None``."""
    if not agent.config.guard_screen.enabled:
        return None
    from edge.guard import GuardScreen

    return GuardScreen(agent, agent.config.guard_screen)


def _duty_desk(agent: GateAgent) -> Any:
    """Staff and patrol check-ins (edge/duty.py): always, since a sheet and PINs need no card list."""
    from edge.duty import DutyDesk

    config = agent.config
    guard = config.guard_screen
    policy = agent.decider.card_policy

    def desk(state_path: Path) -> DutyDesk:
        return DutyDesk(
            site=config.site,
            gate=config.gate,
            state_path=state_path,
            sheet_path=config.outbox.path.with_suffix(".duty-sheet.json"),
            record=agent.record,
            cards=agent.decider.cards,
            cards_lock=agent.decider.cards_lock,
            timezone=policy.timezone,
            untrusted_clock=policy.untrusted_clock,
            pin_attempts=guard.pin_attempts,
            pin_lockout_s=guard.pin_lockout_s,
            pin_lockout_max_s=guard.pin_lockout_max_s,
        )

    state_path = config.outbox.path.with_suffix(".duty.db")
    try:
        return desk(state_path)
    except (sqlite3.Error, OSError) as exc:  # a failed disk must not keep the gate from deciding
        log.error("cannot open the duty state %s (%s): who is checked in is kept in memory", state_path, exc)
        return desk(Path(":memory:"))


def _card_store(config: EdgeConfig) -> tuple[Any, Any]:
    """The synced door-card list and how to judge its cards, when ``[cards]`` is configured."""
    if config.cards is None:
        return None, None
    from zoneinfo import ZoneInfo

    from edge.credentials import CardStore
    from edge.decision import CardPolicy

    cards = config.cards
    policy = CardPolicy(ZoneInfo(cards.timezone), cards.zone, cards.untrusted_clock)
    return CardStore(cards.store), policy


def _pass_state(config: EdgeConfig) -> GateState | None:
    """The signed-pass side of the decision, from the files named in ``[passes]``."""
    if config.passes is None:
        return None
    from datetime import timedelta

    from protocol.passes import GatePolicy, RevocationState, TrustStore
    from protocol.passes.keys import load_public_key, load_site_secret

    passes = config.passes
    trust = TrustStore(load_public_key(passes.root_key), config.site, path=passes.trust_bundle)
    revocation = RevocationState(trust, path=passes.revocation_list)
    policy = GatePolicy(
        zone=passes.zone,
        passback=timedelta(seconds=passes.passback_s),
        anti_passback=passes.anti_passback,
        revocation_max_age=timedelta(hours=passes.revocation_max_age_h),
        stale_revocation=passes.stale_revocation,
        untrusted_clock=passes.untrusted_clock,
        untrusted_dynamic_window=timedelta(seconds=passes.untrusted_dynamic_window_s),
    )
    secret = load_site_secret(passes.site_secret_file) if passes.site_secret_file else None
    return GateState(trust=trust, revocation=revocation, policy=policy, site_secret=secret)


class _Started:
    """A reader whose driver starts in its constructor, wrapped so the agent starts it with the rest."""

    def __init__(self, build: Callable[[], Any]) -> None:
        self._build = build
        self._device: Any = None

    def start(self) -> None:
        self._device = self._build()

    @property
    def alive(self) -> bool:
        return self._device is None or getattr(self._device, "alive", True)

    def close(self) -> None:
        if self._device is not None:
            self._device.close()
