"""A synthetic gate camera: real QR passes rendered into scenes, live or as a video file.

Decoders are only as good as the pictures they are tested on, so the scenes here are
made to fail them the way a real gate does: a pass held too far away or too close,
tilted towards the camera, upside down, out of focus, in sensor noise, under a lamp's
glare, at dusk, on a phone in dark mode (light modules on black), half under a thumb,
two people at once, and -- most of the time -- nobody at all.  Every code is a real
QR symbol made by :mod:`segno`, so a decoder that reads it has read a real pass.

Three ways to use it:

* :class:`SceneRenderer` draws one :class:`Scene` (the labelled set in
  :mod:`simulator.camera_set` is built from it);
* :class:`SyntheticCamera` is a live frame source with the ``read()``/``release()``
  interface of ``cv2.VideoCapture``: people present passes on a :class:`Presentation`
  timeline, the hand shakes a little, the sensor is noisy, and the camera can be
  unplugged and plugged in again;
* :func:`write_video` records a camera into a file (MJPG in AVI, as a USB camera sends)
  that OpenCV opens for real, so the capture driver is tested end to end.

The driver opens a synthetic camera by URL, ``sim://?codes=123456789012,987654321098``,
like pyserial opens ``loop://``: see :func:`camera_from_url` for the parameters.
"""

from __future__ import annotations

import math
import random
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Literal
from urllib.parse import parse_qs, urlsplit

import cv2
import numpy as np
import segno

__all__ = [
    "CONDITIONS",
    "CodeInScene",
    "Look",
    "Presentation",
    "Scene",
    "SceneRenderer",
    "SyntheticCamera",
    "camera_from_url",
    "pass_matrix",
    "scene_for",
    "write_video",
]

Carrier = Literal["card", "phone"]

EMPTY_BANK = 16
"""Noisy frames of the empty gate a :class:`SyntheticCamera` cycles through."""

SUPERSAMPLE = 2
"""Codes are warped at this many times the frame's resolution, then averaged down."""

QUIET_ZONE = 4
"""Modules of white around a symbol, as ISO/IEC 18004 asks; the carrier adds its own margin."""

CONDITIONS = (
    "plain",
    "small",
    "large",
    "tilt",
    "rotation",
    "blur",
    "noise",
    "glare",
    "low_light",
    "dark_mode",
    "covered",
    "two_codes",
    "empty",
)
"""Conditions in which a person could still read the code; ``beyond`` (see :func:`scene_for`) is not one."""


@dataclass(frozen=True, slots=True)
class CodeInScene:
    """One pass in a scene, placed in frame-relative units so a scene renders at any resolution.

    ``size`` is the side of the symbol including its quiet zone, as a fraction of the
    frame height.  ``tilt_x``/``tilt_y`` turn the pass about its horizontal/vertical axis
    (degrees; 0 faces the camera).  ``cover`` is how far a thumb reaches over the symbol
    from its lower edge, as a fraction of the symbol's side.
    """

    payload: bytes
    center: tuple[float, float] = (0.5, 0.5)
    size: float = 0.4
    rotation: float = 0.0
    tilt_x: float = 0.0
    tilt_y: float = 0.0
    carrier: Carrier = "card"
    dark_mode: bool = False
    cover: float = 0.0
    error: str = "m"


@dataclass(frozen=True, slots=True)
class Look:
    """What the lens and the sensor do to the whole frame.

    ``light`` scales the scene's brightness (1 is daylight, 0.1 dusk); a phone screen
    emits its own light and keeps at least ``screen_light``.  ``glare`` is the strength
    (0..1 of full white) of a bright blob at ``glare_at`` of radius ``glare_radius``
    (fraction of the frame height).  ``blur`` is the sigma of a Gaussian defocus in
    pixels at 480 lines (scaled with the frame), ``noise`` the sigma of sensor noise in
    grey levels.
    """

    light: float = 1.0
    screen_light: float = 0.8
    glare: float = 0.0
    glare_at: tuple[float, float] = (0.5, 0.5)
    glare_radius: float = 0.15
    blur: float = 0.0
    noise: float = 2.0


@dataclass(frozen=True, slots=True)
class Scene:
    codes: tuple[CodeInScene, ...] = ()
    look: Look = field(default_factory=Look)


