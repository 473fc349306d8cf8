"""A camera that behaves like a pass scanner: frames in, one ``Scan`` per pass presented.

The gate agent already knows a scanner: ``on_scan(Scan)``, ``on_reject(ScanRejected)``
and ``on_state(ScannerState, detail)``.  :class:`CameraScanner` keeps that contract, so a
camera gate is configured, not programmed: :class:`~drivers.camera.Camera` captures,
a :class:`~drivers.qr.FrameDecoder` reads, and this module decides what is one scan.

A camera sees a pass thirty times a second for as long as it is held up, so:

* a payload is scanned once when it comes into view, then suppressed while it stays in
  view and for ``hold_off_s`` after it was last seen (:class:`SeenCodes`).  Frames the
  decoder skipped as unchanged count as "still in view", so a pass held perfectly still
  for a minute is still one scan;
* two different passes in one frame are two scans, in the order read;
* whatever is scanned goes through the same judgement as a serial scanner's line
  (:func:`judge_payload`): too long, a scanner setup code, or not printable (binary
  payloads unless ``allow_unicode``... and even then only valid UTF-8 text) becomes a
  :class:`~drivers.scanner_framing.ScanRejected` with its reason -- once per sighting,
  like a scan, not thirty times a second.

``Scan.raw`` is exactly the payload's bytes; ``Scan.code`` its text.  ``Scan.at_ns`` is
when the frame was grabbed, so latency is measured from the glass, as for a serial
scanner's terminator byte.
"""

from __future__ import annotations

import logging
import threading
import unicodedata
from collections.abc import Callable, Iterable
from pathlib import Path
from types import TracebackType
from typing import Any

from drivers.camera import Camera, Capture, Frame
from drivers.qr import FrameDecoder, make_decoder
from drivers.scanner import ScannerState
from drivers.scanner_framing import Scan, ScanRejected, ScanRejectReason, ScanResult, hex_preview
from drivers.setup_codes import setup_code_kind, setup_code_kind_of_bytes

__all__ = ["CameraScanner", "SeenCodes", "judge_payload"]

log = logging.getLogger("gatepost.drivers.camera_scanner")

ScanCallback = Callable[[Scan], None]
RejectCallback = Callable[[ScanRejected], None]
StateCallback = Callable[[ScannerState, str | None], None]


class SeenCodes:
    """Which payloads were seen recently: the difference between one scan and thirty.

    Pure bookkeeping on timestamps, so it is tested without a camera.
    """

    def __init__(self, hold_off_s: float = 2.0) -> None:
        if hold_off_s < 0:
            raise ValueError("hold_off_s must not be negative")
        self.hold_off_ns = int(hold_off_s * 1e9)
        self._last: dict[bytes, int] = {}
        self._in_view: tuple[bytes, ...] = ()

    def sighted(self, payloads: Iterable[bytes], at_ns: int) -> list[bytes]:
        """Payloads read in an analysed frame; returns those not seen within the hold-off, in order."""
        self._expire(at_ns)
        fresh: list[bytes] = []
        shown: list[bytes] = []
        for payload in payloads:
            if payload in shown:
                continue
            shown.append(payload)
            if payload not in self._last:
                fresh.append(payload)
            self._last[payload] = at_ns
        self._in_view = tuple(shown)
        return fresh

    def unchanged(self, at_ns: int) -> None:
        """A frame skipped as unchanged: whatever was in view still is."""
        for payload in self._in_view:
            self._last[payload] = at_ns

    def _expire(self, now_ns: int) -> None:
        stale = [p for p, at in self._last.items() if now_ns - at > self.hold_off_ns]
        for payload in stale:
            del self._last[payload]

    def __len__(self) -> int:
        return len(self._last)


