"""What the guard sees and hears: one light-and-buzzer pattern per kind of answer.

A guard at a checkpoint glances at the post, often in the dark, with a queue in front:
the answer must be unmistakable without reading anything.  Green is in, red is out, and
the beeps say *why* out: one for a code that is not ours (a stray QR code, a stranger's
card), two for a genuine pass at the wrong time or place (expired, outside its window,
wrong zone), a long tone for a pass that must be looked at — forged, revoked, a replayed
screenshot, a revocation list too old to trust.  A granted pass with a caveat (clock not
trusted, stale list) is green with two short beeps: let them in, and look at the console
later.  At a door the door controller drives the lights itself; this module serves gates
without a door, or a guard's separate light tower.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from protocol.passes import Reason

log = logging.getLogger("gatepost.edge.feedback")


class Light(StrEnum):
    GREEN = "green"
    RED = "red"


@dataclass(frozen=True, slots=True)
class Pattern:
    light: Light
    light_s: float
    beeps: int = 0
    beep_s: float = 0.08


GRANTED = Pattern(Light.GREEN, 1.5)
GRANTED_WITH_CAVEAT = Pattern(Light.GREEN, 1.5, beeps=2, beep_s=0.08)
NOT_OURS = Pattern(Light.RED, 1.5, beeps=1, beep_s=0.15)
WRONG_TIME_OR_PLACE = Pattern(Light.RED, 2.0, beeps=2, beep_s=0.15)
LOOK_AT_IT = Pattern(Light.RED, 4.0, beeps=1, beep_s=1.2)

_DENIED: dict[Reason, Pattern] = {
    Reason.UNKNOWN: NOT_OURS,
    Reason.MALFORMED: NOT_OURS,
    Reason.EXPIRED: WRONG_TIME_OR_PLACE,
    Reason.NOT_YET_VALID: WRONG_TIME_OR_PLACE,
    Reason.OUTSIDE_TIME_WINDOW: WRONG_TIME_OR_PLACE,
    Reason.WRONG_SITE: WRONG_TIME_OR_PLACE,
    Reason.WRONG_ZONE: WRONG_TIME_OR_PLACE,
    Reason.PASSBACK: WRONG_TIME_OR_PLACE,
    Reason.BAD_SIGNATURE: LOOK_AT_IT,
    Reason.UNKNOWN_KEY: LOOK_AT_IT,
    Reason.REVOKED: LOOK_AT_IT,
    Reason.BAD_DYNAMIC_CODE: LOOK_AT_IT,
    Reason.REPLAYED: LOOK_AT_IT,
    Reason.STALE_REVOCATION_LIST: LOOK_AT_IT,
}


def pattern_for(granted: bool, reason: Reason, *, flagged: bool = False) -> Pattern:
    """The pattern for a decision; every reason has one (a test walks the whole enum)."""
    if granted:
        return GRANTED_WITH_CAVEAT if flagged else GRANTED
    return _DENIED.get(reason, LOOK_AT_IT)


class FeedbackPins(BaseModel):
    """The guard's light tower and buzzer, as gpiozero pin names."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    green: str | int = Field(title="Green light")
    red: str | int = Field(title="Red light")
    buzzer: str | int | None = Field(None, title="Buzzer (optional)")
    active_high: bool = True


class GuardFeedback:
    """Drives the pins in the background, so the access path never waits for a blink."""

    def __init__(self, pins: FeedbackPins, *, pin_factory: Any = None) -> None:
        from gpiozero import LED, Buzzer

        self.green = LED(
            pins.green, active_high=pins.active_high, initial_value=False, pin_factory=pin_factory
        )
        try:
            self.red = LED(
                pins.red, active_high=pins.active_high, initial_value=False, pin_factory=pin_factory
            )
            self.buzzer = (
                Buzzer(
                    pins.buzzer, active_high=pins.active_high, initial_value=False, pin_factory=pin_factory
                )
                if pins.buzzer is not None
                else None
            )
        except BaseException:
            self.close()
            raise

    def show(self, pattern: Pattern) -> None:
        on, off = (self.green, self.red) if pattern.light is Light.GREEN else (self.red, self.green)
        off.off()
        on.blink(on_time=pattern.light_s, off_time=0.01, n=1, background=True)
        if self.buzzer is not None and pattern.beeps:
            self.buzzer.beep(on_time=pattern.beep_s, off_time=0.1, n=pattern.beeps, background=True)

    def close(self) -> None:
        for device in (
            getattr(self, "buzzer", None),
            getattr(self, "red", None),
            getattr(self, "green", None),
        ):
            if device is not None:
                device.close()
