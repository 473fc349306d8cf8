"""Mock GPIO pins whose output levels another process can see: one small file per pin.

gpiozero's mock pins live in one process's memory, so they cannot show what matters
about the lock relay beyond the agent's lifetime: the level the line keeps after the
agent is killed, and what ``gatepost edge relay-off`` — a second process, run by the
unit's ``ExecStopPost=`` — writes to it.  These pins behave as gpiozero's
:class:`~gpiozero.pins.mock.MockPin` and also write each output level, with the
``CLOCK_MONOTONIC`` time of the write, to ``$GATEPOST_MOCK_PIN_DIR/<pin>``.  Like a Pi's
own kernel without ``dtparam=strict_gpiod``, a line keeps the last level written after
the process that wrote it is gone.

Select them with ``[gpio] pin_factory = "mockfile"`` (an entry point in gpiozero's
``gpiozero_pin_factories`` group).  Where this stops being the real thing: a file
written is not a GPIO line driven, and neither is a relay's contact opening.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gpiozero.pins.mock import MockFactory, MockPin

DIR_VARIABLE = "GATEPOST_MOCK_PIN_DIR"


@dataclass(frozen=True, slots=True)
class PinLevel:
    """What a pin's file says: its level and when it was written (``time.monotonic_ns()``, system-wide)."""

    high: bool
    at_ns: int


def read_level(folder: Path, pin: str) -> PinLevel | None:
    """The last level written to ``pin`` (a name such as ``GPIO17``), or None if never."""
    try:
        text = (folder / pin).read_text()
    except FileNotFoundError:
        return None
    level, at_ns = text.split()
    return PinLevel(level == "1", int(at_ns))


class FileMockPin(MockPin):
    """A mock pin that also writes each output level it is given to its file."""

    def _set_state(self, value: Any) -> None:
        super()._set_state(value)
        folder = self.factory.folder  # type: ignore[attr-defined]
        path = folder / self.info.name
        temporary = folder / f".{self.info.name}.{os.getpid()}"
        temporary.write_text(f"{int(bool(value))} {time.monotonic_ns()}\n")
        os.replace(temporary, path)  # a reader sees the old line or the new one, never half of one


class FileMockFactory(MockFactory):
    """gpiozero's mock factory with :class:`FileMockPin` pins in ``$GATEPOST_MOCK_PIN_DIR``."""

    def __init__(self, revision: str | None = None) -> None:
        super().__init__(revision=revision, pin_class=FileMockPin)
        folder = os.environ.get(DIR_VARIABLE)
        if not folder:
            raise RuntimeError(f"the mockfile pin factory needs ${DIR_VARIABLE}: the folder of pin files")
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
