"""A camera: OpenCV capture on its own thread, grey frames out, reconnection when it drops.

Configuration chooses the camera by one string, as pyserial's URL chooses a port:

=====================================  ===============================================
``0``, ``2``                           a device index (``/dev/video0``...), V4L2
``/dev/video0``, ``/dev/v4l/by-id/…``  a device path (prefer ``by-id``: indices move on replug)
``rtsp://``, ``http(s)://``, ``udp://``  a network stream, through FFmpeg, with open/read timeouts
``/srv/gate/test.avi``, ``file://…``   a video file, replayed at its own frame rate
``sim://?codes=…``                     a synthetic camera, once the simulator registered it (:mod:`drivers.devices`)
=====================================  ===============================================

Frames are converted to grey once, here, right after capture, and scaled down to the
configured size if the source could not deliver it (a stream or a file sends what it
sends); decoders never see colour.  ``fps`` caps the rate at which frames are delivered:
surplus frames from a live source are *grabbed* (so the device's buffer stays fresh and
the next frame is current) but not decoded into pixels.

Delivery is on a second thread through a one-frame slot.  From a live source the newest
frame wins: if ``on_frame`` is still busy with the last one, the one in the slot is
replaced and counted in :attr:`Camera.frames_dropped`, so a slow frame delays the next
answer but never builds a queue of stale ones.  From a file (or ``realtime=False``)
nothing is dropped: capture waits for ``on_frame``, so a test sees every frame.

A device that vanishes, a stream that stalls, or a source that cannot be opened yet is
reported as ``disconnected`` (the :class:`~drivers.scanner.ScannerState` of the serial
scanner, so the gate agent treats both alike) and reopened with capped exponential
backoff and jitter until it is back or :meth:`Camera.close` is called.  A file that ends
is ``closed``, or starts again with ``at_end="loop"``.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from types import TracebackType
from typing import Any, Literal, Protocol
from urllib.parse import parse_qs, urlsplit

import cv2
import numpy as np

from drivers import devices
from drivers.reconnect import Backoff, DeviceLost, describe, keep_reading
from drivers.scanner import ScannerState
from protocol.errors import GatepostError, Rejection

__all__ = [
    "Camera",
    "CameraError",
    "CameraSource",
    "CameraSourceError",
    "Capture",
    "Frame",
    "SourceKind",
    "SourceRejectReason",
    "parse_source",
]

log = logging.getLogger("gatepost.drivers.camera")

STREAM_SCHEMES = frozenset({"rtsp", "rtsps", "rtmp", "http", "https", "udp", "tcp", "srt"})
OPEN_TIMEOUT_MS = 5000
READ_TIMEOUT_MS = 5000
"""FFmpeg gives up on a stream that sends nothing for this long; the camera is then ``disconnected``."""


class CameraError(GatepostError, OSError):
    """The camera cannot be used as asked (for example started after it was closed)."""


class SourceRejectReason(StrEnum):
    EMPTY = "empty"
    UNKNOWN_SCHEME = "unknown_scheme"
    BAD_DEVICE = "bad_device"
    BAD_SIM_URL = "bad_sim_url"
    NOT_REGISTERED = "not_registered"
    """A ``sim://`` source in a process where the simulator has not registered its cameras."""


class CameraSourceError(Rejection[SourceRejectReason], ValueError):
    """A camera source string that names nothing OpenCV (or the simulator) can open."""


class SourceKind(StrEnum):
    DEVICE = "device"
    STREAM = "stream"
    FILE = "file"
    SIM = "sim"
    OBJECT = "object"
    """A capture object handed in directly (tests; a simulator instance that must survive reconnects)."""


class Capture(Protocol):
    """The part of ``cv2.VideoCapture`` the camera uses; the simulator's synthetic camera has it too."""

    def isOpened(self) -> bool: ...
    def grab(self) -> bool: ...
    def retrieve(self) -> tuple[bool, np.ndarray | None]: ...
    def release(self) -> None: ...
    def get(self, prop: int) -> float: ...
    def set(self, prop: int, value: float) -> bool: ...


