"""The Raspberry Pi's ``config.txt``: keep the lock locked from power-on until the agent runs.

Between power-on and the agent's start the relay's pin sits at its reset level, which an
active-low relay board reads as "on".  ``gpio=<pin>=op,dh|dl`` makes the firmware drive
the pin to the relay's *off* level at boot, and ``dtparam=strict_gpiod`` makes the kernel
return a released line to an input (raspberrypi/linux pull request 6117), so a dead agent
leaves the relay to its board's own pull.  Off is the level the agent itself writes first
(``initial_value=False`` in drivers/door_io.py): de-energised, for fail-secure and
fail-safe locks alike.

:func:`config_txt_lines` takes the lines from ``edge.boot_config`` (the door's own rendering,
also printed by ``gatepost edge boot-config``) and puts ``[all]`` in front.
"""

from __future__ import annotations

from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING

from deploy.errors import InstallError
from deploy.layout import CONFIG_TXT, PI_MODEL
from deploy.target import Target

if TYPE_CHECKING:
    from edge.config import EdgeConfig


def config_txt_lines(config: EdgeConfig) -> list[str]:
    """The block's lines; ``[all]`` first, because config.txt applies a line only under the model
    filter (``[pi4]``, ``[cm4]``) in force where it stands, and ours are for every board."""
    from edge.boot_config import BootConfigError, boot_config_lines

    try:
        return ["[all]", *boot_config_lines(config)]
    except BootConfigError as exc:
        raise InstallError(str(exc)) from None


SYSTEM_WATCHDOG = PurePosixPath("/etc/systemd/system.conf.d/gatepost.conf")
WATCHDOG_CONF = """\
# Written by gatepost install on a Raspberry Pi gate (docs/install.md): systemd pets the
# board's hardware watchdog, so a hung kernel resets the board; bcm2835-wdt allows about 15 s.
[Manager]
RuntimeWatchdogSec=15s
RebootWatchdogSec=2min
"""


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
