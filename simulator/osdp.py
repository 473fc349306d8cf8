"""OSDP readers on a simulated RS-485 bus, built on libosdp's peripheral device.

Each :class:`SimulatedOsdpReader` is a real libosdp PD — the same state machine, secure
channel and packet code a reader's firmware runs — so the gate's control panel is
tested against the protocol, not against a stand-in for it.  The bus is what a twisted
pair is: every reader hears every command, and answers only to its own address.  The gate
reaches it through a pseudo-terminal behind a stable path (as ``/dev/ttyUSB0`` would be)
or a ``socket://`` port on loopback.

Faults a field engineer meets are one call each: :meth:`SimulatedOsdpReader.cut` (the
cable to one reader cut or shorted: it hears and says nothing), :meth:`SimulatedOsdpBus.cut`
(the whole bus), :meth:`SimulatedOsdpReader.tamper`, :meth:`SimulatedOsdpReader.power`,
and :meth:`SimulatedOsdpBus.inject` (bytes on the wire from nowhere).

A pty has no baud rate: bytes arrive as fast as the kernel moves them, so timings
measured here leave out the wire time (about 87 µs a byte at 115,200 baud).
"""

from __future__ import annotations

import contextlib
import logging
import select
import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from drivers.wiegand import H10301, WiegandFormat
from simulator.pty import DeviceUnplugged, PseudoTerminal

log = logging.getLogger("gatepost.simulator.osdp")

_LED_COLORS = {0: "off", 1: "red", 2: "green", 3: "amber", 4: "blue"}
_KEYPAD = {"*": 0x7F, "#": 0x0D}


def _osdp_sys() -> Any:
    import osdp_sys

    return osdp_sys


class _ReaderChannel:
    """One reader's end of the bus: it reads everything the gate sent, and writes onto the wire."""

    def __init__(self, reader: SimulatedOsdpReader) -> None:
        self._reader = reader

    def read(self, max_bytes: int) -> bytes:
        return self._reader._take(max_bytes)

    def write(self, buf: bytes) -> int:
        return self._reader._send(bytes(buf))

    def flush(self) -> None:
        self._reader._drop_input()


