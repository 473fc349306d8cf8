"""The Raspberry Pi's ``config.txt``: keep the lock locked from power-on until the agent runs.

Between power-on and the agent's start the relay's pin sits at its reset level, which an
active-low relay board reads as "on".  ``gpio=<pin>=op,dh|dl`` makes the firmware drive
the pin to the relay's *off* level at boot, and ``dtparam=strict_gpiod`` makes the kernel
return a released line to an input (raspberrypi/linux pull request 6117), so a dead agent
leaves the relay to its board's own pull.  Off is the level the agent itself writes first
(``initial_value=False`` in drivers/door_io.py): de-energised, for fail-secure and
fail-safe locks alike.

:func:`config_txt_lines` is the installer's own small rendering; the door work renders the
same lines from a gate configuration, and the two are to be joined into one function.
"""

from __future__ import annotations

from pathlib import Path, PurePosixPath

from deploy.errors import InstallError
from deploy.layout import CONFIG_TXT, PI_MODEL
from deploy.target import Target

_BOARD_TO_BCM = {
    3: 2, 5: 3, 7: 4, 8: 14, 10: 15, 11: 17, 12: 18, 13: 27, 15: 22, 16: 23, 18: 24, 19: 10,
    21: 9, 22: 25, 23: 11, 24: 8, 26: 7, 27: 0, 28: 1, 29: 5, 31: 6, 32: 12, 33: 13, 35: 19,
    36: 16, 37: 26, 38: 20, 40: 21,
}  # fmt: skip
"""The 40-pin header: physical pin -> BCM GPIO number (every Pi since the B+)."""


def bcm_number(pin: int | str) -> int:
    """The BCM number of a gpiozero pin name: ``17``, ``"GPIO17"``, ``"BCM17"``, ``"BOARD11"``, ``"J8:11"``."""
    if isinstance(pin, int):
        number = pin
    else:
        text = pin.strip().upper()
        for prefix in ("GPIO", "BCM"):
            if text.startswith(prefix) and text[len(prefix) :].isdigit():
                number = int(text[len(prefix) :])
                break
        else:
            physical = text.removeprefix("BOARD").removeprefix("J8:")
            if not physical.isdigit() or int(physical) not in _BOARD_TO_BCM:
                raise InstallError(f"relay pin {pin!r}: not a GPIO of the Pi's 40-pin header")
            number = _BOARD_TO_BCM[int(physical)]
    if not 0 <= number <= 27:
        raise InstallError(f"relay pin {pin!r}: the header's GPIOs are 0 to 27")
    return number


def config_txt_lines(relay_pin: int | str, relay_active_high: bool) -> list[str]:
    """``dtparam=strict_gpiod`` and the relay's boot level: an output at its de-energised level."""
    level = "dl" if relay_active_high else "dh"
    return ["dtparam=strict_gpiod", f"gpio={bcm_number(relay_pin)}=op,{level}"]


def is_raspberry_pi(target: Target) -> bool:
    """The device tree says so (``/proc/device-tree/model``, in the target, else on this machine)."""
    for model in (target.path(PI_MODEL), Path(PI_MODEL)):
        try:
            if model.read_bytes().startswith(b"Raspberry Pi"):
                return True
        except OSError:
            continue
    return False


def config_txt(target: Target) -> PurePosixPath:
    """``/boot/firmware/config.txt`` (bookworm on), else ``/boot/config.txt`` (earlier releases)."""
    for candidate in CONFIG_TXT:
        if target.path(candidate).is_file():
            return candidate
    raise InstallError(
        f"this is a Raspberry Pi but neither {' nor '.join(map(str, CONFIG_TXT))} exists;"
        " is the boot partition mounted?"
    )
