"""Plate recognition on a lane camera: gated, cropped, checked, and one reading per vehicle.

The model is the one ``rapidocr-onnxruntime`` ships inside its wheel (PP-OCRv4 Chinese
text detection and recognition, ONNX; https://pypi.org/project/rapidocr-onnxruntime/),
so nothing is downloaded at run time and a gate with no network reads plates as well as
one with.  Four things keep it honest and cheap on a Raspberry Pi:

* **gating** -- recognition runs only while a vehicle is in the lane: the loop detector
  says so (:meth:`LaneRecogniser.vehicle_present`), or, with no loop wired, a change in
  the configured region against a slowly learnt empty-lane background
  (:class:`ChangeGate`).  An empty lane costs the capture and nothing else;
* **cropping** -- only the configured region (where plates stop in front of the arm) is
  given to the model, with the detector's input capped at 480 px on its long side;
* **checking** -- a text becomes a plate only through :func:`protocol.plates.parse_plate`
  (province character, authority letter, five serial characters, or the new-energy
  and suffixed forms) and above a confidence threshold; the letters I and O never occur
  in a serial, so OCR's O and I there are read as 0 and 1 first;
* **merging** -- the same vehicle is seen in many frames; a plate is reported once, when
  ``confirm`` frames agree on it (:class:`VehicleReadings`), and a vehicle that leaves
  unread is one typed rejection, not thirty.

This module knows no MQTT and no policy: it emits :class:`PlateReading` and
:class:`PlateRejected`; the lane and the agent decide what they mean.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from drivers.camera import Camera, Capture, Frame
from drivers.scanner import ScannerState
from protocol.errors import Rejection
from protocol.plates import Plate, PlateError, parse_plate

__all__ = [
    "ChangeGate",
    "LaneRecogniser",
    "OcrText",
    "PlateReading",
    "PlateRecogniser",
    "PlateRejectReason",
    "PlateRejected",
    "VehicleReadings",
    "candidates",
    "crop_jpeg",
]

log = logging.getLogger("gatepost.drivers.plate_reader")

MAX_CROP_BYTES = 12 * 1024
"""The plate crop travels in the event (base64) to the console: at most this many JPEG bytes."""

Region = tuple[int, int, int, int]
"""``x, y, width, height`` in frame pixels."""


class PlateRejectReason(StrEnum):
    """Why a vehicle's readings became no plate.  Stable strings: they appear in events."""

    UNREAD = "unread"
    """The vehicle left (or the reading window closed) without ``confirm`` agreeing readings."""
    LOW_CONFIDENCE = "low_confidence"
    """Something plate-shaped was read, but never above the confidence threshold."""
    NOT_A_PLATE = "not_a_plate"
    """Text was read, but none of it is a plate format (GA 36-2018)."""


class PlateRejected(Rejection[PlateRejectReason]):
    """A vehicle with no usable reading; ``best`` is the likeliest text seen, for the guard."""

    def __init__(
        self, reason: PlateRejectReason, detail: str, *, best: str | None = None, at_ns: int = 0
    ) -> None:
        super().__init__(reason, detail)
        self.best = best
        self.at_ns = at_ns


@dataclass(frozen=True, slots=True)
class PlateReading:
    """One vehicle's plate, read and confirmed."""

    plate: Plate
    confidence: float
    """The best confidence among the agreeing frames (0..1)."""
    crop: bytes | None
    """JPEG of the plate and a margin, at most :data:`MAX_CROP_BYTES`."""
    at_ns: int
    """``time.monotonic_ns()`` of the frame that confirmed it."""
    frames: int
    """Frames recognised for this vehicle up to the confirmation."""

    @property
    def text(self) -> str:
        return self.plate.text


@dataclass(frozen=True, slots=True)
class OcrText:
    """One text line the model found: its text, confidence and box (4 points, region coordinates)."""

    text: str
    confidence: float
    box: tuple[tuple[float, float], ...]


