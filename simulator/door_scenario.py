"""Residents at a building door: cards on a Wiegand reader, the exit button, a door held or forced.

Runs on the same gpiozero mock pin factory as the gate agent's door, in the agent's own
process (mock pins live in memory), which is why the agent started by ``gatepost sim-gate``
starts it when a gate's configuration has a ``[simulation]`` section.  Each person is one of: a resident
who swipes a known card and walks through, a stranger whose card is unknown, someone
leaving by the exit button, someone who holds the door open too long, and — rarely —
someone who forces it.
"""

from __future__ import annotations

import logging
import random
import threading
from dataclasses import dataclass

from gpiozero.pins.mock import MockFactory

from drivers.door_io import DoorPins
from drivers.wiegand import H10301
from simulator.door import DoorModel
from simulator.wiegand import VirtualWiegandReader

log = logging.getLogger("gatepost.simulator.door")


@dataclass(frozen=True, slots=True)
class DoorPeople:
    people_per_min: float = 6.0
    unknown_share: float = 0.1
    exit_share: float = 0.3
    hold_open_share: float = 0.02
    force_share: float = 0.01


def parse_card(text: str) -> tuple[int, int]:
    """``"13:13067"`` -> (facility, card) of a 26-bit H10301 card."""
    facility, _, card = text.partition(":")
    return int(facility), int(card)


class DoorScenario:
    """People using one door until stopped."""

    def __init__(
        self,
        factory: MockFactory,
        pins: DoorPins,
        d0: int | str,
        d1: int | str,
        cards: list[str],
        people: DoorPeople = DoorPeople(),
        *,
        seed: int | None = None,
    ) -> None:
        if not cards:
            raise ValueError("a door scenario needs at least one resident card")
        self.cards = [parse_card(card) for card in cards]
        self.people = people
        self.door = DoorModel(factory, pins)
        self.reader = VirtualWiegandReader(factory, d0, d1, pulse_us=100, gap_us=1500)
        self._rng = random.Random(seed)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="door-people", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def _run(self) -> None:
        rate_per_s = self.people.people_per_min / 60.0
        while not self._stop.wait(self._rng.expovariate(rate_per_s)):
            try:
                self._one_person()
            except Exception:  # a simulated person must never take the gate down
                log.exception("simulated person failed")

    def _one_person(self) -> None:
        roll = self._rng.random()
        p = self.people
        if roll < p.force_share:
            self.door.force_open()
            self._stop.wait(self._rng.uniform(1.0, 3.0))
            self.door.close()
        elif roll < p.force_share + p.exit_share:
            self.door.leave(wait_s=1.0)  # presses the exit button, then walks out
        elif roll < p.force_share + p.exit_share + p.unknown_share:
            self.reader.send_card(self._rng.randrange(200, 256), self._rng.randrange(60000), H10301)
        else:
            facility, card = self._rng.choice(self.cards)
            self.reader.send_card(facility, card, H10301)
            hold = self._rng.uniform(40, 60) if self._rng.random() < p.hold_open_share else 0.0
            self.door.walk_through(wait_s=1.5, hold_s=hold)
