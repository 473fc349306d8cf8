"""OSDP readers on an RS-485 bus: the control panel a gate runs, over libosdp.

Wiegand is one-way, in clear and unsupervised: whoever opens a reader can record and
replay card numbers, and a cut cable looks like a quiet door.  OSDP (IEC 60839-11-5)
polls every reader several times a second, wraps replies in an AES-128 secure channel,
and lets the controller drive the reader's LED and buzzer.  libosdp (goToMain/libosdp)
implements the protocol; this module is the gate's side of it:

- one :class:`OsdpBus` per serial line (any pyserial URL: ``/dev/ttyUSB0``, a pty,
  ``socket://``), several readers on it by address;
- card reads become :class:`~drivers.cards.CardRead` (raw Wiegand bits decoded and
  parity-checked exactly as a Wiegand reader's, so a card enrolled once opens both) or a
  typed :class:`~drivers.cards.CardRejected`; keypad keys become ``KeyPress``;
- supervision is the gate's own, not libosdp's: libosdp probes a silent reader for about
  eight seconds before calling it offline and then waits five minutes before trying it
  again.  The bus watches every reply on the wire (:mod:`drivers.osdp_frames`) and calls a
  reader offline after ``offline_after_s`` without one (two seconds by default: forty
  polls missed), and restarts libosdp's state machine for it with a backoff so a mended
  cable is seen within seconds;
- the secure channel is on by default and enforced: a reader that answers but cannot
  complete the handshake (wrong key) is ``REFUSED``, and nothing it says is believed.
  Install mode gives a reader with the factory default key (SCBK-D) a fresh random key,
  once, after the key is safely in the gate's key store.

Events reach the caller on the bus thread, after libosdp's refresh and outside its lock,
so a reader's LED can be set from inside ``on_reading``.
"""

from __future__ import annotations

import contextlib
import logging
import secrets
import select
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import serial

from drivers.cards import CardRead, CardRejected, CardRejectReason, KeyPress, ReaderKind, Reading
from drivers.osdp_frames import FrameScanner
from drivers.reconnect import Backoff, describe, keep_reading
from drivers.wiegand import CARD_FORMATS, decode_bits

log = logging.getLogger("gatepost.drivers.osdp")

KEY_BYTES = 16
"""AES-128: the secure channel base key (SCBK) is sixteen bytes."""
OFFLINE_AFTER_S = 2.0
RETRY = Backoff(1.0, 10.0, jitter=0.1)
"""How soon libosdp is told to try an offline reader again, doubling while it stays away."""
TICK_S = 0.005
"""The longest the bus thread waits for bytes before refreshing libosdp's timers anyway."""
NOISE_REPORT_S = 1.0
"""Junk on the wire is reported at most this often per bus, as one rejection counting it all."""

# libosdp's constants, named once here (osdp_sys mirrors include/osdp.h).
_EVENT_CARDREAD = 1
_EVENT_KEYPRESS = 2
_EVENT_STATUS = 4
_EVENT_NOTIFICATION = 5
_NOTIFY_SC_STATUS = 1
_NOTIFY_PD_STATUS = 2
_CARD_FMT_RAW_UNSPECIFIED = 0
_CARD_FMT_RAW_WIEGAND = 1
_CARD_FMT_ASCII = 2
_STATUS_LOCAL = 2

_KEYPAD = {0x7F: "*", 0x0D: "#", ord("*"): "*", ord("#"): "#"} | {0x30 + d: str(d) for d in range(10)}
"""OSDP keypad data (SIA OSDP 2.2 §7.12): ASCII digits, DEL for ``*``, CR for ``#``."""


class LinkState(StrEnum):
    """Where a reader stands with the gate.  Stable strings: they appear in events."""

    ONLINE = "online"
    """Answering every poll, over the secure channel unless the bus is configured plain."""
    OFFLINE = "offline"
    """Not answering: a cut or shorted cable, no power, a wrong address or baud rate."""
    REFUSED = "refused"
    """Answering, but the secure channel fails: the reader's key is not the one the gate holds."""


