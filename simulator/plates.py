"""A synthetic vehicle-lane camera: Chinese plates rendered into a lane, live or as a labelled set.

Plate recognition is only as good as the pictures it is tested on, so the scenes here
fail it the way a real lane does: a plate seen at an angle (perspective), out of focus or
moving (blur), under a low sun or a headlamp (glare), at night under an IR-less street
lamp (dark, noisy), and -- most of the time -- no car at all.  Plates are drawn with the
colours and layout of GA 36-2018 (https://en.wikipedia.org/wiki/Vehicle_registration_plates_of_China):

- blue: small vehicles, white characters on blue, 440 x 140 mm, seven characters;
- yellow: large vehicles and learners, black characters on yellow;
- green (new energy): eight characters, black on a white-to-green gradient, 480 x 140 mm.

The Chinese characters come from the WenQuanYi Zen Hei font (Debian ``fonts-wqy-zenhei``,
installed by ``bootstrap``), drawn through Pillow; the rest of the scene is OpenCV.

Three ways to use it:

* :func:`render_plate` draws a plate alone; :func:`render_scene` a lane frame with a car
  (or none) under one condition; :func:`plate_set` is the labelled set the tests and
  ``bench/vehicles.py`` measure recognition on, by condition;
* :class:`PlateCamera` is a live frame source with the ``cv2.VideoCapture`` reading
  interface: cars arrive on a timeline, each stays in the lane for a few seconds;
* :class:`LoopDetector` drives a loop detector's "present" output on a gpiozero mock pin
  in step with the camera's timeline, as the real detector's relay contact would.

The agent opens a plate camera by URL, ``sim://plates?plates=京A12345,粤B8888D&every=6``
(see :func:`plate_camera_from_url`).
"""

from __future__ import annotations

import functools
import random
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal
from urllib.parse import parse_qs, unquote, urlsplit

import cv2
import numpy as np
from PIL import Image, ImageDraw, ImageFont

from protocol.credentials import CardEntry
from protocol.plates import PROVINCES, PlateKind, parse_plate

__all__ = [
    "CONDITIONS",
    "FONT_PATH",
    "LANE_REGION",
    "LabelledFrame",
    "LoopDetector",
    "PlateCamera",
    "SiteVehicles",
    "Vehicle",
    "plate_camera_from_url",
    "plate_colour",
    "plate_set",
    "random_plate",
    "render_plate",
    "render_scene",
    "vehicle_plates",
]

FONT_PATH = Path("/usr/share/fonts/truetype/wqy/wqy-zenhei.ttc")

CONDITIONS = ("plain", "perspective", "blur", "glare", "night")
"""The conditions of the labelled set; ``empty`` (no car) is rendered too but carries no plate."""

Colour = Literal["blue", "yellow", "green"]

FRAME_W, FRAME_H = 640, 480
LANE_REGION = (120, 200, 400, 240)
"""Where plates appear in a lane frame, as ``x, y, width, height``: the region a lane's
recogniser is configured to crop to (``[lane.camera] region``)."""

_SERIAL = "ABCDEFGHJKLMNPQRSTUVWXYZ0123456789"
_DIGITS = "0123456789"
_LETTERS = "ABCDEFGHJKLMNPQRSTUVWXYZ"

_COLOURS: dict[Colour, tuple[tuple[int, int, int], tuple[int, int, int]]] = {
    # (background RGB, character RGB)
    "blue": ((12, 64, 186), (250, 250, 250)),
    "yellow": ((245, 190, 20), (10, 10, 10)),
    "green": ((60, 190, 90), (10, 10, 10)),
}


def plate_colour(text: str, *, large: bool = False) -> Colour:
    """The colour a plate is printed in: green for new energy, yellow for large or learner, else blue."""
    plate = parse_plate(text)
    if plate.kind is PlateKind.NEW_ENERGY:
        return "green"
    if large or plate.suffix == "学":
        return "yellow"
    return "blue"


