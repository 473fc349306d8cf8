"""A residential compound's day at its checkpoints: when people come and go, by kind of gate.

The staffing advice the console gives is only as good as the flow it is shown, and a flat
Poisson stream has no peak to advise on.  The source article (Longtan subdistrict, Beijing,
March 2020) describes the shape the communities read off their checkpoints' flow data:
returning residents crowd the gates **18:00–19:30**, when one or two more guards were put
on, and **20:00–21:00** is quiet enough for one fewer.  Around that it is an ordinary
commuter day: people leave 07:00–09:00, midday is a lull, weekends are flatter.

A profile here is a sum of :class:`Window` terms per gate kind and direction — a level
between two clock times with soft edges — so each of the article's windows is written
down literally rather than hidden in a curve fit.  The volumes are assumptions (the
article gives none); ``docs/demo.md`` says how they were sized.  Arrival times are a
Poisson process whose rate follows the profile, sampled per 15-minute slot for history
and by thinning for the live demo, deterministically for a given seed.
"""

from __future__ import annotations

import math
import random
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta, tzinfo
from enum import StrEnum
from functools import cached_property
from typing import NamedTuple

from simulator.scenario import ArrivalScenario, Keyboard

SLOT_MINUTES = 15
SLOTS_PER_DAY = 24 * 60 // SLOT_MINUTES


class GateKind(StrEnum):
    """What a gate is for; each kind has its own daily shape and volume."""

    PEDESTRIAN = "pedestrian"
    """A compound's main entrance on foot: the checkpoint (卡口) of the article."""
    VEHICLE = "vehicle"
    """A vehicle entrance: fewer passages, the same commuter rhythm."""
    DOOR = "door"
    """A building's door with a card reader: one building's residents."""


class Direction(StrEnum):
    IN = "in"
    OUT = "out"


@dataclass(frozen=True, slots=True)
class Window:
    """``per_hour`` people an hour between ``start_h`` and ``end_h`` (local clock hours), soft-edged.

    The edges are logistic with ``edge_h`` as their scale, so a window from 18.0 to 19.5
    is close to its full level from about 18:10 to 19:20 and near zero an hour either side.
    """

    start_h: float
    end_h: float
    per_hour: float
    edge_h: float = 0.12

    def rate(self, hour: float) -> float:
        rise = 1.0 / (1.0 + math.exp(-(hour - self.start_h) / self.edge_h))
        fall = 1.0 / (1.0 + math.exp(-(self.end_h - hour) / self.edge_h))
        return self.per_hour * rise * fall


@dataclass(frozen=True, slots=True)
class Shape:
    """One direction's rate over a day: a night floor plus windows, in people per hour."""

    night: float
    windows: tuple[Window, ...]

    def rate(self, hour: float) -> float:
        return self.night + sum(window.rate(hour) for window in self.windows)


@dataclass(frozen=True, slots=True)
class DayShape:
    entries: Shape
    exits: Shape

    def rate(self, direction: Direction, hour: float) -> float:
        return (self.entries if direction is Direction.IN else self.exits).rate(hour)

    def total(self, hour: float) -> float:
        return self.entries.rate(hour) + self.exits.rate(hour)


EVENING_PEAK = (18.0, 19.5)
"""The article's returning-resident peak (18:00–19:30): one or two more guards on."""
EVENING_QUIET = (20.0, 21.0)
"""The article's quiet hour after it (20:00–21:00): one guard fewer."""
MORNING_EXITS = (7.0, 9.0)