def judge_payload(
    raw: bytes, symbology: str | None, at_ns: int, *, max_length: int = 512, allow_unicode: bool = False
) -> ScanResult:
    """The serial scanner's rules, applied to a decoded payload; the payload is never altered.

    Unlike a serial line there is no terminator or AIM prefix to strip: the decoder
    returned the symbol's exact bytes, and they are judged as they are.
    """
    length = len(raw)
    if length == 0:
        return ScanRejected(ScanRejectReason.UNPRINTABLE, "empty payload", 0, at_ns)
    if length > max_length:
        return ScanRejected(
            ScanRejectReason.TOO_LONG,
            f"payload of {length} bytes > {max_length}, starts {hex_preview(raw)}",
            length,
            at_ns,
        )
    kind = setup_code_kind_of_bytes(raw)
    if kind is not None:
        return ScanRejected(
            ScanRejectReason.SETUP_CODE, f"looks like a scanner setup code ({kind})", length, at_ns
        )
    problem: str | None = None
    text = ""
    if not allow_unicode:
        bad = next((i for i, b in enumerate(raw) if not 0x20 <= b <= 0x7E), None)
        if bad is None:
            text = raw.decode("ascii")
        else:
            problem = f"byte 0x{raw[bad]:02x} at offset {bad} of {length}"
    else:
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            problem = f"invalid UTF-8 at offset {exc.start} of {length}"
        else:
            bad = next((i for i, c in enumerate(text) if unicodedata.category(c).startswith("C")), None)
            if bad is not None:
                problem = f"character U+{ord(text[bad]):04X} at offset {bad} of {len(text)}"
    if problem is not None:
        return ScanRejected(ScanRejectReason.UNPRINTABLE, problem, length, at_ns)
    kind = setup_code_kind(text)
    if kind is not None:
        return ScanRejected(
            ScanRejectReason.SETUP_CODE, f"looks like a scanner setup code ({kind})", length, at_ns
        )
    return Scan(text, raw, symbology, at_ns)


class CameraScanner:
    """A camera and a QR decoder, presenting themselves as a pass scanner.

    ``decoder`` is a :class:`~drivers.qr.FrameDecoder` or a backend name (``"zxing"``,
    the default, or ``"pyzbar"``) for the shipped smart decoder over it.  Keyword
    arguments not listed here (``width``, ``height``, ``fps``, ``realtime``, ``at_end``,
    ``reconnect_min_s``, ``reconnect_max_s``) go to :class:`~drivers.camera.Camera`.
    """

    def __init__(
        self,
        source: str | int | Path | Capture,
        *,
        on_scan: ScanCallback,
        on_reject: RejectCallback,
        on_state: StateCallback | None = None,
        decoder: FrameDecoder | str = "zxing",
        hold_off_s: float = 2.0,
        max_length: int = 512,
        allow_unicode: bool = False,
        name: str | None = None,
        **camera_options: Any,
    ) -> None:
        if max_length < 1:
            raise ValueError("max_length must be at least 1")
        self.decoder = make_decoder(decoder) if isinstance(decoder, str) else decoder
        self.seen = SeenCodes(hold_off_s)
        self.max_length = max_length
        self.allow_unicode = allow_unicode
        self.on_scan = on_scan
        self.on_reject = on_reject
        self.on_state = on_state
        self.camera = Camera(
            source, on_frame=self._on_frame, on_state=self._on_state, name=name, **camera_options
        )
        self.name = self.camera.name
        self.url = self.camera.source.text
        self.frames_analysed = 0
        self.frames_skipped = 0
        self.frames_over_budget = 0
        self._lock = threading.Lock()

    @property
    def state(self) -> ScannerState:
        return self.camera.state

    @property
    def alive(self) -> bool:
        return self.camera.alive

    # -- lifecycle -------------------------------------------------------------------

    def start(self) -> None:
        self.camera.start()

    def close(self, timeout: float = 2.0) -> None:
        self.camera.close(timeout)

    def wait_ended(self, timeout: float | None = None) -> bool:
        """For a file source: wait until every frame has been decoded."""
        return self.camera.wait_ended(timeout)

    def __enter__(self) -> CameraScanner:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    # -- frames ----------------------------------------------------------------------

    def _on_frame(self, frame: Frame) -> None:
        with self._lock:
            result = self.decoder.decode(frame.grey)
            if not result.analysed:
                self.frames_skipped += 1
                self.seen.unchanged(frame.clock_ns)
                return
            self.frames_analysed += 1
            self.frames_over_budget += result.over_budget
            symbology = {code.raw: code.symbology for code in result.codes}
            fresh = self.seen.sighted((code.raw for code in result.codes), frame.clock_ns)
        for raw in fresh:
            outcome = judge_payload(
                raw, symbology[raw], frame.at_ns, max_length=self.max_length, allow_unicode=self.allow_unicode
            )
            try:
                if isinstance(outcome, Scan):
                    self.on_scan(outcome)
                else:
                    log.debug("camera %s: rejected %s: %s", self.name, outcome.reason, outcome.detail)
                    self.on_reject(outcome)
            except Exception:
                log.exception("camera %s: callback failed", self.name)

    def _on_state(self, state: ScannerState, detail: str | None) -> None:
        if state == ScannerState.CONNECTED:
            with self._lock:
                self.decoder.reset()  # a new picture: nothing is "unchanged" from before the dropout
        if self.on_state is not None:
            self.on_state(state, detail)
