"""udev rules that give each USB reader a name that cannot move: ``/dev/gatepost/<reader>``.

Two scanners on ``/dev/ttyACM0`` and ``/dev/ttyACM1`` swap when the kernel finds them in
the other order, and the entry reader becomes the exit reader.  A rule per reader matches
the device by its serial number or by the USB port it is plugged into (both shown by
``gatepost edge list-devices``) and adds the link the gate's configuration names.
The values were checked by the gate's configuration (no quotes or glob characters), so
each rule matches one device, literally.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class ReaderLink:
    name: str
    usb_serial: str | None = None
    usb_path: str | None = None


GPIOCHIP = 'SUBSYSTEM=="gpio", KERNEL=="gpiochip*", GROUP="gpio", MODE="0660"'
"""Debian gives /dev/gpiochip* to root alone (Raspberry Pi OS's own rules give it to gpio)."""


def render_rules(readers: Sequence[ReaderLink], *, group: str = "dialout") -> str:
    """The gate's rules: the GPIO chips to group gpio, and a link for each pinned reader."""
    lines = ["# The GPIO chips (relay, door inputs) to the gpio group the agent is in.", GPIOCHIP]
    for reader in readers:
        if reader.usb_serial is not None:
            match = f'ATTRS{{serial}}=="{reader.usb_serial}"'
            what = f"serial number {reader.usb_serial}"
        elif reader.usb_path is not None:
            match = f'KERNELS=="{reader.usb_path}"'
            what = f"USB port {reader.usb_path}"
        else:
            continue
        lines.append(f"# {reader.name}: the USB serial device with {what}")
        lines.append(
            f'SUBSYSTEM=="tty", {match}, SYMLINK+="gatepost/{reader.name}", GROUP="{group}", MODE="0660"'
        )
    header = [
        "# Written by gatepost install from the gate's configuration ([[scanners]] and [[rdm6300]]",
        "# usb_serial / usb_path); it is rewritten on every install, so change the configuration.",
    ]
    return "\n".join([*header, *lines]) + "\n"
