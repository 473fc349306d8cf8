"""The shipped decoder: work only where it pays, and never longer than the frame budget.

A gate camera looks at an empty gate almost all the time, and at a pass for a second or
two.  Decoding every full frame (what a first prototype does) spends a core on a wall.
:class:`SmartDecoder` spends per frame:

1. **Nothing changed** (about 0.3 ms): a 160-pixel-wide thumbnail is compared, in 8x8
   blocks, with the one of the last frame it analysed; if no block's mean difference
   exceeds ``change_threshold`` grey levels, the frame is not decoded and the codes seen
   last are reported as still in view.  Sensor noise averages out in a block; a hand
   with a pass does not.  Comparing with the last *analysed* frame (not the previous one)
   lets slow drift add up until it counts.
2. **One full read** (1-3 ms at 720p): the backend reads the whole frame, inverted codes
   included.  Almost every readable pass ends here.
3. **Try harder where a code is likely**: where the backend located a symbol it could
   not decode, or -- for frames where nothing was located -- where the scene changed *and*
   the texture has strong edges in both directions (a QR symbol does; walls, bars and
   people mostly do not), the region is cut out and repaired (:mod:`drivers.qr.enhance`)
   and read again.  Each try starts only while the frame is within ``budget_ms``.
4. **Retry**: a region that stays likely but unread is tried again every ``retry_s``
   even if the scene is still, because fresh sensor noise and a small hand movement are
   often all a marginal code needs -- at most ``max_retries`` times until the scene
   changes, so a textured sign that merely looks like a code is not tried for ever.

Every payload reported is one the backend decoded with its error correction intact;
nothing here guesses or repairs bytes, so a partial or wrong payload cannot come out of
a repair -- only a frame that reads or does not.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from drivers.qr.backends import Decoded, DecoderConfigError, QrBackend, Quad, Reading, make_backend
from drivers.qr.enhance import DEFAULT_TRIES, TRIES, Try

__all__ = ["ChangeDetector", "FrameDecoder", "FrameResult", "NaiveDecoder", "SmartDecoder", "texture_regions"]

Box = tuple[int, int, int, int]
"""x0, y0, x1, y1 in frame pixels (x1, y1 exclusive)."""


@dataclass(frozen=True, slots=True)
class FrameResult:
    """What a decoder made of one frame."""

    codes: tuple[Decoded, ...] = ()
    analysed: bool = True
    """False when the frame was skipped as unchanged: ``codes`` is then empty and the codes
    of the last analysed frame should be taken as still in view."""
    likely: bool = False
    """A code seemed present (located by the backend, or textured where the scene changed)."""
    unread: int = 0
    """Likely regions still unread when the decoder stopped."""
    tries: tuple[str, ...] = ()
    """The repairs attempted, in order (empty when the full read sufficed)."""
    elapsed_ns: int = 0
    over_budget: bool = False
    """Some tries were skipped because the frame's time budget was spent."""


class FrameDecoder(ABC):
    """Interface of a frame decoder: greyscale frames in, :class:`FrameResult` out.  Not thread-safe."""

    name: str = "decoder"

    @abstractmethod
    def decode(self, grey: np.ndarray) -> FrameResult: ...

    def reset(self) -> None:  # noqa: B027 - stateless decoders have nothing to forget
        """Forget the previous frames (a new stream starts)."""


class NaiveDecoder(FrameDecoder):
    """Every full frame through the backend once: the baseline the benchmark compares with."""

    def __init__(self, backend: str | QrBackend = "zxing", *, invert: bool = True) -> None:
        self.backend = make_backend(backend) if isinstance(backend, str) else backend
        self.invert = invert
        self.name = f"naive-{self.backend.name}"

    def decode(self, grey: np.ndarray) -> FrameResult:
        began = time.perf_counter_ns()
        reading = self.backend.read(grey, invert=self.invert)
        return FrameResult(
            _unique(reading.codes),
            True,
            bool(reading.codes or reading.suspects),
            len(reading.suspects),
            (),
            time.perf_counter_ns() - began,
        )


@dataclass(frozen=True, slots=True)
class Change:
    thumb: np.ndarray
    blocks: np.ndarray
    """Per-block mean absolute difference from the reference (all infinite when there is none)."""
    changed: bool