class LedColor(StrEnum):
    OFF = "off"
    RED = "red"
    GREEN = "green"
    AMBER = "amber"


_LED_CODES = {LedColor.OFF: 0, LedColor.RED: 1, LedColor.GREEN: 2, LedColor.AMBER: 3}


@dataclass(frozen=True, slots=True)
class ReaderLink:
    """A reader came online, went offline, or was refused; ``detail`` says what was seen."""

    reader: str
    address: int
    state: LinkState
    detail: str
    at_ns: int


@dataclass(frozen=True, slots=True)
class ReaderStatus:
    """The reader's own tamper switch and power monitor (osdp_LSTATR), reported on change."""

    reader: str
    address: int
    tamper: bool
    power_failure: bool
    at_ns: int


@dataclass(frozen=True, slots=True)
class KeyInstalled:
    """Install mode gave a reader its own key and the secure channel came up with it."""

    reader: str
    address: int
    at_ns: int


BusEvent = ReaderLink | ReaderStatus | KeyInstalled


@dataclass(frozen=True, slots=True)
class OsdpReader:
    """One reader on the bus.  ``key`` is its SCBK; ``None`` with ``install`` makes one."""

    name: str
    address: int
    key: bytes | None = None
    install: bool = False

    def __post_init__(self) -> None:
        if not 0 <= self.address <= 126:
            raise ValueError(f"an OSDP address is 0..126 (127 is broadcast), got {self.address}")
        if self.key is not None and len(self.key) != KEY_BYTES:
            raise ValueError(f"an OSDP key is {KEY_BYTES} bytes, got {len(self.key)}")


class _PortChannel:
    """libosdp's channel: read, write and flush on the open serial port; every byte read is watched."""

    def __init__(
        self, port: serial.SerialBase, scanner: FrameScanner, on_packet: Callable[..., None]
    ) -> None:
        self.port = port
        self._scanner = scanner
        self._on_packet = on_packet

    def read(self, max_bytes: int) -> bytes:
        try:
            # With timeout=0 a read returns what is there; in_waiting only says whether to
            # try (for socket:// it is 1 or 0, not a count).
            data = self.port.read(max_bytes) if self.port.in_waiting else b""
        except (serial.SerialException, OSError, TypeError, AttributeError) as exc:
            # libosdp cannot carry an exception through its C frames: the bus thread
            # notices the dead port itself (_Session.failed) and reopens it.
            self._on_packet(None, exc)
            return b""
        if data:
            for packet in self._scanner.feed(data):
                self._on_packet(packet, None)
        return data

    def write(self, buf: bytes) -> int:
        try:
            return self.port.write(buf) or 0
        except (serial.SerialException, OSError, TypeError, AttributeError) as exc:
            self._on_packet(None, exc)
            return 0

    def flush(self) -> None:
        # libosdp drops what is waiting before each command; it is read (and so watched)
        # rather than discarded unseen, so noise between polls is still counted.
        with contextlib.suppress(serial.SerialException, OSError, TypeError, AttributeError):
            while self.port.in_waiting:
                data = self.port.read(4096)
                if not data:
                    break
                self._scanner.feed(data)


@dataclass
class _ReaderState:
    spec: OsdpReader
    index: int
    key: bytes | None
    secure: bool
    enforced: bool
    state: LinkState | None = None
    last_reply_ns: int = 0
    good_ns: int = 0
    """The last time the reader was answering, trusted and online."""
    sc_active: bool = False
    sc_default_key: bool = False
    lib_online: bool = False
    failures: int = 0
    retry_at_ns: int = 0
    disabling: bool = False
    status: tuple[bool, bool] = (False, False)
    installed: bool = False
    """A secure channel under the factory key (SCBK-D) was seen: install mode is giving a key."""


