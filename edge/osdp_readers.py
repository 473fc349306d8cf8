"""The agent's OSDP readers: buses from ``[[osdp]]``, their keys, their events, their lights.

The driver (:mod:`drivers.osdp`) knows the wire; this module knows the gate: where a
reader's key is kept, which event each thing a bus reports becomes, and which LED and
buzzer pattern a decision shows at the reader — the guard's own (edge/feedback.py), so
a green light and two short beeps mean the same at the reader as on the light tower.

Cards and keys go to the agent's ``on_reading`` exactly as from every other reader, and
so into the same ``present()``.
"""

from __future__ import annotations

import contextlib
import logging
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from drivers.cards import Reading
from drivers.osdp import (
    KEY_BYTES,
    BusEvent,
    KeyInstalled,
    LedColor,
    LinkState,
    OsdpBus,
    OsdpReader,
    ReaderLink,
    ReaderStatus,
)
from edge.feedback import Light, Pattern
from edge.osdp_config import OsdpBusConfig
from protocol import events as ev
from protocol.errors import GatepostError

log = logging.getLogger("gatepost.edge.osdp")

_LINK_EVENTS = {
    LinkState.ONLINE: ev.READER_ONLINE,
    LinkState.OFFLINE: ev.READER_OFFLINE,
    LinkState.REFUSED: ev.READER_REFUSED,
}


class KeyFileError(GatepostError, ValueError):
    """A reader's key file exists but holds no usable key."""


def load_key(path: Path) -> bytes | None:
    """The key in ``path`` (32 hex digits), ``None`` if there is no such file."""
    try:
        text = path.read_text(encoding="ascii").strip()
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as exc:
        raise KeyFileError(f"{path}: cannot read the key: {exc}") from None
    try:
        key = bytes.fromhex(text)
    except ValueError:
        raise KeyFileError(f"{path}: not a key: {KEY_BYTES * 2} hex digits expected") from None
    if len(key) != KEY_BYTES:
        raise KeyFileError(f"{path}: a key is {KEY_BYTES * 2} hex digits, found {len(text)}")
    return key


def save_key(path: Path, key: bytes) -> None:
    """Keep a new key durably, readable by the gate's user only, before any reader hears it.

    Never overwrites: install mode makes a key only for a reader that has none, and a key
    already given to a reader is the only one it will accept.
    """
    if len(key) != KEY_BYTES:
        raise ValueError(f"an OSDP key is {KEY_BYTES} bytes")
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, key.hex().encode() + b"\n")
        os.fsync(fd)
        os.close(fd)
        fd = -1
        os.link(temporary, path)  # fails if a key appeared meanwhile: never replace one
    finally:
        if fd >= 0:
            os.close(fd)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)


class OsdpReaders:
    """Every OSDP bus of the gate, started and stopped with the agent's other readers."""

    def __init__(
        self,
        buses: list[OsdpBusConfig],
        on_reading: Callable[[Reading], None],
        record: Callable[[str, dict[str, Any]], Any],
        *,
        states: dict[str, str] | None = None,
        on_change: Callable[[], None] | None = None,
    ) -> None:
        self._configs = buses
        self._on_reading = on_reading
        self._record = record
        self._states = states if states is not None else {}
        self._on_change = on_change
        self._buses: list[OsdpBus] = []
        self._bus_of: dict[str, OsdpBus] = {}
        self._links: dict[str, LinkState] = {}
        self._status: dict[str, tuple[bool, bool]] = {}

    def start(self) -> None:
        for config in self._configs:
            readers = [self._reader(config, reader) for reader in config.readers]
            paths = {reader.name: config.key_path(reader) for reader in config.readers}
            bus = OsdpBus(
                config.url,
                readers,
                self._on_reading,
                on_event=lambda event, c=config: self._event(c, event),
                save_key=lambda name, key, p=paths: save_key(p[name], key),
                name=config.name,
                baudrate=config.baudrate,
                secure=config.secure,
                offline_after_s=config.offline_after_s,
            )
            self._buses.append(bus)
            for reader in config.readers:
                self._bus_of[reader.name] = bus
                self._states[reader.name] = "starting"

    def _reader(self, config: OsdpBusConfig, reader: Any) -> OsdpReader:
        key = None
        if config.secure:
            try:
                key = load_key(config.key_path(reader))
            except KeyFileError as exc:
                # The reader is then refused, with an event saying so; the gate runs on.
                log.error("osdp reader %s: %s", reader.name, exc)
            if key is None and not config.installing(reader):
                log.error(
                    "osdp reader %s: no key in %s and install mode is off: the reader will be refused",
                    reader.name,
                    config.key_path(reader),
                )
        return OsdpReader(reader.name, reader.address, key, install=config.installing(reader))

    @property
    def alive(self) -> bool:
        return all(bus.alive for bus in self._buses)

    def close(self) -> None:
        for bus in self._buses:
            bus.close()

    def show(self, reader: str, pattern: Pattern) -> bool:
        """The decision's pattern at the OSDP reader it was made at; False if it is not one."""
        bus = self._bus_of.get(reader)
        if bus is None:
            return False
        color = LedColor.GREEN if pattern.light is Light.GREEN else LedColor.RED
        return bus.indicate(reader, color, pattern.light_s, beeps=pattern.beeps, beep_s=pattern.beep_s)

    def _event(self, config: OsdpBusConfig, event: BusEvent) -> None:
        where = {"reader": event.reader, "bus": config.name, "address": event.address}
        if isinstance(event, ReaderLink):
            self._links[event.reader] = event.state
            self._states[event.reader] = str(event.state)
            data: dict[str, Any] = {**where, "detail": event.detail}
            if event.state is LinkState.ONLINE:
                # Whether every OSDP reader of the gate is back: the console closes the alarm then.
                data["offline_readers"] = sum(1 for s in self._links.values() if s is LinkState.OFFLINE)
                data["refused_readers"] = sum(1 for s in self._links.values() if s is LinkState.REFUSED)
            self._record(_LINK_EVENTS[event.state], data)
            if self._on_change is not None:
                self._on_change()
        elif isinstance(event, ReaderStatus):
            tamper, power = self._status.get(event.reader, (False, False))
            self._status[event.reader] = (event.tamper, event.power_failure)
            if event.tamper != tamper:
                self._record(ev.READER_TAMPER if event.tamper else ev.READER_TAMPER_CLEARED, where)
            if event.power_failure != power:
                self._record(ev.READER_POWER, {**where, "failure": event.power_failure})
        elif isinstance(event, KeyInstalled):
            self._record(ev.READER_KEY_INSTALLED, where)