class ChangeDetector:
    """Has the picture changed since the reference?  Blockwise, on a small thumbnail."""

    def __init__(self, *, width: int = 160, block: int = 8, threshold: float = 6.0) -> None:
        if width < 16 or block < 1 or threshold <= 0:
            raise DecoderConfigError("change detection needs width >= 16, block >= 1, threshold > 0")
        self.width = width
        self.block = block
        self.threshold = threshold
        self.reference: np.ndarray | None = None

    def compare(self, grey: np.ndarray) -> Change:
        h, w = grey.shape[:2]
        size = (self.width, max(self.block, round(self.width * h / w)))
        thumb = cv2.resize(grey, size, interpolation=cv2.INTER_AREA)
        grid = (max(1, size[0] // self.block), max(1, size[1] // self.block))
        if self.reference is None or self.reference.shape != thumb.shape:
            return Change(thumb, np.full((grid[1], grid[0]), np.inf, np.float32), True)
        blocks = cv2.resize(cv2.absdiff(thumb, self.reference), grid, interpolation=cv2.INTER_AREA)
        blocks = blocks.astype(np.float32)
        return Change(thumb, blocks, bool(blocks.max() > self.threshold))

    def accept(self, change: Change) -> None:
        self.reference = change.thumb

    def reset(self) -> None:
        self.reference = None


def texture_regions(
    grey: np.ndarray,
    changed: np.ndarray | None = None,
    *,
    threshold: float = 0.45,
    max_regions: int = 3,
) -> list[Box]:
    """Regions that look like a QR symbol: dense edges both across and along, relative to brightness.

    Scored on a 320-pixel-wide copy: the box-filtered horizontal and vertical gradients,
    the smaller of the two, divided by the local brightness (so dusk scores like day).
    ``changed`` (a block grid of booleans from :class:`ChangeDetector`) keeps only regions
    where the scene changed, so a sign or a fence is not tried frame after frame.
    """
    h, w = grey.shape[:2]
    width = min(320, w)
    height = max(8, round(width * h / w))
    small = cv2.resize(grey, (width, height), interpolation=cv2.INTER_AREA)
    gx = cv2.convertScaleAbs(cv2.Sobel(small, cv2.CV_16S, 1, 0, ksize=3))
    gy = cv2.convertScaleAbs(cv2.Sobel(small, cv2.CV_16S, 0, 1, ksize=3))
    both = np.minimum(cv2.boxFilter(gx, cv2.CV_32F, (7, 7)), cv2.boxFilter(gy, cv2.CV_32F, (7, 7)))
    light = cv2.boxFilter(small, cv2.CV_32F, (15, 15))
    mask = (both / (light + 16.0) > threshold).astype(np.uint8)
    if changed is not None:
        moved = cv2.resize(changed.astype(np.uint8), (width, height), interpolation=cv2.INTER_NEAREST)
        mask &= cv2.dilate(moved, np.ones((9, 9), np.uint8))
    mask = cv2.morphologyEx(mask, cv2.MORPH_CLOSE, np.ones((5, 5), np.uint8))
    count, _, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
    found: list[tuple[int, Box]] = []
    sx, sy = w / width, h / height
    for i in range(1, count):
        x, y, bw, bh, area = (int(v) for v in stats[i])
        if bw < 6 or bh < 6 or area < 30 or max(bw, bh) > 4 * min(bw, bh):
            continue
        box = (int(x * sx), int(y * sy), int((x + bw) * sx), int((y + bh) * sy))
        found.append((area, _grow(box, 0.15, w, h)))
    found.sort(reverse=True)
    return [box for _, box in found[:max_regions]]


class SmartDecoder(FrameDecoder):
    """Change detection, one full read, then repairs where a code is likely, within a time budget.

    ``budget_ms`` bounds the tries, not the full read: the full read of one frame is
    always done, because stopping it half-way would only waste it.  On a Raspberry Pi 4
    (4-5x slower than a desktop core) keep the default 40 ms at 720p; the camera driver
    drops frames that arrive while one is decoded, so a slow frame delays, never queues.
    """

    def __init__(
        self,
        backend: str | QrBackend = "zxing",
        *,
        budget_ms: float = 40.0,
        change_threshold: float = 6.0,
        retry_s: float = 0.25,
        tries: Sequence[str] = DEFAULT_TRIES,
        texture_threshold: float = 0.45,
        max_retries: int = 8,
    ) -> None:
        if budget_ms <= 0 or retry_s <= 0 or max_retries < 0:
            raise DecoderConfigError("budget_ms and retry_s must be positive, max_retries not negative")
        unknown = [name for name in tries if name not in TRIES]
        if unknown:
            raise DecoderConfigError(f"unknown tries {unknown}; known: {', '.join(TRIES)}")
        self.backend = make_backend(backend) if isinstance(backend, str) else backend
        self.name = f"smart-{self.backend.name}"
        self.budget_ns = int(budget_ms * 1e6)
        self.retry_ns = int(retry_s * 1e9)
        self.tries: tuple[Try, ...] = tuple(TRIES[name] for name in tries)
        self.texture_threshold = texture_threshold
        self.change = ChangeDetector(threshold=change_threshold)
        self.max_retries = max_retries
        self._pending: list[Box] = []
        """Likely regions left unread by the last analysed frame."""
        self._retries = 0
        self._last_try_ns = 0

    def reset(self) -> None:
        self.change.reset()
        self._pending = []
        self._retries = 0

    def decode(self, grey: np.ndarray) -> FrameResult:
        began = time.perf_counter_ns()
        change = self.change.compare(grey)
        retry = (
            bool(self._pending)
            and self._retries < self.max_retries
            and began - self._last_try_ns >= self.retry_ns
        )
        if not change.changed and not retry:
            return FrameResult(analysed=False, elapsed_ns=time.perf_counter_ns() - began)
        self._retries = 0 if change.changed else self._retries + 1
        self.change.accept(change)
        self._last_try_ns = began
        reading = self.backend.read(grey, invert=True)
        codes = list(reading.codes)
        regions = self._regions(grey, reading, change)
        tried: list[str] = []
        over_budget = False
        unread = 0
        for box in regions:
            x0, y0, x1, y1 = box
            region = grey[y0:y1, x0:x1]
            found: tuple[Decoded, ...] = ()
            for attempt in self.tries:
                if attempt.max_side is not None and max(region.shape[:2]) > attempt.max_side:
                    continue
                if time.perf_counter_ns() - began > self.budget_ns:
                    over_budget = True
                    break
                tried.append(attempt.name)
                result = self.backend.read(attempt.apply(region), invert=True)
                found = tuple(_placed(code, attempt, x0, y0) for code in result.codes)
                if found:
                    break
            if found:
                codes.extend(found)
            else:
                unread += 1
        self._pending = [box for box in regions if not _covered(box, codes)] if unread else []
        return FrameResult(
            _unique(codes),
            True,
            bool(codes or regions),
            unread,
            tuple(tried),
            time.perf_counter_ns() - began,
            over_budget,
        )

    def _regions(self, grey: np.ndarray, reading: Reading, change: Change) -> list[Box]:
        """Where to try harder: located-but-unread symbols first, then new textured areas."""
        h, w = grey.shape[:2]
        boxes = [_grow(_bounds(q), 0.25, w, h) for q in reading.suspects]
        boxes = [b for b in boxes if not _covered(b, reading.codes)]
        if boxes or not reading.codes:
            if self._pending and not change.changed:
                boxes += self._pending  # a retry of a still scene
            else:
                # A located symbol's outline is often only part of it (a finder pattern
                # or two): the textured area around it holds the whole code.
                moved = change.blocks > self.change.threshold
                found = texture_regions(grey, moved, threshold=self.texture_threshold)
                boxes += [b for b in found if not _covered(b, reading.codes)]
        return _merge(boxes)


def _placed(code: Decoded, attempt: Try, x0: int, y0: int) -> Decoded:
    s = attempt.scale
    quad = tuple((x / s + x0, y / s + y0) for x, y in code.quad)
    return Decoded(code.raw, code.symbology, quad, attempt.name)  # type: ignore[arg-type]


def _bounds(quad: Quad) -> Box:
    xs = [p[0] for p in quad]
    ys = [p[1] for p in quad]
    return int(min(xs)), int(min(ys)), int(np.ceil(max(xs))), int(np.ceil(max(ys)))


def _grow(box: Box, by: float, width: int, height: int) -> Box:
    x0, y0, x1, y1 = box
    dx, dy = int((x1 - x0) * by) + 4, int((y1 - y0) * by) + 4
    return max(0, x0 - dx), max(0, y0 - dy), min(width, x1 + dx), min(height, y1 + dy)


def _overlap(a: Box, b: Box) -> float:
    """Intersection over the smaller box's area."""
    ix = max(0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0, min(a[3], b[3]) - max(a[1], b[1]))
    smaller = min((a[2] - a[0]) * (a[3] - a[1]), (b[2] - b[0]) * (b[3] - b[1]))
    return ix * iy / smaller if smaller > 0 else 0.0


def _covered(box: Box, codes: Sequence[Decoded]) -> bool:
    return any(_overlap(box, _bounds(code.quad)) > 0.5 for code in codes)


def _merge(boxes: list[Box]) -> list[Box]:
    out: list[Box] = []
    for box in boxes:
        for i, kept in enumerate(out):
            if _overlap(box, kept) > 0.5:
                out[i] = (
                    min(box[0], kept[0]),
                    min(box[1], kept[1]),
                    max(box[2], kept[2]),
                    max(box[3], kept[3]),
                )
                break
        else:
            out.append(box)
    return [b for b in out if b[2] - b[0] >= 8 and b[3] - b[1] >= 8]


def _unique(codes: Sequence[Decoded]) -> tuple[Decoded, ...]:
    seen: dict[bytes, Decoded] = {}
    for code in codes:
        seen.setdefault(code.raw, code)
    return tuple(seen.values())