def random_plate(rng: random.Random, *, new_energy: bool | None = None) -> str:
    """A random valid plate (ordinary or new-energy small), for visitors and strangers."""
    province = rng.choice(list(PROVINCES))
    letter = rng.choice(_LETTERS)
    if new_energy if new_energy is not None else rng.random() < 0.25:
        serial = rng.choice("DF") + rng.choice(_SERIAL) + "".join(rng.choice(_DIGITS) for _ in range(4))
    else:
        serial = "".join(rng.choice(_SERIAL) for _ in range(5))
    return parse_plate(province + letter + serial).text


@functools.cache
def _font(size: int) -> ImageFont.FreeTypeFont:
    return ImageFont.truetype(str(FONT_PATH), size)


@functools.cache
def _glyph_mask(char: str) -> Image.Image:
    """The glyph's ink, cropped tight: stretched into a plate cell it fills the cell as the standard's lettering does."""
    font = _font(120)
    box = font.getbbox(char)
    mask = Image.new("L", (box[2] - box[0], box[3] - box[1]), 0)
    ImageDraw.Draw(mask).text((-box[0], -box[1]), char, font=font, fill=255)
    return mask


def _glyph(char: str, ink: tuple[int, int, int], background: tuple[int, int, int]) -> Image.Image:
    return Image.new("RGB", _glyph_mask(char).size, ink)


@functools.lru_cache(maxsize=512)
def _plate_rgb(text: str, colour: Colour) -> np.ndarray:
    """The plate alone, RGB, 45 px tall per 140 mm (cached: a car stays in view for many frames)."""
    chars = list(text)
    width = 480 if len(chars) == 8 else 440
    height = 140
    background, ink = _COLOURS[colour]
    image = Image.new("RGB", (width, height), background)
    draw = ImageDraw.Draw(image)
    if colour == "green":  # new-energy plates fade from white at the top to green below
        top = np.array((235, 250, 235), dtype=np.float32)
        bottom = np.array(background, dtype=np.float32)
        for y in range(height):
            mix = min(1.0, y / (height * 0.7))
            draw.line([(0, y), (width, y)], fill=tuple(int(v) for v in top * (1 - mix) + bottom * mix))
    draw.rounded_rectangle((4, 4, width - 5, height - 5), radius=10, outline=ink, width=3)
    # GA 36: characters 45 mm wide and 90 mm tall (43 mm on the longer green plate), 12 mm
    # apart, a separator dot in a wider gap after the second.  Each glyph is drawn alone and
    # stretched into its cell, as the standard's narrow plate lettering is.
    cell_w = 43 if len(chars) == 8 else 45
    gap, dot_gap, cell_h = (9 if len(chars) == 8 else 12), 34, 90
    total = len(chars) * cell_w + (len(chars) - 2) * gap + dot_gap
    x = (width - total) / 2
    top = (height - cell_h) / 2
    for index, char in enumerate(chars):
        glyph = _glyph(char, ink, background)
        image.paste(
            glyph.resize((cell_w, cell_h), Image.Resampling.LANCZOS),
            (int(x), int(top)),
            _glyph_mask(char).resize((cell_w, cell_h), Image.Resampling.LANCZOS),
        )
        x += cell_w
        if index == 1:
            draw.ellipse((x + dot_gap / 2 - 5, height / 2 - 5, x + dot_gap / 2 + 5, height / 2 + 5), fill=ink)
            x += dot_gap
        else:
            x += gap
    return np.asarray(image)


def render_plate(text: str, colour: Colour | None = None) -> np.ndarray:
    """The plate ``text`` as a BGR image, in its own colours (or ``colour``)."""
    rgb = _plate_rgb(parse_plate(text).text, colour or plate_colour(text))
    return cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)


@dataclass(frozen=True, slots=True)
class Look:
    """How one scene is seen; every field is a departure from a clear daytime view."""

    plate_width: float = 150.0
    """The plate's width in the frame, in pixels."""
    center: tuple[float, float] = (320.0, 330.0)
    yaw: float = 0.0
    """Perspective: how much the far side of the plate shrinks (0..0.4)."""
    tilt: float = 0.0
    """Degrees of rotation in the image plane."""
    blur: float = 0.0
    """Gaussian sigma in pixels, or motion blur length when ``motion`` is set."""
    motion: bool = False
    glare: float = 0.0
    """Peak brightness added by a bright spot near the plate (0..255)."""
    dark: float = 1.0
    """Multiplier on the whole frame (night: ~0.3)."""
    noise: float = 2.0
    car_colour: tuple[int, int, int] = (90, 90, 100)
    large: bool = False
    """A large vehicle (lorry, bus): its ordinary plate is yellow, not blue."""