_W = Window
# People per hour at a gate of scale 1.  The main pedestrian gate is sized so that, with
# a guard checking about 120 people an hour, the evening peak needs two or three guards
# and 20:00–21:00 needs one — the staffing change the article's communities made.
_PEDESTRIAN_WEEKDAY = DayShape(
    entries=Shape(
        3.0,
        (
            _W(6.0, 22.5, 30.0, 0.3),  # the day's ordinary comings
            _W(8.5, 10.5, 15.0),  # night-shift workers, early shoppers back from the market
            _W(11.5, 13.0, 12.0),  # lunch
            _W(15.5, 17.5, 25.0),  # school children, afternoon shopping
            _W(*EVENING_PEAK, 190.0),  # returning from work: the evening peak
        ),
    ),
    exits=Shape(
        2.0,
        (
            _W(6.0, 22.0, 28.0, 0.3),
            _W(*MORNING_EXITS, 170.0),  # the morning commute
            _W(11.5, 13.0, 12.0),
            _W(*EVENING_PEAK, 25.0),  # out again for dinner and errands
        ),
    ),
)
_PEDESTRIAN_WEEKEND = DayShape(
    entries=Shape(
        3.0,
        (
            _W(7.0, 22.5, 32.0, 0.3),
            _W(11.0, 13.5, 20.0, 0.4),
            _W(16.0, 17.5, 20.0),
            _W(*EVENING_PEAK, 85.0),
        ),
    ),
    exits=Shape(
        2.0,
        (
            _W(7.0, 21.5, 30.0, 0.3),
            _W(8.5, 11.0, 45.0, 0.3),  # later and smaller than a weekday's commute
            _W(13.5, 15.5, 20.0),
            _W(*EVENING_PEAK, 20.0),
        ),
    ),
)
_VEHICLE_WEEKDAY = DayShape(
    entries=Shape(
        1.0,
        (_W(6.0, 22.5, 10.0, 0.3), _W(9.0, 11.0, 8.0), _W(15.5, 17.5, 8.0), _W(*EVENING_PEAK, 55.0)),
    ),
    exits=Shape(1.0, (_W(6.0, 22.0, 9.0, 0.3), _W(*MORNING_EXITS, 60.0), _W(*EVENING_PEAK, 8.0))),
)
_VEHICLE_WEEKEND = DayShape(
    entries=Shape(1.0, (_W(7.0, 22.5, 13.0, 0.3), _W(11.0, 13.5, 10.0, 0.4), _W(*EVENING_PEAK, 30.0))),
    exits=Shape(1.0, (_W(7.0, 21.5, 12.0, 0.3), _W(8.5, 11.0, 28.0, 0.3), _W(*EVENING_PEAK, 6.0))),
)
_DOOR_WEEKDAY = DayShape(
    entries=Shape(0.3, (_W(6.0, 22.5, 3.0, 0.3), _W(15.5, 17.5, 3.0), _W(*EVENING_PEAK, 16.0))),
    exits=Shape(0.2, (_W(6.0, 22.0, 3.0, 0.3), _W(*MORNING_EXITS, 15.0), _W(*EVENING_PEAK, 2.0))),
)
_DOOR_WEEKEND = DayShape(
    entries=Shape(0.3, (_W(7.0, 22.5, 4.0, 0.3), _W(11.0, 13.5, 3.0, 0.4), _W(*EVENING_PEAK, 9.0))),
    exits=Shape(0.2, (_W(7.0, 21.5, 4.0, 0.3), _W(8.5, 11.0, 7.0, 0.3), _W(*EVENING_PEAK, 2.0))),
)

SHAPES: Mapping[tuple[GateKind, bool], DayShape] = {
    (GateKind.PEDESTRIAN, False): _PEDESTRIAN_WEEKDAY,
    (GateKind.PEDESTRIAN, True): _PEDESTRIAN_WEEKEND,
    (GateKind.VEHICLE, False): _VEHICLE_WEEKDAY,
    (GateKind.VEHICLE, True): _VEHICLE_WEEKEND,
    (GateKind.DOOR, False): _DOOR_WEEKDAY,
    (GateKind.DOOR, True): _DOOR_WEEKEND,
}
"""``(kind, weekend)`` → shape.  Weekend means Saturday and Sunday (no holiday calendar)."""


def is_weekend(day: date) -> bool:
    return day.weekday() >= 5


def shape_for(kind: GateKind, day: date | None = None, *, weekend: bool | None = None) -> DayShape:
    if weekend is None:
        weekend = day is not None and is_weekend(day)
    return SHAPES[(kind, weekend)]


@dataclass(frozen=True, slots=True)
class Slot:
    """Expected people in one 15-minute slot, starting ``minute`` minutes after local midnight."""

    minute: int
    entries: float
    exits: float


