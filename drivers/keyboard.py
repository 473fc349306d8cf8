"""USB card readers in keyboard mode, read through evdev and grabbed exclusively.

Many cheap 125 kHz and 13.56 MHz USB readers pretend to be a keyboard and "type" the
card number followed by Enter.  Grabbing the input device keeps those keystrokes out of
the console or any desktop session (and keeps a real keyboard's typing out of the card
stream).  The decoding is a pure class fed key names, tested without a device; the
``evdev`` package is optional and only :class:`KeyboardReader` needs it.
"""

from __future__ import annotations

import contextlib
import logging
import select
import threading
import time
from collections.abc import Callable
from typing import Any

from drivers.cards import (
    CardRead,
    CardRejected,
    CardRejectReason,
    ReaderKind,
    ReaderUnavailableError,
    Reading,
)

try:  # evdev is optional: only Linux machines with a keyboard-mode reader need it
    import evdev
    from evdev import ecodes
except ImportError:  # pragma: no cover - depends on the machine
    evdev = None
    ecodes = None

log = logging.getLogger("gatepost.drivers.keyboard")

KEY_GAP_NS = 100_000_000
"""A reader types a whole number in milliseconds; a longer pause abandons the partial input."""
MAX_CHARS = 20

_ENTER = frozenset({"KEY_ENTER", "KEY_KPENTER"})
_CHARS = {f"KEY_{d}": d for d in "0123456789"} | {f"KEY_KP{d}": d for d in "0123456789"}
_HEX = {f"KEY_{c}": c for c in "ABCDEF"}
_IGNORED = frozenset({"KEY_LEFTSHIFT", "KEY_RIGHTSHIFT", "KEY_NUMLOCK"})


class KeyboardDecoder:
    """Key-down names (``"KEY_1"``, ``"KEY_ENTER"``) in, card readings out.  Pure."""

    def __init__(
        self,
        *,
        reader: str = "keyboard",
        base: int = 10,
        key_gap_ns: int = KEY_GAP_NS,
        max_chars: int = MAX_CHARS,
    ) -> None:
        if base not in (10, 16):
            raise ValueError("keyboard readers type decimal or hex numbers")
        self.reader = reader
        self._base = base
        self._key_gap_ns = key_gap_ns
        self._max_chars = max_chars
        self._chars: list[str] = []
        self._bad: str | None = None
        self._first_ns = 0
        self._last_ns = 0

    def deadline_ns(self) -> int | None:
        return self._last_ns + self._key_gap_ns if self._chars or self._bad else None

    def _reject(self, reason: CardRejectReason, detail: str) -> CardRejected:
        raw = "".join(self._chars)[:64]
        rejected = CardRejected(ReaderKind.KEYBOARD, reason, detail, 0, raw, self._first_ns, self.reader)
        self._chars, self._bad = [], None
        return rejected

    def poll(self, now_ns: int) -> list[Reading]:
        if (self._chars or self._bad) and now_ns - self._last_ns >= self._key_gap_ns:
            return [self._reject(CardRejectReason.TRUNCATED, "typing stopped before Enter")]
        return []

    def key(self, name: str, now_ns: int) -> list[Reading]:
        out = self.poll(now_ns)
        if name in _IGNORED:
            return out
        if not self._chars and self._bad is None:
            self._first_ns = now_ns
        self._last_ns = now_ns
        if name in _ENTER:
            out.append(self._finish())
            return out
        char = _CHARS.get(name) or (_HEX.get(name) if self._base == 16 else None)
        if char is None:
            self._bad = self._bad or name
        elif len(self._chars) < self._max_chars + 1:
            self._chars.append(char)
        return out

    def _finish(self) -> Reading:
        if self._bad is not None:
            return self._reject(CardRejectReason.FORMAT, f"{self._bad} is not part of a card number")
        if not self._chars:
            return self._reject(CardRejectReason.LENGTH, "Enter without a number")
        if len(self._chars) > self._max_chars:
            return self._reject(CardRejectReason.LENGTH, f"more than {self._max_chars} characters")
        text = "".join(self._chars)
        card_id = int(text, self._base)
        if card_id == 0:
            return self._reject(CardRejectReason.ALL_ZERO, "card number is all zero")
        self._chars = []
        return CardRead(ReaderKind.KEYBOARD, card_id, 0, text, None, self._first_ns, self.reader)


def _key_name(code: int) -> str:
    name: Any = ecodes.KEY.get(code, f"KEY_{code}") if ecodes is not None else f"KEY_{code}"
    return name[0] if isinstance(name, list | tuple) else str(name)


class KeyboardReader:
    """A keyboard-mode reader at ``/dev/input/eventN`` (better: a ``/dev/input/by-id/`` path).

    Raises :class:`~drivers.cards.ReaderUnavailableError` when evdev is not installed or
    the device cannot be opened and grabbed.
    """

    def __init__(
        self,
        path: str,
        on_reading: Callable[[Reading], None],
        *,
        name: str = "keyboard",
        decoder: KeyboardDecoder | None = None,
        grab: bool = True,
    ) -> None:
        if evdev is None:
            raise ReaderUnavailableError("keyboard-mode readers need the 'evdev' package")
        self.name = name
        self._on_reading = on_reading
        self._decoder = decoder or KeyboardDecoder(reader=name)
        self._stopping = threading.Event()
        try:
            self._device = evdev.InputDevice(path)
            if grab:
                self._device.grab()
        except OSError as exc:
            raise ReaderUnavailableError(f"cannot open and grab {path}: {exc}") from exc
        self._thread = threading.Thread(target=self._run, name=f"keyboard-{name}", daemon=True)
        self._thread.start()

    def _deliver(self, readings: list[Reading]) -> None:
        for reading in readings:
            try:
                self._on_reading(reading)
            except Exception:
                log.exception("reader %s: on_reading failed", self.name)

    def _run(self) -> None:
        fd = self._device.fd
        while not self._stopping.is_set():
            try:
                ready, _, _ = select.select([fd], [], [], 0.05)
                now = time.monotonic_ns()
                if not ready:
                    self._deliver(self._decoder.poll(now))
                    continue
                for event in self._device.read():
                    if event.type == ecodes.EV_KEY and event.value == 1:
                        self._deliver(self._decoder.key(_key_name(event.code), time.monotonic_ns()))
            except OSError as exc:
                log.warning("reader %s: device gone: %s", self.name, exc)
                return

    def close(self) -> None:
        self._stopping.set()
        if self._thread is not threading.current_thread():
            self._thread.join(timeout=2)
        with contextlib.suppress(OSError):
            self._device.ungrab()
        self._device.close()
