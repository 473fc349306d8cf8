"""USB serial devices as sysfs shows them: which tty, which USB port, which serial number.

``/dev/ttyACM0`` is whichever reader the kernel found first, so two scanners can swap
names after a reboot.  The installer's udev rules pin each reader by its serial number or
by the USB port it is plugged into; this module finds both for ``gatepost edge
list-devices``, reading only ``/sys`` (no udev database, no pyudev), so it works on any
Linux and is tested against a folder laid out like ``/sys``.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

_INTERFACE = re.compile(r"^[0-9]+-[0-9]+(\.[0-9]+)*:[0-9]+\.[0-9]+$")
_DEVICE = re.compile(r"^[0-9]+-[0-9]+(\.[0-9]+)*$")


@dataclass(frozen=True, slots=True)
class UsbSerialDevice:
    tty: str
    """``ttyACM0``; the device node is ``/dev/<tty>``."""
    port_path: str
    """The USB device's place on the bus as the kernel names it (``1-1.2``): fixed by the socket used."""
    interface: str
    """The USB interface the tty belongs to (``1-1.2:1.0``)."""
    serial: str | None
    """The device's own serial number, if it reports one."""
    vendor_id: str
    product_id: str
    manufacturer: str | None
    product: str | None


def _read(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8", errors="replace").strip() or None
    except OSError:
        return None


def list_usb_serial(sys_root: Path = Path("/sys")) -> list[UsbSerialDevice]:
    """Every tty that sits on a USB interface, sorted by tty name."""
    found = []
    tty_class = sys_root / "class" / "tty"
    if not tty_class.is_dir():
        return []
    for entry in sorted(tty_class.iterdir()):
        try:
            device = (entry / "device").resolve(strict=True)
        except OSError:
            continue  # a virtual terminal or pty: no device behind it
        interface = next((p for p in (device, *device.parents) if _INTERFACE.match(p.name)), None)
        if interface is None or not _DEVICE.match(interface.parent.name):
            continue  # a serial port that is not USB (the Pi's UART)
        usb = interface.parent
        found.append(
            UsbSerialDevice(
                tty=entry.name,
                port_path=usb.name,
                interface=interface.name,
                serial=_read(usb / "serial"),
                vendor_id=_read(usb / "idVendor") or "????",
                product_id=_read(usb / "idProduct") or "????",
                manufacturer=_read(usb / "manufacturer"),
                product=_read(usb / "product"),
            )
        )
    return found


def describe(devices: list[UsbSerialDevice]) -> list[str]:
    """Lines for a person choosing ``usb_serial`` or ``usb_path`` for each reader, with warnings.

    A serial number that two attached devices share (cheap scanners often have one fixed
    number) cannot tell them apart: those get ``usb_path`` instead.  A device with several
    ttys is named by its interface, so each tty gets its own path.
    """
    serials = Counter(d.serial for d in devices if d.serial)
    ttys_per_device = Counter(d.port_path for d in devices)
    lines = []
    for d in devices:
        path = d.interface if ttys_per_device[d.port_path] > 1 else d.port_path
        keys = [f'usb_path = "{path}"']
        if d.serial and serials[d.serial] == 1 and ttys_per_device[d.port_path] == 1:
            keys.insert(0, f'usb_serial = "{d.serial}"')
        label = " ".join(part for part in (d.manufacturer, d.product) if part)
        lines.append(f"/dev/{d.tty}  {d.vendor_id}:{d.product_id} {label}".rstrip())
        lines.append("    " + "   or   ".join(keys))
        if d.serial and serials[d.serial] > 1:
            lines.append(f"    (serial {d.serial} is shared by {serials[d.serial]} devices: use usb_path)")
        if not d.serial:
            lines.append("    (no serial number: use usb_path, and keep the reader in this USB socket)")
    return lines