@dataclass(frozen=True, slots=True)
class LabelledFrame:
    """One frame of the labelled set: the picture, the plate in it (``None``: empty lane), its condition."""

    image: np.ndarray
    plate: str | None
    condition: str


def _look_for(condition: str, rng: random.Random) -> Look:
    center = (320 + rng.uniform(-40, 40), 320 + rng.uniform(-25, 25))
    car = tuple(rng.randint(30, 200) for _ in range(3))
    large = rng.random() < 0.25  # one car in four a lorry or a bus: a yellow plate
    base = Look(plate_width=rng.uniform(135, 175), center=center, car_colour=car, large=large)  # type: ignore[arg-type]
    if condition == "perspective":
        return _with(base, yaw=rng.uniform(0.15, 0.3) * rng.choice((-1, 1)), tilt=rng.uniform(-6, 6))
    if condition == "blur":
        return _with(base, blur=rng.uniform(1.0, 1.6), motion=rng.random() < 0.5)
    if condition == "glare":
        return _with(base, glare=rng.uniform(120, 180))
    if condition == "night":
        return _with(base, dark=rng.uniform(0.3, 0.45), noise=5.0)
    return base


def _with(look: Look, **changes: object) -> Look:
    from dataclasses import replace

    return replace(look, **changes)  # type: ignore[arg-type]


@functools.cache
def _lane_background() -> np.ndarray:
    """An empty lane: asphalt, a kerb, the barrier post; the same every frame, as a fixed camera sees."""
    rng = np.random.default_rng(7)
    frame = np.full((FRAME_H, FRAME_W, 3), (70, 72, 75), dtype=np.uint8)
    frame[:140] = (150, 160, 170)  # a wall and sky behind the lane
    frame[140:150] = (200, 200, 200)
    cv2.line(frame, (40, FRAME_H), (220, 150), (210, 210, 210), 3)
    cv2.line(frame, (600, FRAME_H), (420, 150), (210, 210, 210), 3)
    cv2.rectangle(frame, (560, 90), (600, 300), (40, 40, 200), -1)  # the barrier cabinet
    texture = rng.normal(0, 6, frame.shape[:2]).astype(np.float32)
    return np.clip(frame.astype(np.float32) + texture[:, :, None], 0, 255).astype(np.uint8)