class PlateRecogniser:
    """The packaged PP-OCRv4 models, set up for plates: no angle classifier, a small detector input.

    ``threads`` caps ONNX Runtime's threads (a Pi also runs the rest of the gate); the
    models load once, in the constructor, from the wheel's own files.
    """

    def __init__(self, *, threads: int = 1, det_side: int = 480) -> None:
        from rapidocr_onnxruntime import RapidOCR

        self._engine = RapidOCR(
            det_limit_side_len=det_side,
            det_limit_type="max",
            intra_op_num_threads=threads,
            inter_op_num_threads=1,
            print_verbose=False,
        )
        self._lock = threading.Lock()

    def texts(self, image: np.ndarray) -> list[OcrText]:
        """Every text line in ``image`` (grey or BGR), as the model reads it."""
        if image.ndim == 2:
            image = cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
        with self._lock:  # one ONNX session per recogniser; calls from two lanes take turns
            result, _ = self._engine(image, use_cls=False)
        found: list[OcrText] = []
        for box, text, score in result or ():
            points = tuple((float(x), float(y)) for x, y in box)
            found.append(OcrText(str(text), float(score), points))
        return found


_SEPARATORS = str.maketrans("", "", " ·.-_•:")
_SERIAL_FIXES = str.maketrans({"O": "0", "I": "1", "o": "0"})


def normalise_text(text: str) -> str:
    """OCR's text made plate-like: no separators, and O/I in the serial read as 0/1 (never letters there)."""
    cleaned = text.translate(_SEPARATORS).upper()
    if len(cleaned) > 2:
        cleaned = cleaned[:2] + cleaned[2:].translate(_SERIAL_FIXES)
    return cleaned


def candidates(texts: Sequence[OcrText]) -> list[tuple[str, float, OcrText]]:
    """Plate candidates: each text line alone, and lines side by side joined left to right.

    The detector sometimes splits the province character from the rest (a wide gap, glare
    between them); joining boxes on one line restores the plate.
    """
    found = [(normalise_text(t.text), t.confidence, t) for t in texts]
    lines = sorted(texts, key=lambda t: min(x for x, _ in t.box))
    for i, first in enumerate(lines):
        joined, scores, members = first.text, [first.confidence], [first]
        for other in lines[i + 1 :]:
            if _same_line(members[-1], other):
                joined += other.text
                scores.append(other.confidence)
                members.append(other)
                box = _union(members)
                found.append((normalise_text(joined), min(scores), OcrText(joined, min(scores), box)))
    return found


def _same_line(a: OcrText, b: OcrText) -> bool:
    ay = [y for _, y in a.box]
    by = [y for _, y in b.box]
    height = max(max(ay) - min(ay), max(by) - min(by), 1.0)
    return abs((min(ay) + max(ay)) / 2 - (min(by) + max(by)) / 2) < 0.5 * height


def _union(members: Sequence[OcrText]) -> tuple[tuple[float, float], ...]:
    xs = [x for m in members for x, _ in m.box]
    ys = [y for m in members for _, y in m.box]
    return ((min(xs), min(ys)), (max(xs), min(ys)), (max(xs), max(ys)), (min(xs), max(ys)))