class OsdpBus:
    """A control panel on one serial line, with its readers; starts its thread at once.

    ``on_reading`` gets card reads, keys and rejections; ``on_event`` gets link changes,
    tamper and power reports and installed keys.  ``save_key(reader, key)`` must store a
    key durably before install mode sends it to the reader (it raises if it cannot, and
    the reader is then left as it was).  ``secure=False`` runs the bus in clear, for
    readers that have no secure channel — card numbers then cross the wire readable.
    """

    def __init__(
        self,
        url: str,
        readers: Sequence[OsdpReader],
        on_reading: Callable[[Reading], None],
        *,
        on_event: Callable[[BusEvent], None] | None = None,
        save_key: Callable[[str, bytes], None] | None = None,
        name: str = "osdp",
        baudrate: int = 115_200,
        secure: bool = True,
        offline_after_s: float = OFFLINE_AFTER_S,
        reopen_s: float = 1.0,
    ) -> None:
        if not readers:
            raise ValueError("an OSDP bus needs at least one reader")
        addresses = [reader.address for reader in readers]
        if len(set(addresses)) != len(addresses):
            raise ValueError(f"two readers share an address on bus {name}: {addresses}")
        self.url = url
        self.name = name
        self.baudrate = baudrate
        self.secure = secure
        self._on_reading = on_reading
        self._on_event = on_event
        self._save_key = save_key
        self._offline_after_ns = int(offline_after_s * 1e9)
        self._readers: list[_ReaderState] = []
        for index, spec in enumerate(readers):
            key = spec.key
            if secure and key is None and spec.install:
                if save_key is None:
                    raise ValueError(f"reader {spec.name}: install mode needs somewhere to keep the key")
                key = secrets.token_bytes(KEY_BYTES)
                try:
                    save_key(spec.name, key)  # before the reader ever hears it
                except Exception as exc:
                    # A key that is not kept must not be given: the reader would be lost at the
                    # next restart.  It stays as it is (refused), and the bus runs for the others.
                    log.error(
                        "osdp %s reader %s: cannot keep a new key, not installing: %s", name, spec.name, exc
                    )
                    key = None
            enforced = secure and key is not None and not spec.install
            self._readers.append(_ReaderState(spec, index, key, secure, enforced))
        self._by_address = {state.spec.address: state for state in self._readers}
        self._by_name = {state.spec.name: state for state in self._readers}
        self._lock = threading.Lock()
        self._pending_enforce: list[int] = []
        """Readers whose key install mode just confirmed; the session enforces the secure channel."""
        self._commands: list[tuple[int, dict[str, Any]]] = []
        self._stopping = threading.Event()
        self._connected = threading.Event()
        self._backoff = Backoff(reopen_s, reopen_s * 8, jitter=0.1)
        self._thread = threading.Thread(target=self._run, name=f"osdp-{name}", daemon=True)
        self._thread.start()

    # -- public --------------------------------------------------------------------

    @property
    def alive(self) -> bool:
        return self._thread.is_alive() or self._stopping.is_set()

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    def state(self, reader: str) -> LinkState | None:
        return self._by_name[reader].state

    def states(self) -> dict[str, str]:
        return {name: str(r.state) if r.state else "starting" for name, r in self._by_name.items()}

    def secure_channel(self, reader: str) -> bool:
        """Whether the reader is talking over the secure channel with its own key now."""
        state = self._by_name[reader]
        return state.sc_active and not state.sc_default_key

    def wait_state(self, reader: str, state: LinkState, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._by_name[reader].state is state:
                return True
            time.sleep(0.02)
        return self._by_name[reader].state is state

    def indicate(
        self, reader: str, color: LedColor, on_s: float, *, beeps: int = 0, beep_s: float = 0.1
    ) -> bool:
        """Light the reader's LED ``color`` for ``on_s`` and beep ``beeps`` times, then back to idle.

        OSDP counts LED and buzzer times in 100 ms units, so times round to the nearest
        tenth (at least one).  Returns False for an unknown reader; a reader offline just
        misses it — the decision stands, only its echo at the reader is lost.
        """
        state = self._by_name.get(reader)
        if state is None:
            return False
        tenths = max(1, min(255, round(on_s * 10)))
        commands: list[dict[str, Any]] = [
            {
                "command": 2,  # osdp_LED
                "reader": 0,
                "led_number": 0,
                "control_code": 1,  # a temporary state, then back to the permanent one
                "on_count": tenths,
                "off_count": 0,
                "on_color": _LED_CODES[color],
                "off_color": 0,
                "timer_count": tenths,
                "temporary": True,
            }
        ]
        if beeps > 0:
            commands.append(
                {
                    "command": 3,  # osdp_BUZ
                    "reader": 0,
                    "control_code": 2,  # the default tone
                    "on_count": max(1, min(255, round(beep_s * 10))),
                    "off_count": 1,
                    "rep_count": min(255, beeps),
                }
            )
        with self._lock:
            self._commands.extend((state.index, command) for command in commands)
        return True

    def close(self) -> None:
        self._stopping.set()
        if self._thread is not threading.current_thread():
            self._thread.join(timeout=3)

    def __enter__(self) -> OsdpBus:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- the bus thread ------------------------------------------------------------

    def _run(self) -> None:
        keep_reading(
            self._open,
            self._pump,
            self._close_session,
            stop=self._stopping,
            backoff=self._backoff,
            on_lost=self._lost,
            errors=(serial.SerialException, OSError, ValueError),
        )
        self._mark_all(LinkState.OFFLINE, "the gate stopped the bus", report=False)

    def _open(self) -> _Session:
        port = serial.serial_for_url(self.url, baudrate=self.baudrate, timeout=0)
        try:
            return _Session(self, port)
        except BaseException:
            port.close()
            raise

    def _close_session(self, session: _Session) -> None:
        self._connected.clear()
        session.close()
        if not self._stopping.is_set():
            self._mark_all(LinkState.OFFLINE, f"the serial port {self.url} failed")

    def _lost(self, error: Exception, opened: bool) -> None:
        if opened:
            log.warning("osdp bus %s: port %s failed: %s", self.name, self.url, describe(error))
        else:
            log.warning("osdp bus %s: cannot open %s: %s", self.name, self.url, describe(error))
            self._mark_all(LinkState.OFFLINE, f"cannot open {self.url}: {describe(error)}")

    def _pump(self, session: _Session) -> None:
        self._connected.set()
        started = time.monotonic_ns()
        for reader in self._readers:
            reader.last_reply_ns = 0
            reader.good_ns = started
        while not self._stopping.is_set():
            session.wait_readable(TICK_S)
            with self._lock:
                commands, self._commands = self._commands, []
                for index, command in commands:
                    if not session.ctx.submit_command(index, command):
                        log.debug("osdp bus %s: reader %d did not take %s", self.name, index, command)
                session.ctx.refresh()
                status, sc_status = session.ctx.status(), session.ctx.sc_status()
            if session.failed is not None:
                raise session.failed
            session.deliver()
            self._supervise(session, status, sc_status, started)

    # -- supervision -----------------------------------------------------------------

    def _supervise(self, session: _Session, status: int, sc_status: int, started_ns: int) -> None:
        now = time.monotonic_ns()
        for reader in self._readers:
            reader.lib_online = bool(status >> reader.index & 1)
            if not sc_status >> reader.index & 1:
                reader.sc_active = False
            answering = bool(reader.last_reply_ns) and now - reader.last_reply_ns < self._offline_after_ns
            trusted = not reader.secure or (reader.sc_active and not reader.sc_default_key)
            if reader.lib_online and answering and trusted:
                reader.good_ns = now
                if reader.state is not LinkState.ONLINE:
                    reader.failures = 0
                    detail = "secure channel up" if reader.secure else "in clear: no secure channel"
                    self._change(reader, LinkState.ONLINE, detail, now)
                continue
            if not answering:
                # A refused reader is not polled between retries: only a silence longer than
                # the longest retry wait says its cable is gone too.
                silence = self._offline_after_ns + (
                    int(RETRY.max_s * 1e9) if reader.state is LinkState.REFUSED else 0
                )
                quiet = now - (reader.last_reply_ns or started_ns)
                if reader.state is not LinkState.OFFLINE and quiet >= silence:
                    if reader.last_reply_ns:
                        detail = f"no answer for {(now - reader.last_reply_ns) / 1e9:.1f} s"
                    else:
                        detail = "no answer since the bus opened"
                    self._change(reader, LinkState.OFFLINE, detail, now)
            elif (
                reader.secure
                and not trusted
                and reader.state is not LinkState.REFUSED
                and now - max(started_ns, reader.good_ns) >= self._offline_after_ns
            ):
                self._change(reader, LinkState.REFUSED, self._refusal(reader), now)
            if not reader.lib_online:
                self._retry(session, reader, now)

    def _refusal(self, reader: _ReaderState) -> str:
        if reader.key is None:
            return "the gate holds no key for this reader: install its key once with install mode"
        if reader.sc_active and reader.sc_default_key:
            return "the reader still has its factory key (SCBK-D): install its key with install mode"
        return "the reader answers but the secure channel fails: its key is not the one the gate holds"

    def _retry(self, session: _Session, reader: _ReaderState, now: int) -> None:
        """Restart libosdp's state machine for a reader it gave up on (it would wait 300 s)."""
        ctx = session.ctx
        if reader.disabling:
            with self._lock:
                if not ctx.is_pd_enabled(reader.index):
                    ctx.enable_pd(reader.index)
                    reader.disabling = False
            return
        if now < reader.retry_at_ns:
            return
        reader.failures += 1
        reader.retry_at_ns = now + int(RETRY.delay(reader.failures) * 1e9)
        if reader.failures == 1:
            return  # libosdp is still working through its own first attempt
        with self._lock:
            if ctx.is_pd_enabled(reader.index):
                ctx.disable_pd(reader.index)
                reader.disabling = True

    def _change(self, reader: _ReaderState, state: LinkState, detail: str, now: int) -> None:
        previous, reader.state = reader.state, state
        if previous is state:
            return
        (log.info if state is LinkState.ONLINE else log.warning)(
            "osdp %s reader %s (address %d): %s — %s",
            self.name,
            reader.spec.name,
            reader.spec.address,
            state,
            detail,
        )
        self._emit(ReaderLink(reader.spec.name, reader.spec.address, state, detail, now))

    def _mark_all(self, state: LinkState, detail: str, *, report: bool = True) -> None:
        now = time.monotonic_ns()
        for reader in self._readers:
            reader.sc_active = False
            if reader.state is LinkState.ONLINE or (reader.state is None and report):
                if report:
                    self._change(reader, state, detail, now)
                else:
                    reader.state = state

    def _emit(self, event: BusEvent) -> None:
        if self._on_event is None:
            return
        try:
            self._on_event(event)
        except Exception:
            log.exception("osdp bus %s: on_event failed", self.name)

    def _deliver(self, reading: Reading) -> None:
        try:
            self._on_reading(reading)
        except Exception:
            log.exception("osdp bus %s: on_reading failed", self.name)

    # -- what libosdp reports (called by the session, on the bus thread) ------------------

    def _packet(self, address: int, reply: bool, now: int) -> None:
        reader = self._by_address.get(address)
        if reader is not None and reply:
            reader.last_reply_ns = now

    def _lib_event(self, index: int, event: dict[str, Any], now: int) -> None:
        reader = self._readers[index]
        kind = event.get("event")
        if kind == _EVENT_NOTIFICATION:
            self._notification(reader, event, now)
            return
        if reader.secure and not (reader.sc_active and not reader.sc_default_key):
            # Only possible in install mode, before the reader has its key: nothing said
            # in clear (or under the published default key) is believed.
            what = {_EVENT_CARDREAD: "card read", _EVENT_KEYPRESS: "key press"}.get(kind, "report")
            self._deliver(
                CardRejected(
                    ReaderKind.OSDP,
                    CardRejectReason.INSECURE,
                    f"{what} outside the secure channel",
                    0,
                    "",
                    now,
                    reader.spec.name,
                )
            )
            return
        if kind == _EVENT_CARDREAD:
            self._deliver(card_reading(event, now, reader.spec.name))
        elif kind == _EVENT_KEYPRESS:
            for reading in key_readings(event, now, reader.spec.name):
                self._deliver(reading)
        elif kind == _EVENT_STATUS and event.get("type") == _STATUS_LOCAL:
            report = bytes(event.get("report") or b"")
            status = (bool(report[0]) if report else False, bool(report[1]) if len(report) > 1 else False)
            if status != reader.status:
                reader.status = status
                self._emit(ReaderStatus(reader.spec.name, reader.spec.address, status[0], status[1], now))

    def _notification(self, reader: _ReaderState, event: dict[str, Any], now: int) -> None:
        kind, arg0, arg1 = event.get("type"), event.get("arg0"), event.get("arg1")
        if kind == _NOTIFY_SC_STATUS:
            reader.sc_active, reader.sc_default_key = bool(arg0), bool(arg0) and bool(arg1)
            reader.installed = reader.installed or reader.sc_default_key
            if reader.sc_active and not reader.sc_default_key and reader.secure and not reader.enforced:
                # Install mode reached the reader's own key: from now on only it is accepted.
                # (Said as an event only if this run gave it, not if the reader had it already.)
                reader.enforced = True
                if reader.installed:
                    self._emit(KeyInstalled(reader.spec.name, reader.spec.address, now))
                self._pending_enforce.append(reader.index)
        elif kind == _NOTIFY_PD_STATUS:
            reader.lib_online = bool(arg0)


class _Session:
    """One open port and the libosdp control panel on it."""

    def __init__(self, bus: OsdpBus, port: serial.SerialBase) -> None:
        import osdp_sys

        self.bus = bus
        self.port = port
        self.failed: Exception | None = None
        self._events: list[tuple[int, dict[str, Any], int]] = []
        self._scanner = FrameScanner()
        self._noise_at_ns = time.monotonic_ns()
        self._fd = _fileno(port)
        channel = _PortChannel(port, self._scanner, self._on_packet)
        osdp_sys.set_loglevel(osdp_sys.LOG_ERROR if log.isEnabledFor(logging.DEBUG) else osdp_sys.LOG_EMERG)
        info = []
        for reader in bus._readers:
            flags = osdp_sys.FLAG_ENABLE_NOTIFICATION
            if reader.enforced:
                flags |= osdp_sys.FLAG_ENFORCE_SECURE
            info.append(
                {
                    "name": reader.spec.name,
                    "address": reader.spec.address,
                    "baud_rate": bus.baudrate,
                    "flags": flags,
                    "scbk": reader.key if reader.secure else None,
                    "channel": channel,
                    "version": 1,
                    "model": 1,
                    "vendor_code": 0,
                    "serial_number": 0,
                    "firmware_version": 0,
                }
            )
        self.ctx = osdp_sys.ControlPanel(info)
        self.ctx.set_event_callback(self._on_event)

    def _on_packet(self, packet: Any, error: Exception | None) -> None:
        if error is not None:
            self.failed = self.failed or error
            return
        self.bus._packet(packet.address, packet.reply, time.monotonic_ns())

    def _on_event(self, index: int, event: dict[str, Any]) -> int:
        self._events.append((index, event, time.monotonic_ns()))
        return 0

    def wait_readable(self, timeout: float) -> None:
        if self._fd is None:
            time.sleep(min(timeout, 0.001))
            return
        with contextlib.suppress(OSError, ValueError):
            select.select([self._fd], [], [], timeout)

    def deliver(self) -> None:
        events, self._events = self._events, []
        for index, event, at_ns in events:
            self.bus._lib_event(index, event, at_ns)
        enforce = self.bus._pending_enforce
        while enforce:
            index = enforce.pop()
            import osdp_sys

            with self.bus._lock:
                self.ctx.set_flag(index, osdp_sys.FLAG_ENFORCE_SECURE)
        now = time.monotonic_ns()
        if now - self._noise_at_ns >= NOISE_REPORT_S * 1e9:
            self._noise_at_ns = now
            junk, bad = self._scanner.take_junk()
            if junk or bad:
                parts = []
                if junk:
                    parts.append(f"{junk} byte{'s' if junk != 1 else ''} outside any packet")
                if bad:
                    parts.append(f"{bad} packet{'s' if bad != 1 else ''} failing the CRC or checksum")
                reason = CardRejectReason.CHECKSUM if bad and not junk else CardRejectReason.NOISE
                self.bus._deliver(
                    CardRejected(ReaderKind.OSDP, reason, ", ".join(parts), junk * 8, "", now, self.bus.name)
                )

    def close(self) -> None:
        self.ctx = _Closed()
        with contextlib.suppress(Exception):
            self.port.close()


class _Closed:
    """What a session's ``ctx`` becomes after close: every late call is a harmless no-op."""

    def __getattr__(self, name: str) -> Callable[..., Any]:
        return lambda *args, **kwargs: 0


def _fileno(port: serial.SerialBase) -> int | None:
    """The descriptor to wait on, for a tty or a ``socket://`` port; ``None``: poll instead."""
    sock = getattr(port, "_socket", None)
    if sock is not None:
        with contextlib.suppress(OSError, ValueError):
            return int(sock.fileno())
    with contextlib.suppress(AttributeError, OSError, ValueError, serial.SerialException):
        return int(port.fileno())
    return None


# -- card data -------------------------------------------------------------------------


def card_reading(event: dict[str, Any], at_ns: int, reader: str) -> CardRead | CardRejected:
    """An osdp_RAW or osdp_FMT card read as a reading, checked as strictly as a Wiegand frame."""
    data = bytes(event.get("data") or b"")
    fmt = event.get("format")
    length = int(event.get("length") or 0)

    def reject(
        reason: CardRejectReason, detail: str, bits: int = length, raw: str = data.hex()
    ) -> CardRejected:
        return CardRejected(ReaderKind.OSDP, reason, detail, bits, raw, at_ns, reader)

    if fmt == _CARD_FMT_ASCII:
        text = data.decode("ascii", "replace")
        if not data or not text.isprintable() or not text.isascii():
            return reject(
                CardRejectReason.FORMAT, "a formatted card read that is not printable ASCII", len(data) * 8
            )
        return CardRead(ReaderKind.OSDP, 0, len(data) * 8, text, None, at_ns, reader)
    if fmt not in (_CARD_FMT_RAW_WIEGAND, _CARD_FMT_RAW_UNSPECIFIED):
        return reject(CardRejectReason.FORMAT, f"card format {fmt!r} is none OSDP defines")
    if length <= 0 or (length + 7) // 8 != len(data):
        return reject(CardRejectReason.LENGTH, f"{length} bits announced, {len(data)} bytes sent")
    bits = format(int.from_bytes(data, "big"), f"0{len(data) * 8}b")[:length]
    if fmt == _CARD_FMT_RAW_WIEGAND and length in CARD_FORMATS:
        decoded = decode_bits(bits, at_ns, reader=reader, keypad=False)
        if isinstance(decoded, CardRejected):
            return CardRejected(ReaderKind.OSDP, decoded.reason, decoded.detail, length, bits, at_ns, reader)
        assert isinstance(decoded, CardRead)
        return CardRead(ReaderKind.OSDP, decoded.card_id, length, bits, decoded.facility, at_ns, reader)
    if "1" not in bits:
        return reject(CardRejectReason.ALL_ZERO, "every bit is zero", raw=bits)
    return CardRead(ReaderKind.OSDP, int(bits, 2), length, bits, None, at_ns, reader)


def key_readings(event: dict[str, Any], at_ns: int, reader: str) -> list[KeyPress | CardRejected]:
    """One ``KeyPress`` per key in an osdp_KEYPPAD reply; a byte that is no key rejects itself."""
    out: list[KeyPress | CardRejected] = []
    for byte in bytes(event.get("data") or b""):
        key = _KEYPAD.get(byte)
        if key is None:
            out.append(
                CardRejected(
                    ReaderKind.OSDP,
                    CardRejectReason.FORMAT,
                    f"keypad byte 0x{byte:02X} is no key",
                    8,
                    "",
                    at_ns,
                    reader,
                )
            )
        else:
            out.append(KeyPress(key, 8, f"{byte:02X}", at_ns, reader, ReaderKind.OSDP))
    return out