def render_scene(plate: str | None, look: Look, rng: np.random.Generator) -> np.ndarray:
    """A BGR lane frame with a car showing ``plate`` as seen under ``look`` (``None``: an empty lane)."""
    frame = _lane_background().astype(np.float32)
    if plate is not None:
        cx, cy = look.center
        width = look.plate_width
        # The car's rear (or front): a rounded block around the plate, a bumper, two lamps.
        body_w, body_h = width * 2.6, width * 1.2
        x0, y0 = int(cx - body_w / 2), int(cy - body_h * 0.6)
        cv2.rectangle(frame, (x0, y0), (int(x0 + body_w), int(y0 + body_h)), look.car_colour, -1)
        cv2.rectangle(
            frame, (x0, int(cy + width * 0.25)), (int(x0 + body_w), int(cy + width * 0.4)), (30, 30, 30), -1
        )
        for lamp_x in (x0 + body_w * 0.12, x0 + body_w * 0.88):
            cv2.ellipse(frame, (int(lamp_x), int(cy - width * 0.15)), (18, 10), 0, 0, 360, (60, 60, 220), -1)
        image = render_plate(plate, plate_colour(plate, large=look.large)).astype(np.float32)
        h, w = image.shape[:2]
        scale = width / w
        half_w, half_h = width / 2, h * scale / 2
        shrink = abs(look.yaw)
        near, far = half_h, half_h * (1 - shrink)
        left_h, right_h = (far, near) if look.yaw > 0 else (near, far)
        corners = np.array(
            [(-half_w, -left_h), (half_w, -right_h), (half_w, right_h), (-half_w, left_h)], dtype=np.float32
        )
        corners[:, 0] *= 1 - shrink * 0.5
        angle = np.deg2rad(look.tilt)
        rotation = np.array(
            [[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]], dtype=np.float32
        )
        corners = corners @ rotation.T + np.array([cx, cy], dtype=np.float32)
        source = np.array([(0, 0), (w, 0), (w, h), (0, h)], dtype=np.float32)
        matrix = cv2.getPerspectiveTransform(source, corners)
        warped = cv2.warpPerspective(image, matrix, (FRAME_W, FRAME_H), flags=cv2.INTER_AREA)
        mask = cv2.warpPerspective(
            np.ones((h, w), np.float32), matrix, (FRAME_W, FRAME_H), flags=cv2.INTER_AREA
        )
        frame = frame * (1 - mask[:, :, None]) + warped * mask[:, :, None]
        if look.glare > 0:
            yy, xx = np.mgrid[0:FRAME_H, 0:FRAME_W].astype(np.float32)
            gx, gy = cx + width * 0.3, cy - width * 0.05
            spot = np.exp(-(((xx - gx) ** 2 + (yy - gy) ** 2) / (2 * (width * 0.22) ** 2)))
            frame = frame + look.glare * spot[:, :, None]
    if look.blur > 0:
        if look.motion:
            length = max(3, int(look.blur * 3))
            kernel = np.zeros((length, length), np.float32)
            kernel[length // 2, :] = 1.0 / length
            frame = cv2.filter2D(frame, -1, kernel)
        else:
            frame = cv2.GaussianBlur(frame, (0, 0), look.blur)
    frame = frame * look.dark
    if look.noise > 0:
        frame = frame + rng.normal(0, look.noise, frame.shape[:2]).astype(np.float32)[:, :, None]
    return np.clip(frame, 0, 255).astype(np.uint8)


def plate_set(per_condition: int, *, seed: int = 0, empty: int = 0) -> list[LabelledFrame]:
    """The labelled set: ``per_condition`` frames of each condition, plus ``empty`` empty lanes.

    Plates are drawn at random (blue, yellow and green in proportion), so the set is the
    same for a seed and different across seeds.
    """
    rng = random.Random(seed)
    noise = np.random.default_rng(seed)
    frames: list[LabelledFrame] = []
    for condition in CONDITIONS:
        for _ in range(per_condition):
            plate = random_plate(rng)
            frames.append(
                LabelledFrame(render_scene(plate, _look_for(condition, rng), noise), plate, condition)
            )
    for _ in range(empty):
        frames.append(LabelledFrame(render_scene(None, Look(), noise), None, "empty"))
    return frames


@dataclass(frozen=True, slots=True)
class Vehicle:
    """A car on the lane's timeline: it arrives at ``at_s`` and stays on the loop for ``dwell_s``."""

    plate: str
    at_s: float
    dwell_s: float = 4.0
    condition: str = "plain"
    seed: int = 0

    def present(self, t: float) -> bool:
        return self.at_s <= t < self.at_s + self.dwell_s


@dataclass
class PlateCamera:
    """A lane camera with the ``cv2.VideoCapture`` reading interface the capture driver uses.

    Frame ``i`` shows the lane at ``i / fps`` seconds on the vehicles' timeline (a car
    creeps forward a little while it waits at the barrier).  ``realtime`` paces reads to
    ``fps`` like a device.  ``vehicles`` may be extended while the camera runs
    (:meth:`arrive`), so a test or the demo can send a car when it wants one.
    """

    vehicles: list[Vehicle] = field(default_factory=list)
    fps: float = 10.0
    realtime: bool = True
    seed: int = 0
    clock: Callable[[], float] = time.monotonic
    index: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _grabbed: int | None = None
    _next_due: float | None = None
    _opened: bool = True
    _start: float | None = None
    _empty: list[np.ndarray] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._noise = np.random.default_rng(self.seed)
        self._looks: dict[int, Look] = {}

    # -- the timeline ------------------------------------------------------------------

    def now_s(self) -> float:
        """Seconds on the timeline: frames seen so far, by the camera's own rate."""
        return self.index / self.fps

    def arrive(
        self, plate: str, *, dwell_s: float = 4.0, condition: str = "plain", delay_s: float = 0.0
    ) -> Vehicle:
        """A car arrives ``delay_s`` from now on the timeline."""
        with self._lock:
            vehicle = Vehicle(plate, self.now_s() + delay_s, dwell_s, condition, seed=len(self.vehicles))
            self.vehicles.append(vehicle)
            return vehicle

    def vehicle_at(self, t: float) -> Vehicle | None:
        for vehicle in self.vehicles:
            if vehicle.present(t):
                return vehicle
        return None

    # -- the VideoCapture interface ----------------------------------------------------

    def isOpened(self) -> bool:  # cv2.VideoCapture's name
        return self._opened

    def grab(self) -> bool:
        with self._lock:
            if not self._opened:
                return False
            if self.realtime:
                self._pace()
            self._grabbed = self.index
            self.index += 1
            return True

    def retrieve(self) -> tuple[bool, np.ndarray | None]:
        grabbed = self._grabbed
        if grabbed is None or not self._opened:
            return False, None
        return True, self.frame_at(grabbed)

    def read(self) -> tuple[bool, np.ndarray | None]:
        if not self.grab():
            return False, None
        return self.retrieve()

    def release(self) -> None:
        self._opened = False

    def set(self, prop: int, value: float) -> bool:
        return False

    def get(self, prop: int) -> float:
        return {
            cv2.CAP_PROP_FRAME_WIDTH: float(FRAME_W),
            cv2.CAP_PROP_FRAME_HEIGHT: float(FRAME_H),
            cv2.CAP_PROP_FPS: float(self.fps),
            cv2.CAP_PROP_POS_FRAMES: float(self.index),
        }.get(prop, 0.0)

    def reopen(self) -> PlateCamera:
        self._opened = True
        self._next_due = None
        return self

    def frame_at(self, index: int) -> np.ndarray:
        t = index / self.fps
        vehicle = self.vehicle_at(t)
        if vehicle is None:
            return self._empty_frame(index)
        look = self._looks.get(id(vehicle))
        if look is None:
            look = _look_for(vehicle.condition, random.Random(f"{self.seed}:{vehicle.seed}:{vehicle.plate}"))
            self._looks[id(vehicle)] = look
        creep = min(1.0, (t - vehicle.at_s) / 1.5)  # rolls up to the barrier in the first 1.5 s
        cx, cy = look.center
        moved = _with(
            look, center=(cx, cy - 30 * (1 - creep)), plate_width=look.plate_width * (0.85 + 0.15 * creep)
        )
        return render_scene(vehicle.plate, moved, self._noise)

    def _empty_frame(self, index: int) -> np.ndarray:
        """An empty lane with sensor noise, from a bank: fresh noise per frame would cost the simulator more than the gate."""
        if not self._empty:
            for _ in range(8):
                self._empty.append(render_scene(None, Look(), self._noise))
        return self._empty[(index * 7919 + self.seed) % len(self._empty)].copy()

    def _pace(self) -> None:
        now = time.monotonic()
        if self._next_due is None or now - self._next_due > 1.0:
            self._next_due = now
        delay = self._next_due - now
        if delay > 0:
            time.sleep(delay)
        self._next_due += 1.0 / self.fps


class LoopDetector:
    """Drives a loop detector's "present" contact on a mock pin as cars come and go on a camera's timeline.

    A real detector's output is a relay contact to ground while a car is over the loop;
    with the Pi's pull-up the input reads low (active) then.  This drives the mock pin the
    same way, so the lane controller reads it through gpiozero exactly as on a Pi.
    """

    def __init__(self, camera: PlateCamera, pin: object, *, period_s: float = 0.02) -> None:
        self.camera = camera
        self.pin = pin
        self.period_s = period_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="sim-loop-detector", daemon=True)
        self.present = False

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(2)

    def _run(self) -> None:
        while not self._stop.wait(self.period_s):
            present = self.camera.vehicle_at(self.camera.now_s()) is not None
            if present != self.present:
                self.present = present
                if present:
                    self.pin.drive_low()  # type: ignore[attr-defined]
                else:
                    self.pin.drive_high()  # type: ignore[attr-defined]