def pass_matrix(payload: bytes | str, error: str = "m") -> np.ndarray:
    """The modules of a pass as a 0/1 array (1 = dark), quiet zone included.

    Digits are encoded in QR numeric mode (as production passes are); anything else in
    byte mode, so binary payloads are exactly their bytes.
    """
    data: bytes | str = payload
    if isinstance(payload, bytes) and payload.isdigit():
        data = payload.decode("ascii")
    qr = segno.make_qr(data, error=error, boost_error=False)
    return np.pad(np.array(qr.matrix, dtype=np.uint8), QUIET_ZONE)


_matrix_cache: dict[tuple[bytes, str], np.ndarray] = {}


def _cached_matrix(payload: bytes, error: str) -> np.ndarray:
    key = (payload, error)
    matrix = _matrix_cache.get(key)
    if matrix is None:
        if len(_matrix_cache) > 512:
            _matrix_cache.clear()
        matrix = _matrix_cache[key] = pass_matrix(payload, error)
    return matrix


class SceneRenderer:
    """Draws scenes over one fixed gate background at one resolution.

    The background (a wall, the ground, the gate's bars and a sign) is drawn once; each
    frame composites the passes, then applies light, glare, defocus and sensor noise,
    in the order the light meets them.  Rendering is deterministic for a given ``rng``.
    """

    def __init__(self, width: int = 640, height: int = 480, *, seed: int = 0) -> None:
        if width < 64 or height < 48:
            raise ValueError("frame too small")
        self.width = width
        self.height = height
        self.background = _gate_background(width, height, random.Random(seed))
        self._carriers: dict[tuple[object, ...], tuple[np.ndarray, float]] = {}
        """Recently drawn carriers: a live camera redraws the same pass every frame as the hand sways."""

    def render(self, scene: Scene, rng: np.random.Generator | None = None) -> np.ndarray:
        """One BGR uint8 frame of ``scene``."""
        rng = rng if rng is not None else np.random.default_rng(0)
        look = scene.look
        frame = self.background * np.float32(look.light)
        for code in scene.codes:
            self._composite(frame, code, look)
        if look.glare > 0:
            frame += _glare(self.width, self.height, look)
        if look.blur > 0:
            sigma = look.blur * self.height / 480
            frame = cv2.GaussianBlur(frame, (0, 0), sigma)
        if look.noise > 0:
            # Sensor noise, as luminance: the decoders see grey anyway.  OpenCV's generator
            # (seeded from ``rng``, so frames stay reproducible) is 4x faster than numpy's.
            cv2.setRNGSeed(int(rng.integers(2**31)))
            grain = np.empty((self.height, self.width), np.float32)
            cv2.randn(grain, 0.0, float(look.noise))
            frame = cv2.add(frame, cv2.merge((grain, grain, grain)))
        return np.clip(frame, 0, 255, out=frame).astype(np.uint8)

    def code_quad(self, code: CodeInScene) -> np.ndarray:
        """The four corners (x, y) of the symbol (quiet zone included) in frame pixels."""
        return _project(code, self.width, self.height, 1.0)

    def _composite(self, frame: np.ndarray, code: CodeInScene, look: Look) -> None:
        matrix = _cached_matrix(code.payload, code.error)
        side_px = code.size * self.height
        # Draw the carrier at about two source pixels per frame pixel, warp it into a
        # patch at twice the frame's resolution and average that down: a sensor integrates
        # light over each pixel, and plain point sampling would alias small codes.
        scale = max(2, math.ceil(SUPERSAMPLE * side_px / matrix.shape[0]))
        key = (code.payload, code.error, scale, code.carrier, code.dark_mode, code.cover)
        cached = self._carriers.get(key)
        if cached is None:
            if len(self._carriers) >= 16:
                self._carriers.pop(next(iter(self._carriers)))
            cached = self._carriers[key] = _carrier_image(matrix, scale, code)
        carrier, symbol_fraction = cached
        brightness = max(look.light, look.screen_light) if code.carrier == "phone" else look.light
        h, w = carrier.shape[:2]
        src = np.float32([[0, 0], [w, 0], [w, h], [0, h]])
        dst = _project(code, self.width, self.height, 1.0 / symbol_fraction).astype(np.float32)
        x0, y0 = np.floor(dst.min(axis=0)).astype(int)
        x1, y1 = np.ceil(dst.max(axis=0)).astype(int)
        x0, y0 = max(x0, 0), max(y0, 0)
        x1, y1 = min(x1, self.width), min(y1, self.height)
        if x1 <= x0 or y1 <= y0:
            return
        # Warp only into the bounding box: a full-frame warp per code would dominate the cost.
        shifted = (dst - np.float32([x0, y0])) * SUPERSAMPLE
        transform = cv2.getPerspectiveTransform(src, shifted)
        fine = cv2.warpPerspective(
            carrier, transform, ((x1 - x0) * SUPERSAMPLE, (y1 - y0) * SUPERSAMPLE), flags=cv2.INTER_LINEAR
        )
        patch = cv2.resize(fine, (x1 - x0, y1 - y0), interpolation=cv2.INTER_AREA)
        alpha = np.ascontiguousarray(patch[:, :, 3])
        colour = np.ascontiguousarray(patch[:, :, :3]) * np.float32(brightness)
        region = np.ascontiguousarray(frame[y0:y1, x0:x1])
        frame[y0:y1, x0:x1] = cv2.blendLinear(colour, region, alpha, 1.0 - alpha)


