"""Residents arriving at gates: the scenario runner that drives virtual scanners.

Each gate gets a thread that waits an exponentially distributed time (a Poisson stream,
which is what independent arrivals look like) and then has someone present a pass at
that gate's virtual scanner.  Most are residents with a pass on the allow-list; some are
visitors whose code is unknown; now and then the scanner produces garbage, as real
scanners do when a code is half in view.  Everything typed is recorded, so a test or the
demo can compare what happened at the gates with what reached the console.
"""

from __future__ import annotations

import random
import threading
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol


class Keyboard(Protocol):
    """What the scenario needs from a virtual scanner."""

    def type(self, code: str) -> int: ...

    def type_garbage(self, rng: random.Random) -> bytes: ...


@dataclass(frozen=True, slots=True)
class Arrival:
    gate: str
    kind: str  # "resident", "visitor" or "garbage"
    code: str | None
    at_ns: int


@dataclass
class ScenarioLog:
    arrivals: list[Arrival] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self, arrival: Arrival) -> None:
        with self._lock:
            self.arrivals.append(arrival)

    def counts(self) -> Counter[tuple[str, str]]:
        with self._lock:
            return Counter((a.gate, a.kind) for a in self.arrivals)


def resident_codes(count: int, *, seed: int = 7) -> list[str]:
    """Numeric pass codes (QR numeric mode is layout-safe on every scanner), unique and stable per seed."""
    rng = random.Random(seed)
    codes: set[str] = set()
    while len(codes) < count:
        codes.add(f"{rng.randrange(10**11, 10**12)}")
    return sorted(codes)


class ArrivalScenario:
    """People arriving at every gate at ``rate_per_min`` on average, until stopped."""

    def __init__(
        self,
        scanners: Mapping[str, Keyboard],
        residents: Sequence[str],
        *,
        rate_per_min: float = 30.0,
        visitor_share: float = 0.08,
        garbage_share: float = 0.03,
        seed: int | None = None,
        refused: Sequence[str] = (),
    ) -> None:
        if not residents:
            raise ValueError("a scenario needs at least one resident code")
        self.scanners = dict(scanners)
        self.residents = list(residents)
        self.rate_per_s = rate_per_min / 60.0
        self.visitor_share = visitor_share
        self.garbage_share = garbage_share
        self.refused = list(refused)
        """Codes a gate must refuse (forged, expired, revoked…); visitors show these when given."""
        self.log = ScenarioLog()
        self._seed = seed
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    def start(self) -> None:
        for index, gate in enumerate(self.scanners):
            seed = None if self._seed is None else self._seed * 1000 + index
            thread = threading.Thread(
                target=self._run_gate, args=(gate, random.Random(seed)), name=f"arrivals-{gate}", daemon=True
            )
            thread.start()
            self._threads.append(thread)

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=5)

    def run(self, duration_s: float) -> ScenarioLog:
        self.start()
        self._stop.wait(duration_s)
        self.stop()
        return self.log

    def _run_gate(self, gate: str, rng: random.Random) -> None:
        scanner = self.scanners[gate]
        while not self._stop.wait(rng.expovariate(self.rate_per_s)):
            try:
                self._arrive(gate, scanner, rng)
            except OSError:
                # The virtual scanner was unplugged by the scenario or closed at shutdown.
                if self._stop.is_set():
                    return
                time.sleep(0.1)

    def _arrive(self, gate: str, scanner: Keyboard, rng: random.Random) -> None:
        """One person at ``gate``: a resident, a visitor with a refused pass, or scanner garbage."""
        roll = rng.random()
        if roll < self.garbage_share:
            scanner.type_garbage(rng)
            self.log.add(Arrival(gate, "garbage", None, time.monotonic_ns()))
        elif roll < self.garbage_share + self.visitor_share:
            # Without a refused corpus, 13 random digits: never a resident's code.
            code = rng.choice(self.refused) if self.refused else f"9{rng.randrange(10**11, 10**12)}"
            self.log.add(Arrival(gate, "visitor", code, scanner.type(code)))
        else:
            code = rng.choice(self.residents)
            self.log.add(Arrival(gate, "resident", code, scanner.type(code)))