def plate_camera_from_url(url: str) -> PlateCamera:
    """``sim://plates?plates=京A12345,粤B8888D&every=6&dwell=4&fps=10&conditions=plain,night&realtime=1``.

    ``plates`` arrive in turn, one every ``every`` seconds from ``start`` on, each staying
    ``dwell`` seconds; with ``repeat=1`` the list starts over.  Without ``plates`` the lane
    stays empty until something calls :meth:`PlateCamera.arrive`.
    """
    parts = urlsplit(url)
    values = {key: items[-1] for key, items in parse_qs(parts.query).items()}
    try:
        plates = [parse_plate(unquote(p)).text for p in values.get("plates", "").split(",") if p]
        every = float(values.get("every", "8"))
        dwell = float(values.get("dwell", "4"))
        start = float(values.get("start", "2"))
        fps = float(values.get("fps", "10"))
        repeat = values.get("repeat", "0") in ("1", "true", "yes")
        conditions = [c for c in values.get("conditions", "plain").split(",") if c]
        seed = int(values.get("seed", "0"))
    except ValueError as exc:
        raise ValueError(f"bad plate camera URL {url!r}: {exc}") from None
    if any(c not in CONDITIONS for c in conditions) or not conditions:
        raise ValueError(f"bad plate camera URL {url!r}: conditions must be among {CONDITIONS}")
    if dwell >= every or fps <= 0:
        raise ValueError(f"bad plate camera URL {url!r}: dwell must be shorter than every, fps positive")
    vehicles = _schedule(plates, every, dwell, start, conditions, 200 if repeat else 1)
    realtime = values.get("realtime", "1") not in ("0", "false", "no")
    return PlateCamera(vehicles=vehicles, fps=fps, realtime=realtime, seed=seed)