@dataclass(frozen=True, slots=True)
class CameraSource:
    kind: SourceKind
    target: Any
    """Device index, device path, URL, file path, or the capture object itself."""
    text: str
    """How the source was given, for logs and state details."""

    @property
    def live(self) -> bool:
        """Frames come at the source's pace whether or not they are read (not a file)."""
        if self.kind == SourceKind.SIM:
            values = parse_qs(urlsplit(self.target).query).get("realtime", ["1"])
            return values[-1].lower() not in ("0", "false", "no")
        if self.kind == SourceKind.OBJECT:
            return bool(getattr(self.target, "realtime", True))
        return self.kind != SourceKind.FILE


def parse_source(source: str | int | Path | Capture) -> CameraSource:
    """What kind of camera a configured source names; :class:`CameraSourceError` if none."""
    if isinstance(source, bool):
        raise CameraSourceError(SourceRejectReason.BAD_DEVICE, "a camera source cannot be a boolean")
    if isinstance(source, int):
        if source < 0:
            raise CameraSourceError(SourceRejectReason.BAD_DEVICE, f"negative device index {source}")
        return CameraSource(SourceKind.DEVICE, source, str(source))
    if isinstance(source, Path):
        return CameraSource(SourceKind.FILE, str(source), str(source))
    if not isinstance(source, str):
        if all(hasattr(source, attr) for attr in ("isOpened", "grab", "retrieve", "release")):
            return CameraSource(SourceKind.OBJECT, source, type(source).__name__)
        raise CameraSourceError(
            SourceRejectReason.UNKNOWN_SCHEME, f"not a camera source: {type(source).__name__}"
        )
    text = source.strip()
    if not text:
        raise CameraSourceError(SourceRejectReason.EMPTY, "no camera source given")
    if text.isdigit():
        return CameraSource(SourceKind.DEVICE, int(text), text)
    if text.startswith("/dev/"):
        return CameraSource(SourceKind.DEVICE, text, text)
    scheme = urlsplit(text).scheme.lower()
    if scheme == "sim":
        return CameraSource(SourceKind.SIM, text, text)
    if scheme in STREAM_SCHEMES:
        return CameraSource(SourceKind.STREAM, text, text)
    if scheme == "file":
        return CameraSource(SourceKind.FILE, urlsplit(text).path, text)
    if scheme and len(scheme) > 1:  # "C:" style drive letters are one letter
        raise CameraSourceError(
            SourceRejectReason.UNKNOWN_SCHEME,
            f"unknown scheme {scheme!r} in {text!r}; use a device, a path, sim:// or one of {sorted(STREAM_SCHEMES)}",
        )
    return CameraSource(SourceKind.FILE, text, text)


@dataclass(frozen=True, slots=True)
class Frame:
    grey: np.ndarray
    """uint8, one channel, at the configured size."""
    at_ns: int
    """``time.monotonic_ns()`` when the frame was grabbed."""
    index: int
    """Sequence number of delivered frames since start (gaps are frames dropped or capped)."""
    clock_ns: int
    """When the frame was taken on the source's own clock: ``at_ns`` for a live source; for a
    file or simulator read faster than real time, the start of reading plus the frame's
    position in the video.  Timing rules (how long a pass stays "just seen") use this, so
    a recording replayed at full speed yields the scans it would have yielded live."""


FrameCallback = Callable[[Frame], None]
StateCallback = Callable[[ScannerState, str | None], None]