def _project(code: CodeInScene, width: int, height: int, grow: float) -> np.ndarray:
    """Corners of a square of side ``code.size * grow`` (frame heights) turned and tilted in 3-D, then projected."""
    half = code.size * grow * height / 2
    corners = np.array([[-half, -half, 0], [half, -half, 0], [half, half, 0], [-half, half, 0]], float)
    rz, rx, ry = (math.radians(a) for a in (code.rotation, code.tilt_x, code.tilt_y))
    rot_z = np.array([[math.cos(rz), -math.sin(rz), 0], [math.sin(rz), math.cos(rz), 0], [0, 0, 1]])
    rot_x = np.array([[1, 0, 0], [0, math.cos(rx), -math.sin(rx)], [0, math.sin(rx), math.cos(rx)]])
    rot_y = np.array([[math.cos(ry), 0, math.sin(ry)], [0, 1, 0], [-math.sin(ry), 0, math.cos(ry)]])
    turned = corners @ (rot_y @ rot_x @ rot_z).T
    focal = 1.2 * width  # a typical ~60 degree lens
    depth = focal + turned[:, 2]
    cx, cy = code.center[0] * width, code.center[1] * height
    return np.stack([cx + turned[:, 0] * focal / depth, cy + turned[:, 1] * focal / depth], axis=1)