class SimulatedOsdpReader:
    """A card reader with a keypad, an LED, a buzzer and a tamper switch, at one address.

    ``key`` is its secure channel base key; ``None`` is a reader fresh from the factory,
    in install mode (it accepts the default key and takes the first key the gate sets,
    and keeps it, as a reader keeps it in flash).  ``secure=False`` is a reader with no
    secure channel at all.
    """

    def __init__(
        self,
        bus: SimulatedOsdpBus,
        address: int,
        *,
        key: bytes | None = None,
        secure: bool = True,
        name: str | None = None,
    ) -> None:
        self.bus = bus
        self.address = address
        self.name = name or f"osdp-{address}"
        self.key = key
        self.secure = secure
        self.commands: list[dict[str, Any]] = []
        """Every command the gate sent this reader (LED, buzzer, key set), in order."""
        self.on_command: Callable[[dict[str, Any]], None] | None = None
        self.writes: list[tuple[int, int]] = []
        """(monotonic ns after the write, bytes) for each packet this reader put on the wire."""
        self._inbox = bytearray()
        self._lock = threading.Lock()
        self._cut = False
        self._tamper = False
        self._power_failure = False
        self.pd: Any = None
        self._build()

    def _build(self) -> None:
        osdp_sys = _osdp_sys()
        capabilities = [
            {"function_code": osdp_sys.CAP_READER_LED_CONTROL, "compliance_level": 1, "num_items": 1},
            {"function_code": osdp_sys.CAP_READER_AUDIBLE_OUTPUT, "compliance_level": 1, "num_items": 1},
            {"function_code": osdp_sys.CAP_CARD_DATA_FORMAT, "compliance_level": 1, "num_items": 1},
            {"function_code": osdp_sys.CAP_CHECK_CHARACTER_SUPPORT, "compliance_level": 1, "num_items": 1},
        ]
        if self.secure:
            capabilities.append(
                {"function_code": osdp_sys.CAP_COMMUNICATION_SECURITY, "compliance_level": 1, "num_items": 1}
            )
        info = {
            "name": self.name,
            "address": self.address,
            "baud_rate": 115_200,
            "flags": osdp_sys.FLAG_INSTALL_MODE if self.secure and self.key is None else 0,
            "scbk": self.key if self.secure else None,
            "channel": _ReaderChannel(self),
            "version": 1,
            "model": 1,
            "vendor_code": 0x00_6761,
            "serial_number": 0x6770_0000 + self.address,
            "firmware_version": 1,
        }
        self.pd = osdp_sys.PeripheralDevice(info, capabilities=capabilities)
        self.pd.set_command_callback(self._command)

    # -- what a person or a fault does ---------------------------------------------------

    def present_bits(self, bits: str) -> None:
        """A card whose raw Wiegand bits (``"0"``/``"1"``, first bit first) the reader sends."""
        osdp_sys = _osdp_sys()
        padded = bits + "0" * (-len(bits) % 8)
        data = int(padded, 2).to_bytes(len(padded) // 8, "big") if bits else b""
        self._submit(
            {
                "event": osdp_sys.EVENT_CARDREAD,
                "reader_no": 0,
                "direction": 0,
                "length": len(bits),
                "format": osdp_sys.CARD_FMT_RAW_WIEGAND,
                "data": data,
            }
        )

    def present_card(self, facility: int, card: int, fmt: WiegandFormat = H10301) -> str:
        """A card of a Wiegand format; returns the bits sent."""
        bits = fmt.encode(facility, card)
        self.present_bits(bits)
        return bits

    def keypad(self, keys: str) -> None:
        data = bytes(_KEYPAD.get(key, ord(key)) for key in keys)
        self._submit({"event": _osdp_sys().EVENT_KEYPRESS, "reader_no": 0, "data": data})

    def tamper(self, opened: bool = True) -> None:
        self._tamper = opened
        self._status()

    def power(self, failed: bool = True) -> None:
        self._power_failure = failed
        self._status()

    def _status(self) -> None:
        osdp_sys = _osdp_sys()
        report = bytes([int(self._tamper), int(self._power_failure)])
        self._submit({"event": osdp_sys.EVENT_STATUS, "type": osdp_sys.STATUS_REPORT_LOCAL, "report": report})

    def cut(self) -> None:
        """Cut (or short) this reader's cable: it hears nothing and says nothing."""
        with self._lock:
            self._cut = True
            self._inbox.clear()

    def reconnect(self) -> None:
        with self._lock:
            self._cut = False

    def power_cycle(self) -> None:
        """Off and on again: a fresh PD that keeps only its key, as a reader's flash does."""
        with self.bus._refresh_lock:
            self.pd = None
            self._inbox.clear()
            self._build()

    @property
    def online(self) -> bool:
        return bool(self.pd is not None and self.pd.is_online())

    @property
    def secure_channel(self) -> bool:
        return bool(self.pd is not None and self.pd.is_sc_active())

    def leds(self) -> list[str]:
        """The colours the gate lit, in order."""
        osdp_sys = _osdp_sys()
        return [
            _LED_COLORS.get(command.get("on_color", 0), "?")
            for command in self.commands
            if command.get("command") == osdp_sys.CMD_LED
        ]

    def beeps(self) -> list[int]:
        osdp_sys = _osdp_sys()
        return [int(c.get("rep_count", 0)) for c in self.commands if c.get("command") == osdp_sys.CMD_BUZZER]

    # -- the wire --------------------------------------------------------------------

    def _submit(self, event: dict[str, Any]) -> None:
        with self.bus._refresh_lock:
            if not self.pd.submit_event(event):
                raise RuntimeError(f"reader {self.name} refused the event {event!r}")

    def _command(self, command: dict[str, Any]) -> tuple[int, Any]:
        self.commands.append(command)
        osdp_sys = _osdp_sys()
        if command.get("command") == osdp_sys.CMD_KEYSET:
            self.key = bytes(command["data"])  # kept, as in the reader's flash
        if self.on_command is not None:
            self.on_command(command)
        return 0, None

    def _feed(self, data: bytes) -> None:
        with self._lock:
            if not self._cut:
                self._inbox += data

    def _take(self, max_bytes: int) -> bytes:
        with self._lock:
            data = bytes(self._inbox[:max_bytes])
            del self._inbox[:max_bytes]
            return data

    def _drop_input(self) -> None:
        with self._lock:
            self._inbox.clear()

    def _send(self, data: bytes) -> int:
        with self._lock:
            if self._cut:
                return len(data)  # into a cut cable
        self.bus._to_gate(data)
        self.writes.append((time.monotonic_ns(), len(data)))
        if len(self.writes) > 10_000:
            del self.writes[:5_000]
        return len(data)


class SimulatedOsdpBus:
    """An RS-485 bus with simulated readers, which the gate reaches at :attr:`url`.

    Give ``link`` for a pseudo-terminal behind that path, or nothing for a ``socket://``
    port on 127.0.0.1 (one gate at a time, as one controller per bus).  ``tap`` sees every
    byte on the wire, both ways, as a probe clipped onto A and B would.
    """

    def __init__(
        self, link: Path | str | None = None, *, tap: Callable[[str, bytes], None] | None = None
    ) -> None:
        osdp_log_quiet()
        self.readers: list[SimulatedOsdpReader] = []
        self.tap = tap
        self._refresh_lock = threading.RLock()
        self._stopping = threading.Event()
        self._cut = False
        self._pty: PseudoTerminal | None = None
        self._server: socket.socket | None = None
        self._client: socket.socket | None = None
        self._client_lock = threading.Lock()
        if link is not None:
            self._pty = PseudoTerminal(link)
            self._pty.plug()
            self.url = str(link)
        else:
            self._server = socket.create_server(("127.0.0.1", 0))
            self.url = f"socket://127.0.0.1:{self._server.getsockname()[1]}"
        self._threads: list[threading.Thread] = []

    def add_reader(
        self, address: int, *, key: bytes | None = None, secure: bool = True, name: str | None = None
    ) -> SimulatedOsdpReader:
        reader = SimulatedOsdpReader(self, address, key=key, secure=secure, name=name)
        with self._refresh_lock:
            self.readers.append(reader)
        return reader

    def start(self) -> SimulatedOsdpBus:
        for target, name in ((self._refresh, "refresh"), (self._pump, "pump")):
            thread = threading.Thread(target=target, name=f"sim-osdp-{name}", daemon=True)
            thread.start()
            self._threads.append(thread)
        return self

    def cut(self) -> None:
        """Cut the bus between the gate and every reader."""
        self._cut = True

    def reconnect(self) -> None:
        self._cut = False

    def inject(self, data: bytes) -> None:
        """Bytes toward the gate from nobody: noise, a forged reply, a second controller."""
        self._to_gate(data, forced=True)

    def close(self) -> None:
        self._stopping.set()
        for thread in self._threads:
            thread.join(timeout=2)
        if self._pty is not None:
            self._pty.close()
        with self._client_lock:
            if self._client is not None:
                self._client.close()
                self._client = None
        if self._server is not None:
            self._server.close()

    def __enter__(self) -> SimulatedOsdpBus:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- inside ----------------------------------------------------------------------

    def _to_gate(self, data: bytes, *, forced: bool = False) -> None:
        if self._cut and not forced:
            return
        if self.tap is not None:
            self.tap("reader", data)
        if self._pty is not None:
            with contextlib.suppress(DeviceUnplugged, TimeoutError):
                self._pty.write(data, timeout=0.2)
            return
        with self._client_lock:
            client = self._client
        if client is not None:
            with contextlib.suppress(OSError):
                client.sendall(data)

    def _from_gate(self, data: bytes) -> None:
        if self.tap is not None:
            self.tap("gate", data)
        if self._cut:
            return
        for reader in self.readers:
            reader._feed(data)

    def _refresh(self) -> None:
        while not self._stopping.is_set():
            with self._refresh_lock:
                for reader in self.readers:
                    if reader.pd is not None:
                        reader.pd.refresh()
            time.sleep(0.001)

    def _pump(self) -> None:
        if self._pty is not None:
            self._pump_pty(self._pty)
        else:
            self._pump_socket()

    def _pump_pty(self, pty: PseudoTerminal) -> None:
        while not self._stopping.is_set():
            fd = pty.fileno()
            if fd is None:
                return
            with contextlib.suppress(OSError, ValueError):
                select.select([fd], [], [], 0.05)
            try:
                data = pty.read()
            except DeviceUnplugged:
                return
            if data:
                self._from_gate(data)

    def _pump_socket(self) -> None:
        assert self._server is not None
        self._server.settimeout(0.1)
        while not self._stopping.is_set():
            try:
                client, _ = self._server.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            client.settimeout(0.1)
            with self._client_lock:
                self._client = client
            while not self._stopping.is_set():
                try:
                    data = client.recv(4096)
                except TimeoutError:
                    continue
                except OSError:
                    break
                if not data:
                    break
                self._from_gate(data)
            with self._client_lock:
                self._client = None
            with contextlib.suppress(OSError):
                client.close()


def demo_key(seed: str) -> bytes:
    """A reproducible 16-byte key for the demo site's readers (never for a real gate)."""
    import hashlib

    return hashlib.sha256(f"gatepost-demo-osdp:{seed}".encode()).digest()[:16]


def osdp_log_quiet() -> None:
    """libosdp prints its own log to stderr; the simulator keeps it to emergencies."""
    _osdp_sys().set_loglevel(_osdp_sys().LOG_EMERG)


class OsdpPeople:
    """Residents tapping cards at OSDP readers now and then; a share of strangers' cards.

    ``cards`` are ``facility:card`` strings of H10301 cards.  Each arrival picks a reader
    and a card and presents it; the gate's answer shows at the reader (its LED commands).
    """

    def __init__(
        self,
        readers: list[SimulatedOsdpReader],
        cards: list[str],
        *,
        every_s: float = 6.0,
        unknown_share: float = 0.1,
        seed: int | None = None,
    ) -> None:
        import random

        if not readers or not cards:
            raise ValueError("OSDP people need readers and cards")
        self._readers = readers
        self._cards = [tuple(int(part) for part in card.split(":")) for card in cards]
        self._every_s = every_s
        self._unknown_share = unknown_share
        self._random = random.Random(seed)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="sim-osdp-people", daemon=True)
        self.presented = 0

    def start(self) -> OsdpPeople:
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.wait(self._random.expovariate(1 / self._every_s)):
            reader = self._random.choice(self._readers)
            if self._random.random() < self._unknown_share:
                facility, card = 99, self._random.randrange(1, 65535)
            else:
                facility, card = self._random.choice(self._cards)
            try:
                reader.present_card(facility, card)
                self.presented += 1
            except RuntimeError as exc:  # the reader is offline: nobody hears the tap
                log.debug("card not sent: %s", exc)

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=2)