def crop_jpeg(
    image: np.ndarray, box: Sequence[tuple[float, float]] | None, max_bytes: int = MAX_CROP_BYTES
) -> bytes | None:
    """The plate with a margin around it as JPEG, shrunk in quality and then size until it fits ``max_bytes``."""
    if box is not None:
        xs = [x for x, _ in box]
        ys = [y for _, y in box]
        w, h = max(xs) - min(xs), max(ys) - min(ys)
        x0 = max(0, int(min(xs) - 0.4 * w))
        x1 = min(image.shape[1], int(max(xs) + 0.4 * w))
        y0 = max(0, int(min(ys) - 1.0 * h))
        y1 = min(image.shape[0], int(max(ys) + 1.0 * h))
        if x1 > x0 and y1 > y0:
            image = image[y0:y1, x0:x1]
    scale = 1.0
    while True:
        picture = (
            image
            if scale == 1.0
            else cv2.resize(image, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
        )
        for quality in (85, 70, 55, 40, 25):
            ok, encoded = cv2.imencode(".jpg", picture, [cv2.IMWRITE_JPEG_QUALITY, quality])
            if ok and len(encoded) <= max_bytes:
                return encoded.tobytes()
        if min(picture.shape[:2]) < 24:
            return None
        scale *= 0.7


@dataclass
class VehicleReadings:
    """The readings of one vehicle, frame by frame, until ``confirm`` of them agree on a plate.

    Pure bookkeeping (no camera, no model), so it is tested alone.  After a confirmation
    the vehicle is *done*: further frames of it are ignored until :meth:`reset` (the loop
    said it passed, or the lane emptied), so one car is one presentation.
    """

    confirm: int = 2
    min_confidence: float = 0.8
    votes: Counter[str] = field(default_factory=Counter)
    best: dict[str, tuple[float, Any]] = field(default_factory=dict)
    frames: int = 0
    done: bool = False
    seen_text: bool = False
    low_confidence: str | None = None

    def add(self, found: Sequence[tuple[str, float, Any]]) -> tuple[Plate, float, Any] | None:
        """One frame's candidates; returns ``(plate, confidence, payload)`` when this frame confirms one."""
        if self.done:
            return None
        self.frames += 1
        counted: set[str] = set()
        for text, confidence, payload in found:
            if text:
                self.seen_text = True
            try:
                plate = parse_plate(text)
            except PlateError:
                continue
            if confidence < self.min_confidence:
                self.low_confidence = plate.text
                continue
            if plate.text in counted:
                continue
            counted.add(plate.text)
            self.votes[plate.text] += 1
            if confidence >= self.best.get(plate.text, (-1.0, None))[0]:
                self.best[plate.text] = (confidence, payload)
        if not counted:
            return None
        leader, count = self.votes.most_common(1)[0]
        if count < self.confirm:
            return None
        self.done = True
        confidence, payload = self.best[leader]
        return parse_plate(leader), confidence, payload

    def unread(self, at_ns: int) -> PlateRejected | None:
        """What to say of a vehicle that left without a confirmed plate (``None``: nothing was tried)."""
        if self.done or self.frames == 0:
            return None
        best = self.votes.most_common(1)[0][0] if self.votes else self.low_confidence
        if self.votes:
            reason, detail = (
                PlateRejectReason.UNREAD,
                f"no plate read in {self.confirm} of {self.frames} frames",
            )
        elif self.low_confidence is not None:
            reason, detail = (
                PlateRejectReason.LOW_CONFIDENCE,
                f"below {self.min_confidence} in {self.frames} frames",
            )
        elif self.seen_text:
            reason, detail = PlateRejectReason.NOT_A_PLATE, f"text in {self.frames} frames, none a plate"
        else:
            reason, detail = PlateRejectReason.UNREAD, f"no text in {self.frames} frames"
        return PlateRejected(reason, detail, best=best, at_ns=at_ns)

    def reset(self) -> None:
        self.votes.clear()
        self.best.clear()
        self.frames = 0
        self.done = False
        self.seen_text = False
        self.low_confidence = None


class ChangeGate:
    """ "A vehicle is in the region" from the picture alone, for lanes with no loop detector.

    The region is shrunk and blurred; a pixel has changed when it differs from a running
    average of the empty lane by more than ``level``; the lane is occupied while more than
    ``share`` of pixels have changed.  The background learns only while the lane is
    empty, slowly, so dusk is learnt and a car waiting at the arm is not.
    """

    def __init__(
        self, *, level: int = 28, share: float = 0.08, learn: float = 0.03, clear_frames: int = 3
    ) -> None:
        self.level = level
        self.share = share
        self.learn = learn
        self.clear_frames = clear_frames
        self._background: np.ndarray | None = None
        self._quiet = 0
        self.occupied = False

    def update(self, region: np.ndarray) -> bool:
        small = cv2.GaussianBlur(cv2.resize(region, (80, 48), interpolation=cv2.INTER_AREA), (5, 5), 0)
        small = small.astype(np.float32)
        if self._background is None:
            self._background = small
            return False
        changed = float(np.mean(np.abs(small - self._background) > self.level))
        if changed > self.share:
            self._quiet = 0
            self.occupied = True
        else:
            self._quiet += 1
            if self._quiet >= self.clear_frames:
                self.occupied = False
        if not self.occupied:
            cv2.accumulateWeighted(small, self._background, self.learn)
        return self.occupied


ReadingCallback = Callable[[PlateReading], None]
RejectCallback = Callable[[PlateRejected], None]
StateCallback = Callable[[ScannerState, str | None], None]
PresenceCallback = Callable[[bool, int], None]


class LaneRecogniser:
    """A lane camera and the plate model: one :class:`PlateReading` per vehicle.

    ``gate`` is ``"loop"`` (the lane calls :meth:`vehicle_present` from its loop
    detector) or ``"change"`` (:class:`ChangeGate` on the region; ``on_presence`` then
    reports the vehicle coming and going, so the lane can use it as its loop), or
    ``"none"``: every frame, for ever -- no configuration offers it; it is the benchmark's
    ungated baseline.
    ``recogniser`` may be shared by lanes (the model is loaded once).  Other keyword
    arguments go to :class:`~drivers.camera.Camera`.
    """

    def __init__(
        self,
        source: str | int | Path | Capture,
        *,
        on_reading: ReadingCallback,
        on_reject: RejectCallback,
        on_state: StateCallback | None = None,
        on_presence: PresenceCallback | None = None,
        region: Region | None = None,
        gate: str = "loop",
        confirm: int = 2,
        min_confidence: float = 0.8,
        max_frames: int = 50,
        recogniser: PlateRecogniser | None = None,
        name: str | None = None,
        **camera_options: Any,
    ) -> None:
        if gate not in ("loop", "change", "none"):
            raise ValueError("gate must be loop, change or none")
        self.recogniser = recogniser or PlateRecogniser()
        self.region = region
        self.gate = gate
        self.on_reading = on_reading
        self.on_reject = on_reject
        self.on_state = on_state
        self.on_presence = on_presence
        self.max_frames = max_frames
        self.readings = VehicleReadings(confirm=confirm, min_confidence=min_confidence)
        self.change = ChangeGate() if gate == "change" else None
        self.camera = Camera(source, on_frame=self._on_frame, on_state=on_state, name=name, **camera_options)
        self.name = self.camera.name
        self._present = gate == "none"
        self._lock = threading.Lock()
        self.frames_seen = 0
        self.frames_recognised = 0
        self.recognise_ns = 0

    @property
    def alive(self) -> bool:
        return self.camera.alive

    def start(self) -> None:
        self.camera.start()

    def close(self, timeout: float = 2.0) -> None:
        self.camera.close(timeout)

    def vehicle_present(self, present: bool, at_ns: int | None = None) -> None:
        """The loop detector's word: recognise from now on, or stop and close the vehicle's readings."""
        rejected: PlateRejected | None = None
        with self._lock:
            if present == self._present:
                return
            self._present = present
            if not present:
                rejected = self.readings.unread(at_ns or time.monotonic_ns())
                self.readings.reset()
        if rejected is not None:
            self._emit_reject(rejected)

    def recognise(self, image: np.ndarray, at_ns: int) -> PlateReading | None:
        """One frame through crop, model, checks and merge (the frame callback's work; public for benchmarks)."""
        region = self._crop(image)
        started = time.perf_counter_ns()
        texts = self.recogniser.texts(region)
        self.recognise_ns += time.perf_counter_ns() - started
        self.frames_recognised += 1
        confirmed = self.readings.add(candidates(texts))
        if confirmed is None:
            return None
        plate, confidence, payload = confirmed
        return PlateReading(plate, confidence, crop_jpeg(region, payload.box), at_ns, self.readings.frames)

    def _crop(self, image: np.ndarray) -> np.ndarray:
        if self.region is None:
            return image
        x, y, w, h = self.region
        return image[y : y + h, x : x + w]

    def _on_frame(self, frame: Frame) -> None:
        self.frames_seen += 1
        if self.change is not None:
            was = self.change.occupied
            now = self.change.update(self._crop(frame.grey))
            if now != was:
                if self.on_presence is not None:
                    self.on_presence(now, frame.at_ns)
                self.vehicle_present(now, frame.at_ns)
        reading: PlateReading | None = None
        rejected: PlateRejected | None = None
        with self._lock:
            if not self._present or self.readings.done:
                return  # an empty lane, or a vehicle already read: the model is not run
            if self.readings.frames >= self.max_frames:
                rejected = self.readings.unread(frame.at_ns)
                self.readings.done = True
            else:
                reading = self.recognise(frame.grey, frame.at_ns)
        if rejected is not None:
            self._emit_reject(rejected)
            return
        if reading is not None:
            try:
                self.on_reading(reading)
            except Exception:
                log.exception("lane camera %s: reading callback failed", self.name)

    def _emit_reject(self, rejected: PlateRejected) -> None:
        log.info("lane camera %s: %s (%s)", self.name, rejected.reason, rejected.detail)
        try:
            self.on_reject(rejected)
        except Exception:
            log.exception("lane camera %s: reject callback failed", self.name)
