"""``gatepost edge list-devices`` reads /sys: a folder laid out as the kernel lays it out stands in."""

from __future__ import annotations

import os
from pathlib import Path

from drivers.usb_serial import describe, list_usb_serial
from gatepost.cli import main


def usb_device(sys_root: Path, port: str, *, serial: str | None, ttys: dict[str, str], product: str) -> None:
    """A USB device at ``port`` (``1-1.2``) with tty interfaces, e.g. {"1.0": "ttyACM0"}."""
    device = sys_root / "devices/platform/scb/fd500000.pcie/usb1/1-1" / port
    device.mkdir(parents=True)
    (device / "idVendor").write_text("1eab\n")
    (device / "idProduct").write_text("1a03\n")
    (device / "manufacturer").write_text("Newland\n")
    (device / "product").write_text(f"{product}\n")
    if serial is not None:
        (device / "serial").write_text(f"{serial}\n")
    for interface, tty in ttys.items():
        node = device / f"{port}:{interface}" / "tty" / tty
        node.mkdir(parents=True)
        link = sys_root / "class/tty" / tty
        link.parent.mkdir(parents=True, exist_ok=True)
        os.symlink(os.path.relpath(node, link.parent), link)
        os.symlink("../..", node / "device")  # device -> the interface, as the kernel has it


def fake_sys(tmp_path: Path) -> Path:
    sys_root = tmp_path / "sys"
    usb_device(sys_root, "1-1.2", serial="NLS0001", ttys={"1.0": "ttyACM0"}, product="FR40")
    usb_device(sys_root, "1-1.3", serial="0001", ttys={"1.0": "ttyACM1"}, product="cheap")
    usb_device(sys_root, "1-1.4", serial="0001", ttys={"1.0": "ttyACM2"}, product="cheap")
    usb_device(sys_root, "1-1.1.2", serial=None, ttys={"1.0": "ttyUSB0", "1.1": "ttyUSB1"}, product="dual")
    # The Pi's own UART and a virtual terminal: not USB, not listed.
    uart = sys_root / "devices/platform/soc/fe201000.serial/tty/ttyAMA0"
    uart.mkdir(parents=True)
    os.symlink("../../..", uart / "device")
    os.symlink(os.path.relpath(uart, sys_root / "class/tty"), sys_root / "class/tty/ttyAMA0")
    (sys_root / "devices/virtual/tty/tty1").mkdir(parents=True)
    os.symlink(
        os.path.relpath(sys_root / "devices/virtual/tty/tty1", sys_root / "class/tty"),
        sys_root / "class/tty/tty1",
    )
    return sys_root


def test_usb_ttys_are_found_with_port_path_and_serial(tmp_path: Path):
    devices = list_usb_serial(fake_sys(tmp_path))
    assert [(d.tty, d.port_path, d.interface, d.serial) for d in devices] == [
        ("ttyACM0", "1-1.2", "1-1.2:1.0", "NLS0001"),
        ("ttyACM1", "1-1.3", "1-1.3:1.0", "0001"),
        ("ttyACM2", "1-1.4", "1-1.4:1.0", "0001"),
        ("ttyUSB0", "1-1.1.2", "1-1.1.2:1.0", None),
        ("ttyUSB1", "1-1.1.2", "1-1.1.2:1.1", None),
    ]


def test_the_advice_never_offers_a_serial_that_does_not_tell_devices_apart(tmp_path: Path):
    text = "\n".join(describe(list_usb_serial(fake_sys(tmp_path))))
    assert 'usb_serial = "NLS0001"   or   usb_path = "1-1.2"' in text
    assert 'usb_serial = "0001"' not in text  # two cheap scanners share it
    assert "(serial 0001 is shared by 2 devices: use usb_path)" in text
    assert 'usb_path = "1-1.1.2:1.0"' in text and 'usb_path = "1-1.1.2:1.1"' in text  # one device, two ttys


def test_list_devices_command(tmp_path: Path, capsys):
    assert main(["edge", "list-devices", "--sys", str(fake_sys(tmp_path))]) == 0
    out = capsys.readouterr().out
    assert "/dev/ttyACM0  1eab:1a03 Newland FR40" in out
    assert 'url = "/dev/gatepost/<its name>"' in out
    assert main(["edge", "list-devices", "--sys", str(tmp_path / "nothing")]) == 0
    assert "no USB serial devices attached" in capsys.readouterr().out