def _carrier_image(matrix: np.ndarray, scale: int, code: CodeInScene) -> tuple[np.ndarray, float]:
    """The pass on its card or phone as float32 BGRA (alpha 1 on the carrier), and the symbol's share of its side."""
    symbol = cv2.resize(matrix, None, fx=scale, fy=scale, interpolation=cv2.INTER_NEAREST)
    n = symbol.shape[0]
    # Ink 25 on paper 245; a phone in dark mode draws light modules (235) on black (18).
    on, off = (235.0, 18.0) if code.dark_mode else (25.0, 245.0)
    tile = symbol.astype(np.float32) * np.float32(on - off) + np.float32(off)
    if code.carrier == "phone":
        margin = max(2, n // 14)  # the bezel
        side = n + 2 * margin
        body = np.full((side, side, 4), 30.0, np.float32)
    else:
        margin = max(1, scale)
        side = n + 2 * margin
        body = np.full((side, side, 4), 245.0, np.float32)
    body[margin : margin + n, margin : margin + n, :3] = tile[:, :, None]
    body[:, :, 3] = 1.0
    if code.cover > 0:
        # A thumb from below, on the side away from the finder patterns' corner pair.
        reach = int(code.cover * n)
        centre = (margin + int(n * 0.62), margin + n + reach // 3)
        axes = (max(1, int(n * 0.16)), max(1, reach + reach // 3))
        cv2.ellipse(body, centre, axes, 0, 0, 360, (120.0, 150.0, 200.0, 1.0), -1)
    return body, n / side


def _glare(width: int, height: int, look: Look) -> np.ndarray:
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    gx, gy = look.glare_at[0] * width, look.glare_at[1] * height
    radius = look.glare_radius * height
    blob = np.exp(-((xx - gx) ** 2 + (yy - gy) ** 2) / (2 * radius * radius))
    return (blob * np.float32(255.0 * look.glare))[:, :, None]


def _gate_background(width: int, height: int, rng: random.Random) -> np.ndarray:
    """A plain, mostly empty gate: wall, ground, a few bars and a sign -- texture a decoder must ignore."""
    frame = np.zeros((height, width, 3), np.float32)
    horizon = int(height * rng.uniform(0.55, 0.7))
    wall = np.linspace(170, 120, horizon, dtype=np.float32)[:, None, None]
    frame[:horizon] = wall * np.float32([0.95, 1.0, 1.05])
    ground = np.linspace(90, 60, height - horizon, dtype=np.float32)[:, None, None]
    frame[horizon:] = ground * np.float32([1.0, 1.0, 0.95])
    for _ in range(rng.randint(3, 6)):
        x = rng.randint(0, width - 1)
        bar = max(2, width // rng.randint(60, 120))
        cv2.rectangle(frame, (x, 0), (x + bar, horizon + height // 10), (60.0, 62.0, 65.0), -1)
    sx, sy = rng.randint(0, width * 3 // 4), rng.randint(0, horizon // 2)
    cv2.rectangle(frame, (sx, sy), (sx + width // 6, sy + height // 12), (40.0, 110.0, 30.0), -1)
    canvas = frame.astype(np.uint8)
    scale, thickness = height / 900, max(1, height // 400)
    cv2.putText(
        canvas,
        "GATE 2",
        (sx + 4, sy + height // 16),
        cv2.FONT_HERSHEY_SIMPLEX,
        scale,
        (240, 240, 240),
        thickness,
    )
    return canvas.astype(np.float32)


# -- conditions --------------------------------------------------------------------------


def scene_for(condition: str, payloads: Sequence[bytes], rng: random.Random) -> tuple[Scene, bool]:
    """A random scene in ``condition`` holding ``payloads`` (one, or two for ``two_codes``; none for ``empty``).

    Returns the scene and whether a person could still read it.  The ranges are those of
    a pass held at a gate: ``small`` is about 2-3 px a module, ``blur`` up to half a module,
    ``covered`` up to a tenth of the symbol.  ``beyond`` goes past that on purpose (under
    1.4 px a module, defocus over a module, finder patterns hidden) and is labelled unreadable.
    """
    u = rng.uniform

    def base(payload: bytes, **changes: object) -> CodeInScene:
        code = CodeInScene(
            payload,
            center=(u(0.35, 0.65), u(0.35, 0.65)),
            size=u(0.3, 0.5),
            rotation=u(-12, 12),
            tilt_x=u(-10, 10),
            tilt_y=u(-10, 10),
            carrier="phone" if rng.random() < 0.3 else "card",
        )
        return replace(code, **changes)  # type: ignore[arg-type]

    def modules(payload: bytes) -> int:
        return _cached_matrix(payload, "m").shape[0]

    look = Look(noise=u(1.5, 4))
    readable = True
    first = payloads[0] if payloads else b""
    codes: tuple[CodeInScene, ...]
    if condition == "empty":
        return Scene((), look), True
    if condition == "plain":
        codes = (base(first),)
    elif condition == "small":
        px = u(2.0, 3.0)  # pixels per module at 480 lines
        codes = (base(first, size=px * modules(first) / 480),)
    elif condition == "large":
        codes = (base(first, size=u(0.7, 0.9), center=(u(0.45, 0.55), 0.5)),)
    elif condition == "tilt":
        codes = (base(first, tilt_x=rng.choice((-1, 1)) * u(25, 50), tilt_y=rng.choice((-1, 1)) * u(0, 35)),)
    elif condition == "rotation":
        codes = (base(first, rotation=u(0, 360)),)
    elif condition == "blur":
        code = base(first)
        module_px = code.size * 480 / modules(first)
        codes = (code,)
        look = replace(look, blur=u(0.25, 0.6) * module_px)
    elif condition == "noise":
        codes = (base(first),)
        look = replace(look, noise=u(10, 25))
    elif condition == "glare":
        code = base(first)
        # The lamp's reflection sits on the pass, off its centre, washing out part of it.
        at = (code.center[0] + u(-0.08, 0.08), code.center[1] + u(-0.08, 0.08))
        codes = (code,)
        look = replace(look, glare=u(0.5, 0.95), glare_at=at, glare_radius=u(0.06, 0.12))
    elif condition == "low_light":
        codes = (base(first, carrier="card"),)
        look = replace(look, light=u(0.07, 0.2), noise=u(3, 8))
    elif condition == "dark_mode":
        codes = (base(first, carrier="phone", dark_mode=True),)
    elif condition == "covered":
        codes = (base(first, cover=u(0.1, 0.25)),)
    elif condition == "two_codes":
        second = payloads[1] if len(payloads) > 1 else first
        size = u(0.25, 0.33)
        codes = (
            base(first, size=size, center=(u(0.22, 0.3), u(0.4, 0.6))),
            base(second, size=size, center=(u(0.7, 0.78), u(0.4, 0.6))),
        )
    elif condition == "beyond":
        readable = False
        kind = rng.choice(("tiny", "defocus", "finder"))
        if kind == "tiny":
            codes = (base(first, size=u(0.8, 1.3) * modules(first) / 480),)
        elif kind == "defocus":
            code = base(first)
            codes = (code,)
            look = replace(look, blur=u(1.1, 1.6) * code.size * 480 / modules(first))
        else:
            codes = (base(first, cover=u(0.6, 0.8)),)
    else:
        raise ValueError(f"unknown condition {condition!r}; known: {', '.join(CONDITIONS)}, beyond")
    return Scene(codes, look), readable


# -- a live camera ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Presentation:
    """Someone holds up ``payloads`` from ``at_s`` for ``hold_s`` seconds, in ``condition``."""

    at_s: float
    payloads: tuple[bytes, ...]
    hold_s: float = 1.5
    condition: str = "plain"


class SyntheticCamera:
    """A camera frame source with the ``cv2.VideoCapture`` reading interface.

    Frame ``i`` shows the gate at ``i / fps`` seconds on the :class:`Presentation`
    timeline.  A pass in view sways a little from frame to frame (a hand is never still)
    and the sensor adds fresh noise to every frame, so consecutive frames of an empty
    scene differ the way a real camera's do.  With ``realtime`` set, :meth:`read` paces
    itself to ``fps`` like a device; otherwise it returns as fast as it renders (tests,
    benchmarks, writing video).  After the last presentation the camera keeps showing an
    empty gate, or stops (``read`` returns ``(False, None)``) if ``duration_s`` is set.

    :meth:`unplug` and :meth:`plug` model a camera dropping out: while unplugged,
    ``read`` fails and ``isOpened`` is false, so the driver must reopen it.
    """

    def __init__(
        self,
        presentations: Iterable[Presentation] = (),
        *,
        width: int = 640,
        height: int = 480,
        fps: float = 30.0,
        seed: int = 0,
        realtime: bool = False,
        duration_s: float | None = None,
        noise: float = 2.5,
    ) -> None:
        if fps <= 0:
            raise ValueError("fps must be positive")
        self.width = width
        self.height = height
        self.fps = fps
        self.seed = seed
        self.realtime = realtime
        self.duration_s = duration_s
        self.noise = noise
        self.presentations = sorted(presentations, key=lambda p: p.at_s)
        self.renderer = SceneRenderer(width, height, seed=seed)
        self.index = 0
        """The number of the next frame."""
        self._plugged = True
        self._opened = True
        self._lock = threading.Lock()
        self._next_due: float | None = None
        self._grabbed: int | None = None
        self._scenes: dict[int, Scene] = {}
        self._noise_rng = np.random.default_rng(seed)
        self._empty: list[np.ndarray] = []

    # -- the VideoCapture interface the driver uses ---------------------------------------

    def isOpened(self) -> bool:  # cv2.VideoCapture's name
        return self._opened and self._plugged

    def grab(self) -> bool:
        """Take the next frame off the (simulated) sensor, at the camera's pace if ``realtime``."""
        with self._lock:
            if not self.isOpened():
                return False
            if self.duration_s is not None and self.index / self.fps >= self.duration_s:
                return False
            if self.realtime:
                self._pace()
            self._grabbed = self.index
            self.index += 1
            return True

    def retrieve(self) -> tuple[bool, np.ndarray | None]:
        """The pixels of the frame last grabbed: rendered only now, so frames skipped by a rate cap cost nothing."""
        grabbed = self._grabbed
        if grabbed is None or not self.isOpened():
            return False, None
        return True, self.frame_at(grabbed)

    def read(self) -> tuple[bool, np.ndarray | None]:
        if not self.grab():
            return False, None
        return self.retrieve()

    def release(self) -> None:
        self._opened = False

    def set(self, prop: int, value: float) -> bool:
        """Resolution and rate are fixed at construction, as on a simple USB camera: refuse politely."""
        return False

    def get(self, prop: int) -> float:
        return {
            cv2.CAP_PROP_FRAME_WIDTH: float(self.width),
            cv2.CAP_PROP_FRAME_HEIGHT: float(self.height),
            cv2.CAP_PROP_FPS: float(self.fps),
            cv2.CAP_PROP_POS_FRAMES: float(self.index),
        }.get(prop, 0.0)

    # -- the simulation --------------------------------------------------------------------

    def unplug(self) -> None:
        self._plugged = False

    def plug(self) -> None:
        """Back again: a reopened device starts streaming from where the clock is, not from frame 0."""
        self._plugged = True
        self._opened = True

    def reopen(self) -> SyntheticCamera:
        """What the driver gets when it opens this camera again (the same device, if plugged in)."""
        self._opened = True
        self._next_due = None
        return self

    def in_view(self, index: int) -> tuple[bytes, ...]:
        """The payloads visible in frame ``index`` (for tests to compare with what was scanned)."""
        presentation = self._presentation_at(index / self.fps)
        if presentation is None or presentation.condition == "empty":
            return ()
        return presentation.payloads[: 2 if presentation.condition == "two_codes" else 1]

    def frame_at(self, index: int) -> np.ndarray:
        t = index / self.fps
        presentation = self._presentation_at(t)
        if presentation is None:
            return self._empty_frame(index)
        scene = self._scene_for(presentation)
        # The hand sways: a slow drift and a small tremor, different for each presentation.
        phase = t - presentation.at_s
        wobble = random.Random(f"{self.seed}:{presentation.at_s}:{index}")
        codes = tuple(
            replace(
                code,
                center=(
                    code.center[0] + 0.01 * math.sin(2.1 * phase + k) + wobble.uniform(-0.002, 0.002),
                    code.center[1] + 0.008 * math.cos(1.7 * phase + k) + wobble.uniform(-0.002, 0.002),
                ),
                rotation=code.rotation + 1.5 * math.sin(1.3 * phase + k),
            )
            for k, code in enumerate(scene.codes)
        )
        look = replace(scene.look, noise=max(scene.look.noise, self.noise))
        return self.renderer.render(Scene(codes, look), self._noise_rng)

    def _presentation_at(self, t: float) -> Presentation | None:
        for presentation in self.presentations:
            if presentation.at_s <= t < presentation.at_s + presentation.hold_s:
                return presentation
            if presentation.at_s > t:
                break
        return None

    def _scene_for(self, presentation: Presentation) -> Scene:
        key = id(presentation)
        scene = self._scenes.get(key)
        if scene is None:
            rng = random.Random(f"{self.seed}:{presentation.at_s}:{presentation.condition}")
            scene, _ = scene_for(presentation.condition, presentation.payloads, rng)
            self._scenes[key] = scene
        return scene

    def _empty_frame(self, index: int) -> np.ndarray:
        """The empty gate with sensor noise, from a bank of noisy frames.

        Drawing fresh noise for a 720p frame costs about 10 ms, a third of a frame period
        at 30 fps, all of it spent in the simulator rather than the code under test.  A bank
        of frames, picked pseudo-randomly, looks the same to a decoder.
        """
        if not self._empty:
            clean = self.renderer.render(Scene((), Look(noise=0)))
            rng = np.random.default_rng(self.seed)
            for _ in range(EMPTY_BANK):
                grain = rng.normal(0.0, self.noise, clean.shape[:2]).astype(np.float32)
                noisy = clean.astype(np.float32) + grain[:, :, None]
                self._empty.append(np.clip(noisy, 0, 255).astype(np.uint8))
        pick = (index * 7919 + self.seed) % EMPTY_BANK
        return self._empty[pick].copy()

    def _pace(self) -> None:
        now = time.monotonic()
        if self._next_due is None or now - self._next_due > 1.0:
            self._next_due = now
        delay = self._next_due - now
        if delay > 0:
            time.sleep(delay)
        self._next_due += 1.0 / self.fps


def write_video(path: Path | str, camera: SyntheticCamera, frames: int, *, quality: int = 90) -> Path:
    """Record ``frames`` frames of ``camera`` as MJPG in AVI, which every OpenCV build reads back.

    MJPG is what most USB cameras send, so its block artefacts are part of the test.
    """
    path = Path(path)
    writer = cv2.VideoWriter(
        str(path), cv2.VideoWriter_fourcc(*"MJPG"), camera.fps, (camera.width, camera.height)
    )
    if not writer.isOpened():
        raise OSError(f"OpenCV cannot write {path}")
    try:
        writer.set(cv2.VIDEOWRITER_PROP_QUALITY, quality)
        for index in range(frames):
            writer.write(camera.frame_at(index))
    finally:
        writer.release()
    return path


def camera_from_url(url: str) -> SyntheticCamera:
    """A synthetic camera from a ``sim://`` URL, so configuration alone can point a gate at one.

    ``sim://?codes=A,B&every=4&hold=1.5&start=1&condition=plain&size=640x480&fps=30&seed=0&realtime=1``

    * ``codes``: comma-separated payloads, presented in turn, one every ``every`` seconds
      from ``start`` for ``hold`` seconds each, cycling for ``repeat`` rounds (default 1000,
      i.e. practically for ever);
    * ``condition``: one of :data:`CONDITIONS` (``two_codes`` shows the next two codes);
    * ``size``, ``fps``, ``seed``, ``noise`` (sensor noise sigma in grey levels);
    * ``realtime=0`` to read as fast as frames render; ``duration`` (seconds) to end the
      stream like a file instead of showing an empty gate for ever.
    """
    parts = urlsplit(url)
    if parts.scheme != "sim":
        raise ValueError(f"not a sim:// URL: {url!r}")
    query = {key: values[-1] for key, values in parse_qs(parts.query, keep_blank_values=True).items()}
    known = {
        "codes",
        "every",
        "hold",
        "start",
        "condition",
        "size",
        "fps",
        "seed",
        "realtime",
        "repeat",
        "noise",
        "duration",
    }
    unknown = sorted(set(query) - known)
    if unknown:
        raise ValueError(f"unknown sim:// parameter(s): {', '.join(unknown)}")
    try:
        codes = [c.encode("utf-8") for c in query.get("codes", "").split(",") if c]
        every = float(query.get("every", "4"))
        hold = float(query.get("hold", "1.5"))
        start = float(query.get("start", "1"))
        repeat = int(query.get("repeat", "1000"))
        width, height = (int(v) for v in query.get("size", "640x480").lower().split("x"))
        fps = float(query.get("fps", "30"))
        seed = int(query.get("seed", "0"))
        noise = float(query.get("noise", "2.5"))
        duration = float(query["duration"]) if "duration" in query else None
    except ValueError as exc:
        raise ValueError(f"bad sim:// parameter in {url!r}: {exc}") from None
    condition = query.get("condition", "plain")
    if condition not in CONDITIONS and condition != "beyond":
        raise ValueError(f"unknown condition {condition!r}")
    realtime = query.get("realtime", "1") not in ("0", "false", "no")
    if every <= 0 or hold <= 0 or hold > every:
        raise ValueError("need 0 < hold <= every")
    presentations: list[Presentation] = []
    if codes:
        step = 2 if condition == "two_codes" else 1
        slots = max(1, len(codes) // step)
        for n in range(repeat * slots):
            i = (n * step) % len(codes)
            shown = (codes[i], codes[(i + 1) % len(codes)])
            presentations.append(Presentation(start + n * every, shown, hold, condition))
    return SyntheticCamera(
        presentations,
        width=width,
        height=height,
        fps=fps,
        seed=seed,
        realtime=realtime,
        noise=noise,
        duration_s=duration,
    )