def slots(kind: GateKind, *, weekend: bool = False, scale: float = 1.0) -> list[Slot]:
    """The day in 96 slots: each slot's expected count is its midpoint rate times a quarter hour."""
    shape = SHAPES[(kind, weekend)]
    hours = SLOT_MINUTES / 60
    out = []
    for index in range(SLOTS_PER_DAY):
        mid = (index + 0.5) * hours
        out.append(
            Slot(
                index * SLOT_MINUTES,
                shape.entries.rate(mid) * hours * scale,
                shape.exits.rate(mid) * hours * scale,
            )
        )
    return out


def hourly(kind: GateKind, *, weekend: bool = False, scale: float = 1.0) -> list[tuple[float, float]]:
    """Expected (entries, exits) for each of the 24 clock hours."""
    by_hour = [[0.0, 0.0] for _ in range(24)]
    for slot in slots(kind, weekend=weekend, scale=scale):
        by_hour[slot.minute // 60][0] += slot.entries
        by_hour[slot.minute // 60][1] += slot.exits
    return [(entries, exits) for entries, exits in by_hour]


class Passage(NamedTuple):
    """Someone passing a gate at ``at`` (timezone-aware), going ``direction``."""

    at: datetime
    direction: Direction


def day_passages(
    kind: GateKind, day: date, zone: tzinfo, rng: random.Random, *, scale: float = 1.0
) -> list[Passage]:
    """One local day's passages at a gate, in time order: a Poisson process, slot by slot.

    Within a slot the rate is constant, so arrivals are exponential gaps at that rate;
    entries and exits are independent streams.  Clock hours are local (``zone``), which is
    where the evening peak lives; a day with a DST change keeps its wall-clock shape.
    """
    midnight = datetime.combine(day, datetime.min.time(), tzinfo=zone)
    passages: list[Passage] = []
    slot_s = SLOT_MINUTES * 60.0
    for slot in slots(kind, weekend=is_weekend(day), scale=scale):
        start = midnight + timedelta(minutes=slot.minute)
        for direction, expected in ((Direction.IN, slot.entries), (Direction.OUT, slot.exits)):
            if expected <= 0:
                continue
            rate_per_s = expected / slot_s
            offset = rng.expovariate(rate_per_s)
            while offset < slot_s:
                passages.append(Passage(start + timedelta(seconds=offset), direction))
                offset += rng.expovariate(rate_per_s)
    passages.sort(key=lambda passage: passage.at)
    return passages


# -- the live compressed day ------------------------------------------------------------


@dataclass(frozen=True)
class CompressedDay:
    """A simulated day played in ``day_seconds`` of real time, starting at ``start_hour``.

    Only the *rate* is compressed: the events the gates take carry real time.  The mean
    rate over the day is ``mean_per_min`` at each gate, so ``--rate`` keeps its meaning and
    the peak is the profile's peak-to-mean ratio above it.  After one day the next begins
    (the demo repeats its day rather than falling back to the slow real-time clock).
    """

    day_seconds: float
    mean_per_min: float
    kind: GateKind = GateKind.PEDESTRIAN
    weekend: bool = False
    start_hour: float = 6.0

    def hour_index(self, elapsed_s: float) -> int:
        """Simulated hours since midnight of day 1, ``elapsed_s`` seconds into the run."""
        return math.floor(self.start_hour + 24.0 * elapsed_s / self.day_seconds)

    def hour_at(self, elapsed_s: float) -> float:
        """The simulated local clock hour (0–24) ``elapsed_s`` seconds into the run."""
        return (self.start_hour + 24.0 * elapsed_s / self.day_seconds) % 24.0

    def day_at(self, elapsed_s: float) -> int:
        """Which simulated day (1, 2, …) ``elapsed_s`` falls in."""
        return self.hour_index(elapsed_s) // 24 + 1

    def _shape(self) -> DayShape:
        return SHAPES[(self.kind, self.weekend)]

    @cached_property
    def _mean_total(self) -> float:
        shape = self._shape()
        points = [shape.total((i + 0.5) / 12) for i in range(24 * 12)]
        return sum(points) / len(points)

    def per_min_at(self, elapsed_s: float) -> float:
        return self.mean_per_min * self._shape().total(self.hour_at(elapsed_s)) / self._mean_total

    def peak_per_min(self) -> float:
        shape = self._shape()
        return self.mean_per_min * max(shape.total(i / 60) for i in range(24 * 60)) / self._mean_total

    def rate_function(self) -> Callable[[float], float]:
        """``elapsed_s`` → arrivals per second, with the day's mean precomputed."""
        shape = self._shape()
        factor = self.mean_per_min / 60.0 / self._mean_total
        return lambda elapsed_s: factor * shape.total(self.hour_at(elapsed_s))


def next_arrival(t: float, rate: Callable[[float], float], peak: float, rng: random.Random) -> float:
    """The next arrival after ``t`` of a Poisson process of rate ``rate(t) ≤ peak`` (thinning).

    Candidates come at the constant ``peak`` rate and each is kept with probability
    ``rate(t) / peak`` — exact for a time-varying rate, and a lull never leaves a long
    wait drawn at a low rate standing when the peak begins.
    """
    while True:
        t += rng.expovariate(peak)
        if rng.random() * peak <= rate(t):
            return t


class ProfiledArrivals(ArrivalScenario):
    """:class:`ArrivalScenario` whose arrival rate follows a :class:`CompressedDay`.

    What arrives (resident, visitor with a refused pass, scanner garbage) is the parent's
    mix; only when follows the profile.
    """

    def __init__(
        self,
        scanners: Mapping[str, Keyboard],
        residents: Sequence[str],
        day: CompressedDay,
        *,
        visitor_share: float = 0.08,
        garbage_share: float = 0.03,
        seed: int | None = None,
        refused: Sequence[str] = (),
    ) -> None:
        super().__init__(
            scanners,
            residents,
            rate_per_min=day.mean_per_min,
            visitor_share=visitor_share,
            garbage_share=garbage_share,
            seed=seed,
            refused=refused,
        )
        self.day = day
        self._rate = day.rate_function()
        self._peak_per_s = day.peak_per_min() / 60.0 * 1.01
        self._started = time.monotonic()

    def start(self) -> None:
        self._started = time.monotonic()
        super().start()

    def elapsed(self) -> float:
        return time.monotonic() - self._started

    def _run_gate(self, gate: str, rng: random.Random) -> None:
        scanner = self.scanners[gate]
        t = self.elapsed()
        while True:
            t = next_arrival(t, self._rate, self._peak_per_s, rng)
            if self._stop.wait(max(0.0, t - self.elapsed())):
                return
            try:
                self._arrive(gate, scanner, rng)
            except OSError:
                # The virtual scanner was unplugged by the scenario or closed at shutdown.
                if self._stop.is_set():
                    return
                time.sleep(0.1)
            # Typing takes time at 9600 baud; a backlog is dropped, not typed in a burst.
            t = max(t, self.elapsed())


class DayClock:
    """Prints the simulated clock once per simulated hour with the live rate, so the peak is visible."""

    def __init__(self, scenario: ProfiledArrivals, write: Callable[[str], None]) -> None:
        self.scenario = scenario
        self.write = write
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="day-clock", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2)

    def _run(self) -> None:
        day = self.scenario.day
        gates = len(self.scenario.scanners)
        last: int | None = None
        since = time.monotonic_ns()
        while not self._stop.wait(0.05):
            elapsed = self.scenario.elapsed()
            index = day.hour_index(elapsed)
            if index == last:
                continue
            now = time.monotonic_ns()
            seen = sum(1 for a in self.scenario.log.arrivals[-5000:] if since <= a.at_ns < now)
            since, last = now, index
            expected = day.per_min_at(elapsed)
            bar = "█" * max(1, round(expected / day.peak_per_min() * 30))
            self.write(
                f"── simulated day {index // 24 + 1}, {index % 24:02d}:00  {bar:<30}"
                f" {expected:4.0f}/min per gate; {seen} arrivals at {gates} gates in the hour before"
            )