def _schedule(
    plates: Sequence[str], every: float, dwell: float, start: float, conditions: Sequence[str], rounds: int
) -> list[Vehicle]:
    vehicles: list[Vehicle] = []
    at = start
    for round_ in range(rounds):
        for index, plate in enumerate(plates):
            condition = conditions[(round_ * len(plates) + index) % len(conditions)]
            vehicles.append(Vehicle(plate, at, dwell, condition, seed=len(vehicles)))
            at += every
    return vehicles


@dataclass(frozen=True, slots=True)
class SiteVehicles:
    """A compound's cars: residents' (registered), visitors' (for the guard to register), one stranger."""

    residents: tuple[str, ...]
    visitors: tuple[str, ...]
    stranger: str

    def card_entries(self) -> list[CardEntry]:
        """The residents' cars as card-list entries: the credential of the plate, the holder and the unit."""
        return [
            CardEntry(
                parse_plate(plate).credential,
                holder=f"车主{index + 1}",
                unit=f"{index % 12 + 1}-{index % 6 + 1}01",
            )
            for index, plate in enumerate(self.residents)
        ]

    @property
    def schedule(self) -> list[str]:
        """The order cars come to the entrance: mostly residents, a visitor now and then, the stranger once."""
        order: list[str] = []
        for index, plate in enumerate(self.residents[:12]):
            order.append(plate)
            if index % 4 == 3 and self.visitors:
                order.append(self.visitors[(index // 4) % len(self.visitors)])
            if index == 6:
                order.append(self.stranger)
        return order


def vehicle_plates(residents: int, *, seed: int = 19) -> SiteVehicles:
    """The same cars for a site every time: a car for one resident in ten (at least six)."""
    rng = random.Random(seed)
    seen: set[str] = set()

    def fresh(new_energy: bool | None = None) -> str:
        while True:
            plate = random_plate(rng, new_energy=new_energy)
            if plate not in seen:
                seen.add(plate)
                return plate

    cars = tuple(fresh() for _ in range(max(6, residents // 10)))
    visitors = tuple(fresh() for _ in range(3))
    return SiteVehicles(cars, visitors, fresh(new_energy=False))


def timeline(vehicles: Iterable[Vehicle]) -> list[tuple[float, float, str]]:
    """``(arrive_s, leave_s, plate)`` for each car, for tests comparing what the gate saw."""
    return [(v.at_s, v.at_s + v.dwell_s, v.plate) for v in vehicles]