class _Slot:
    """A one-frame mailbox between the capture and delivery threads."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._frame: Frame | None = None
        self._busy = False
        self._ended = False

    def put(self, frame: Frame, *, wait: bool, stop: threading.Event) -> bool:
        """Offer a frame; True if it replaced one not yet taken (a drop)."""
        with self._cond:
            if wait:
                while (self._frame is not None or self._busy) and not stop.is_set():
                    self._cond.wait(0.05)
            dropped = self._frame is not None
            self._frame = frame
            self._cond.notify_all()
            return dropped

    def take(self) -> Frame | None:
        """The next frame, or None once the capture has ended and the slot is empty."""
        with self._cond:
            self._busy = False
            self._cond.notify_all()
            while self._frame is None and not self._ended:
                self._cond.wait()
            frame, self._frame = self._frame, None
            self._busy = frame is not None
            return frame

    def end(self) -> None:
        with self._cond:
            self._ended = True
            self._cond.notify_all()

    def clear(self) -> None:
        with self._cond:
            self._frame = None
            self._cond.notify_all()


class Camera:
    """One camera, captured on its own thread until closed; frames go to ``on_frame`` in grey."""

    def __init__(
        self,
        source: str | int | Path | Capture,
        *,
        on_frame: FrameCallback,
        on_state: StateCallback | None = None,
        width: int | None = None,
        height: int | None = None,
        fps: float | None = None,
        realtime: bool | None = None,
        at_end: Literal["stop", "loop"] = "stop",
        reconnect_min_s: float = 0.5,
        reconnect_max_s: float = 10.0,
        name: str | None = None,
    ) -> None:
        backoff = Backoff(reconnect_min_s, reconnect_max_s)
        if (width is None) != (height is None) or (width is not None and (width < 16 or height < 16)):  # type: ignore[operator]
            raise ValueError("give both width and height (at least 16), or neither")
        if fps is not None and fps <= 0:
            raise ValueError("fps must be positive")
        if at_end not in ("stop", "loop"):
            raise ValueError("at_end must be 'stop' or 'loop'")
        self.source = parse_source(source)
        self.name = name or self.source.text
        self.on_frame = on_frame
        self.on_state = on_state
        self.width = width
        self.height = height
        self.fps = fps
        self.realtime = self.source.kind == SourceKind.FILE if realtime is None else realtime
        """Pace a file at its own frame rate, as a camera would deliver it (True by default for files)."""
        self.at_end = at_end
        self.reconnect_min_s = reconnect_min_s
        self.reconnect_max_s = reconnect_max_s
        self._backoff = backoff
        self.state = ScannerState.CLOSED
        self.connects = 0
        self.frames_read = 0
        """Frames grabbed from the source, including those skipped by the rate cap."""
        self.frames_delivered = 0
        self.frames_dropped = 0
        """Frames replaced in the slot before ``on_frame`` could take them (live sources only)."""
        self.ended = threading.Event()
        """Set when a file has ended (``at_end="stop"``) or the camera was closed."""
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._state_lock = threading.Lock()
        self._slot = _Slot()
        self._capture_thread: threading.Thread | None = None
        self._deliver_thread: threading.Thread | None = None
        self._sim: Any = None
        if self.source.kind == SourceKind.SIM:
            # Built now, so a bad URL fails the configuration rather than a thread, and once,
            # so a reconnect finds the same simulated device (and its clock) again.
            scheme = urlsplit(self.source.target).scheme
            try:
                opener = devices.camera_scheme(scheme)
            except devices.DeviceNotRegisteredError as exc:
                raise CameraSourceError(SourceRejectReason.NOT_REGISTERED, str(exc)) from None
            try:
                self._sim = opener(self.source.target)
            except ValueError as exc:
                raise CameraSourceError(SourceRejectReason.BAD_SIM_URL, str(exc)) from None
        self._media_start_ns = 0

    @property
    def alive(self) -> bool:
        """False only when a thread has ended while the camera is open and its source has not ended."""
        threads = [t for t in (self._capture_thread, self._deliver_thread) if t is not None]
        return self._stop.is_set() or self.ended.is_set() or all(t.is_alive() for t in threads)

    # -- lifecycle -------------------------------------------------------------------

    def start(self) -> None:
        """Start capturing.  Returns at once; the source is opened on the capture thread."""
        with self._lock:
            if self._stop.is_set():
                raise CameraError(f"camera {self.name} is closed")
            if self._capture_thread is not None:
                return
            self._set_state(ScannerState.CONNECTING, None)
            self._media_start_ns = time.monotonic_ns()
            self._deliver_thread = threading.Thread(
                target=self._deliver, name=f"camera-out:{self.name}", daemon=True
            )
            self._capture_thread = threading.Thread(target=self._run, name=f"camera:{self.name}", daemon=True)
            self._deliver_thread.start()
            self._capture_thread.start()

    def close(self, timeout: float = 2.0) -> None:
        """Stop capturing and release the source; frames not yet delivered are discarded."""
        with self._lock:
            self._stop.set()
            threads = [t for t in (self._capture_thread, self._deliver_thread) if t is not None]
        self._slot.clear()
        self._slot.end()
        for thread in threads:
            if thread is not threading.current_thread():
                thread.join(timeout)
                if thread.is_alive():
                    log.warning("camera %s: %s did not stop within %.1f s", self.name, thread.name, timeout)
        if not threads:
            self._set_state(ScannerState.CLOSED, None)
        self.ended.set()

    def wait_ended(self, timeout: float | None = None) -> bool:
        """Wait until a file has been played to its end and every frame delivered (or the camera closed)."""
        if not self.ended.wait(timeout):
            return False
        thread = self._deliver_thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)
            return not thread.is_alive()
        return True

    def __enter__(self) -> Camera:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    # -- capture thread ----------------------------------------------------------------

    def _run(self) -> None:
        try:
            keep_reading(
                self._open,
                self._stream,
                _release,
                stop=self._stop,
                backoff=self._backoff,
                on_lost=self._lost,
                reopen_at_end=self.at_end == "loop",
            )
        except Exception:  # a bug here must not die silently: say so, then report closed
            log.exception("camera %s: capture thread failed", self.name)
        finally:
            self._slot.end()
            self.ended.set()

    def _open(self) -> Capture:
        """The opened source, or :class:`~drivers.reconnect.DeviceLost` saying why not."""
        source = self.source
        if source.kind == SourceKind.FILE and not Path(source.target).is_file():
            raise DeviceLost(f"no such file: {source.target}")
        try:
            capture: Capture
            if source.kind == SourceKind.OBJECT:
                target = source.target
                capture = target.reopen() if hasattr(target, "reopen") else target
            elif source.kind == SourceKind.SIM:
                capture = self._sim.reopen()  # type: ignore[union-attr]
            elif source.kind == SourceKind.STREAM:
                params = [
                    cv2.CAP_PROP_OPEN_TIMEOUT_MSEC,
                    OPEN_TIMEOUT_MS,
                    cv2.CAP_PROP_READ_TIMEOUT_MSEC,
                    READ_TIMEOUT_MS,
                ]
                capture = cv2.VideoCapture(source.target, cv2.CAP_FFMPEG, params)
            elif source.kind == SourceKind.DEVICE:
                capture = cv2.VideoCapture(source.target, cv2.CAP_V4L2)
            else:
                capture = cv2.VideoCapture(source.target, cv2.CAP_FFMPEG)
        except Exception as exc:  # OpenCV raises cv2.error for a backend it cannot use
            raise DeviceLost(describe(exc)) from exc
        if not capture.isOpened():
            _release(capture)
            raise DeviceLost(f"cannot open {source.text}")
        if source.kind == SourceKind.DEVICE:
            self._configure_device(capture)
        return capture

    def _configure_device(self, capture: Capture) -> None:
        """Ask a device for the configured size and rate; what it grants is logged, and frames scaled if need be."""
        capture.set(cv2.CAP_PROP_BUFFERSIZE, 1)  # the newest frame, not one from four frames ago
        if self.width is not None and self.height is not None:
            capture.set(cv2.CAP_PROP_FRAME_WIDTH, self.width)
            capture.set(cv2.CAP_PROP_FRAME_HEIGHT, self.height)
        if self.fps is not None:
            capture.set(cv2.CAP_PROP_FPS, self.fps)
        log.info(
            "camera %s: %dx%d at %.0f fps",
            self.name,
            int(capture.get(cv2.CAP_PROP_FRAME_WIDTH)),
            int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT)),
            capture.get(cv2.CAP_PROP_FPS),
        )

    def _stream(self, capture: Capture) -> None:
        """Deliver frames until the camera is closed or the source ends; raise DeviceLost if it fails."""
        live = self.source.live
        source_fps = capture.get(cv2.CAP_PROP_FPS) or 0.0
        # The source's own frame rate: a file is replayed, and its clock runs, at this rate.
        pace = source_fps if 0 < source_fps <= 240 else (self.fps or 30.0)
        # A little under the nominal gap, so jitter does not make a 30 fps cap deliver 15.
        min_gap_ns = int(0.9e9 / self.fps) if self.fps else 0
        next_due = time.monotonic()
        last_sent_ns: int | None = None
        first = True
        grabbed_here = 0
        while not self._stop.is_set():
            if self.realtime and not live:
                delay = next_due - time.monotonic()
                if delay > 0 and self._stop.wait(delay):
                    return
                next_due = max(next_due + 1.0 / pace, time.monotonic() - 1.0)
            try:
                grabbed = capture.grab()
            except Exception as exc:
                raise DeviceLost(describe(exc)) from exc
            now = time.monotonic_ns()
            if not grabbed:
                # The next file (a loop, or a reopened source) continues this one's clock.
                self._media_start_ns += int(grabbed_here * 1e9 / pace)
                kind = self.source.kind
                if kind == SourceKind.FILE or (
                    kind in (SourceKind.SIM, SourceKind.OBJECT) and capture.isOpened()
                ):
                    return
                raise DeviceLost(f"{self.source.text}: no frame (device gone or stream stalled)")
            self.frames_read += 1
            grabbed_here += 1
            clock = now if live else self._media_start_ns + int((grabbed_here - 1) * 1e9 / pace)
            if last_sent_ns is not None and clock - last_sent_ns < min_gap_ns:
                continue  # over the rate cap: grabbed, so the buffer stays fresh, but not decoded
            try:
                ok, image = capture.retrieve()
            except Exception as exc:
                ok, image = False, None
                log.debug("camera %s: retrieve failed: %s", self.name, exc)
            if not ok or image is None:
                continue  # one corrupt frame (a broken JPEG from a USB camera) is not a dropout
            if first:
                self.connects += 1
                self._set_state(ScannerState.CONNECTED, None)
                first = False
            last_sent_ns = clock
            frame = Frame(self._to_grey(image), now, self.frames_delivered, clock)
            self.frames_delivered += 1
            if self._slot.put(frame, wait=not live, stop=self._stop):
                self.frames_dropped += 1

    def _to_grey(self, image: np.ndarray) -> np.ndarray:
        if image.ndim == 3:
            code = cv2.COLOR_BGRA2GRAY if image.shape[2] == 4 else cv2.COLOR_BGR2GRAY
            image = cv2.cvtColor(image, code)
        if (
            self.width is not None
            and self.height is not None
            and image.shape[:2] != (self.height, self.width)
        ):
            image = cv2.resize(image, (self.width, self.height), interpolation=cv2.INTER_AREA)
        return image

    # -- delivery thread ---------------------------------------------------------------

    def _deliver(self) -> None:
        try:
            while True:
                frame = self._slot.take()
                if frame is None:
                    break
                if self._stop.is_set():
                    continue
                try:
                    self.on_frame(frame)
                except Exception:
                    log.exception("camera %s: frame callback failed", self.name)
        finally:
            capture = self._capture_thread
            if capture is not None and capture is not threading.current_thread():
                capture.join()
            self._set_state(ScannerState.CLOSED, None)

    # -- helpers ----------------------------------------------------------------------

    def _lost(self, error: Exception, opened: bool) -> None:
        self._set_state(ScannerState.DISCONNECTED, str(error))

    def _set_state(self, state: ScannerState, detail: str | None) -> None:
        with self._state_lock:
            if state == self.state:
                return
            self.state = state
        if state == ScannerState.DISCONNECTED:
            log.warning("camera %s: disconnected: %s", self.name, detail)
        else:
            log.info("camera %s: %s", self.name, state)
        if self.on_state is not None:
            try:
                self.on_state(state, detail)
            except Exception:
                log.exception("camera %s: state callback failed", self.name)


def _release(capture: Capture) -> None:
    """Release a capture that may already be broken: there is nothing to do about an error here."""
    with contextlib.suppress(Exception):
        capture.release()
