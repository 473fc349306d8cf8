"""The Raspberry Pi ``config.txt`` lines a gate needs, rendered from its configuration for the installer.

Two things about the lock relay's line are settled before gatepost ever runs:

- ``dtparam=strict_gpiod``: a GPIO line released by the process that drove it goes back
  to being an input, as upstream Linux does, instead of keeping its level as Raspberry Pi
  kernels otherwise do (raspberrypi/linux pull request 6117).  An agent that dies then
  leaves the relay to the board's own pull, not to whatever level it last wrote.
- ``gpio=<pin>=op,dh|dl``: the firmware drives the relay's pin to its de-energised level
  from power-on until the agent takes it, so an active-low relay board does not switch on
  during boot (Raspberry Pi documentation, config.txt, "GPIO control": ``op`` output,
  ``dh`` drive high, ``dl`` drive low; it takes effect a few seconds after power-on).

De-energised is locked for a fail-secure lock and released for a fail-safe one: the state
each lock is chosen to fail to.  See docs/door.md.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from protocol.errors import GatepostError

if TYPE_CHECKING:
    from edge.config import EdgeConfig

STRICT_GPIOD = "dtparam=strict_gpiod"
_FORTY_PIN_BOARD = 0xD04170
"""A Raspberry Pi 5's revision code: every 40-pin Pi has the same header, so its names map the same way."""


class BootConfigError(GatepostError, ValueError):
    """The relay's pin cannot be named in config.txt (no BCM GPIO number for it)."""


def bcm_number(pin: int | str) -> int:
    """The BCM GPIO number of a gpiozero pin name (17, ``"GPIO17"``, ``"BCM17"``, ``"BOARD11"``, ``"J8:11"``)."""
    from gpiozero.exc import PinError
    from gpiozero.pins.pi import PiBoardInfo

    try:
        name = PiBoardInfo.from_revision(_FORTY_PIN_BOARD).to_gpio(pin)
    except (PinError, ValueError) as exc:
        raise BootConfigError(f"the relay pin {pin!r} is not a GPIO of the 40-pin header: {exc}") from None
    return int(str(name).removeprefix("GPIO"))


def boot_config_lines(config: EdgeConfig) -> list[str]:
    """The directives for this gate: ``dtparam=strict_gpiod``, then the relay's boot level if it has a door."""
    lines = [STRICT_GPIOD]
    if config.door is not None:
        pins = config.door.pins
        off_level = "dl" if pins.relay_active_high else "dh"  # de-energised, whatever the lock type
        lines.append(f"gpio={bcm_number(pins.relay)}=op,{off_level}")
    return lines


def render_boot_config(config: EdgeConfig) -> str:
    """The block the installer appends to ``config.txt`` (``/boot/firmware/config.txt`` on bookworm)."""
    header = f"# gatepost gate {config.site}/{config.gate}: the lock relay's line (docs/door.md)"
    return "\n".join([header, *boot_config_lines(config)]) + "\n"
