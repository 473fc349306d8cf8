"""A serial pass scanner: the port, a reader thread, and reconnection when it vanishes.

The port is any pyserial URL, so configuration alone chooses the hardware: ``/dev/ttyACM0``
for a USB scanner in CDC mode, ``socket://host:4001`` for one behind a serial server,
``spy:///dev/ttyACM0`` to hex-dump traffic while debugging in the field, ``loop://`` in
tests, or the pseudo-terminal of :class:`simulator.scanner.VirtualScanner`.

The reader asks for whatever is waiting (at least one byte) with a short timeout, and
stamps each chunk with ``time.monotonic_ns()`` the moment it returns, so a code reaches
``on_scan`` within about a millisecond of its terminator byte.  Everything it reads goes
through :class:`~drivers.scanner_framing.ScanFramer`; callbacks run on the reader
thread, and an exception in one is logged and never stops the reader.

A scanner that is unplugged, or a serial server that goes away, is reported as
``disconnected`` and reopened with capped exponential backoff and jitter until it is back
or :meth:`SerialScanner.close` is called.  Configure a USB scanner by its
``/dev/serial/by-id/...`` path: ``ttyACM0`` may come back as ``ttyACM1`` after a replug.
The port is opened exclusively (``flock``), so a second reader of the same tty is refused
instead of silently taking half of every code.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable
from enum import StrEnum
from types import TracebackType

import serial

from drivers.reconnect import Backoff, describe, keep_reading
from drivers.scanner_framing import (
    Scan,
    ScanFramer,
    ScanRejected,
    ScanRejectReason,
    ScanResult,
    Terminator,
    hex_preview,
)
from protocol.errors import GatepostError

__all__ = [
    "Scan",
    "ScanFramer",
    "ScanRejectReason",
    "ScanRejected",
    "ScannerError",
    "ScannerState",
    "SerialScanner",
    "Terminator",
    "hex_preview",
]

log = logging.getLogger("gatepost.drivers.scanner")

READ_TIMEOUT_S = 0.05
"""How long one read waits for a first byte.  Bounds how late a line timeout and close() are noticed."""


class ScannerState(StrEnum):
    CONNECTING = "connecting"
    CONNECTED = "connected"
    DISCONNECTED = "disconnected"
    CLOSED = "closed"


class ScannerError(GatepostError, OSError):
    """The scanner cannot be used as asked (for example started after it was closed)."""


ScanCallback = Callable[[Scan], None]
RejectCallback = Callable[[ScanRejected], None]
StateCallback = Callable[[ScannerState, str | None], None]
"""Called with the new state and, for ``disconnected``, the error text (else None)."""


class SerialScanner:
    """One serial scanner, read on its own thread until closed."""

    def __init__(
        self,
        url: str,
        *,
        baudrate: int = 9600,
        max_length: int = 512,
        terminators: Terminator = Terminator.CRLF,
        line_timeout_s: float = 0.5,
        allow_unicode: bool = False,
        on_scan: ScanCallback,
        on_reject: RejectCallback,
        on_state: StateCallback | None = None,
        reconnect_min_s: float = 0.2,
        reconnect_max_s: float = 5.0,
        name: str | None = None,
    ) -> None:
        self._backoff = Backoff(reconnect_min_s, reconnect_max_s)
        self.url = url
        self.baudrate = baudrate
        self.name = name or url
        self.framer = ScanFramer(
            max_length, terminators, line_timeout_s=line_timeout_s, allow_unicode=allow_unicode
        )
        self.on_scan = on_scan
        self.on_reject = on_reject
        self.on_state = on_state
        self.reconnect_min_s = reconnect_min_s
        self.reconnect_max_s = reconnect_max_s
        self.state = ScannerState.CLOSED
        self.connects = 0
        """How many times the port was opened: 1 after a clean start, +1 per reconnection."""
        self.port: serial.SerialBase | None = None
        """The open port while connected (for diagnostics and loopback tests), else None."""
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    @property
    def alive(self) -> bool:
        """False only when the reading thread has ended while the scanner is open (a bug, logged)."""
        thread = self._thread
        return thread is None or thread.is_alive() or self._stop.is_set()

    # -- lifecycle -------------------------------------------------------------------

    def start(self) -> None:
        """Start the reader thread.  Returns at once; the port is opened on that thread."""
        with self._lock:
            if self._stop.is_set():
                raise ScannerError(f"scanner {self.name} is closed")
            if self._thread is not None:
                return
            self._thread = threading.Thread(target=self._run, name=f"scanner:{self.name}", daemon=True)
            self._set_state(ScannerState.CONNECTING, None)
            self._thread.start()

    def close(self, timeout: float = 1.0) -> None:
        """Stop reading and close the port; prompt even in the middle of a backoff."""
        with self._lock:
            self._stop.set()
            thread = self._thread
            port = self.port
        if port is not None:
            # Not every URL handler can cancel a read; the short read timeout covers those.
            with contextlib.suppress(Exception):
                port.cancel_read()
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)
            if thread.is_alive():
                log.warning("scanner %s: reader did not stop within %.1f s", self.name, timeout)
        elif thread is None and self.state != ScannerState.CLOSED:
            self._set_state(ScannerState.CLOSED, None)

    def __enter__(self) -> SerialScanner:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    # -- the reader thread -----------------------------------------------------------

    def _run(self) -> None:
        try:
            keep_reading(
                self._open,
                self._read,
                self._close_port,
                stop=self._stop,
                backoff=self._backoff,
                on_lost=self._lost,
                # pyserial reports a vanished pty or USB device as SerialException (EIO, or
                # "readiness to read but returned no data") and a URL it cannot use as
                # ValueError; TypeError comes from a port closed under a read.
                errors=(serial.SerialException, OSError, ValueError, TypeError),
            )
        except Exception:  # a bug here must not die silently: say so, then report closed
            log.exception("scanner %s: reader thread failed", self.name)
        finally:
            self._dispatch(self.framer.flush(time.monotonic_ns()))
            self._set_state(ScannerState.CLOSED, None)

    def _open(self) -> serial.SerialBase:
        # exclusive: a second reader on one tty would steal half of every code.
        port = serial.serial_for_url(self.url, baudrate=self.baudrate, timeout=READ_TIMEOUT_S, exclusive=True)
        with self._lock:  # published under the lock close() takes, so close() can cancel a read on it
            self.port = port
        return port

    def _read(self, port: serial.SerialBase) -> None:
        self.connects += 1
        self._set_state(ScannerState.CONNECTED, None)
        while not self._stop.is_set():
            waiting = port.in_waiting
            data = port.read(max(1, waiting))
            now = time.monotonic_ns()
            self._dispatch(
                self.framer.feed(data, now, waited=waiting > 0) if data else self.framer.expire(now)
            )

    def _close_port(self, port: serial.SerialBase) -> None:
        with self._lock:
            self.port = None
        try:
            port.close()
        except Exception:
            log.debug("scanner %s: error closing port", self.name, exc_info=True)

    def _lost(self, error: Exception, opened: bool) -> None:
        # A line the loss cut in half is rejected as truncated before the state changes.
        self._dispatch(self.framer.flush(time.monotonic_ns()))
        self._set_state(ScannerState.DISCONNECTED, describe(error))

    def _dispatch(self, results: list[ScanResult]) -> None:
        for result in results:
            try:
                if isinstance(result, Scan):
                    self.on_scan(result)
                else:
                    log.debug("scanner %s: rejected %s: %s", self.name, result.reason, result.detail)
                    self.on_reject(result)
            except Exception:
                log.exception("scanner %s: callback failed", self.name)

    def _set_state(self, state: ScannerState, detail: str | None) -> None:
        if state == self.state:
            return
        self.state = state
        if state == ScannerState.DISCONNECTED:
            log.warning("scanner %s: disconnected: %s", self.name, detail)
        else:
            log.info("scanner %s: %s", self.name, state)
        if self.on_state is not None:
            try:
                self.on_state(state, detail)
            except Exception:
                log.exception("scanner %s: state callback failed", self.name)
