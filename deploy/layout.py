"""Where an installed gatepost lives, in one place, so the plan, the units and the docs agree.

The units in ``systemd/`` run ``/opt/gatepost/bin/gatepost`` (a virtual environment made
from the wheel), read ``/etc/gatepost`` and write ``/var/lib/gatepost``; everything the
installer writes outside those three folders is listed here too, so ``uninstall`` can
remove exactly it.
"""

from __future__ import annotations

from pathlib import PurePosixPath

PREFIX = PurePosixPath("/opt/gatepost")
"""The virtual environment: ``bin/gatepost``, ``bin/python``."""
GATEPOST = PREFIX / "bin" / "gatepost"
CONFIG_DIR = PurePosixPath("/etc/gatepost")
STATE_DIR = PurePosixPath("/var/lib/gatepost")
UNIT_DIR = PurePosixPath("/etc/systemd/system")
UDEV_RULES = PurePosixPath("/etc/udev/rules.d/90-gatepost.rules")
LOGROTATE = PurePosixPath("/etc/logrotate.d/gatepost")
CHRONY_CONF_DIR = PurePosixPath("/etc/chrony/conf.d")
CHRONY_CONF = CHRONY_CONF_DIR / "gatepost.conf"
KIOSK_PAM = PurePosixPath("/etc/pam.d/gatepost-kiosk")
KIOSK_HOME = PurePosixPath("/var/lib/gatepost-kiosk")
STAMP = PREFIX / ".installed-wheel"
"""The sha256 of the gatepost wheel the environment was made from: a second run with the same wheel does nothing."""

USER = "gatepost"
GATE_GROUPS = ("gpio", "dialout", "video", "input")
"""gpio: the relay and door inputs; dialout: serial scanners; video: cameras; input: keyboard-mode readers."""
KIOSK_USER = "gatepost-kiosk"
KIOSK_GROUPS = ("video", "input", "render")

CONFIG_TXT = (PurePosixPath("/boot/firmware/config.txt"), PurePosixPath("/boot/config.txt"))
"""Raspberry Pi OS bookworm and later mount the boot partition at /boot/firmware; earlier ones at /boot."""
PI_MODEL = PurePosixPath("/proc/device-tree/model")
BLOCK_BEGIN = "# BEGIN gatepost"
BLOCK_END = "# END gatepost"
