"""Readers pinned by USB serial number or port: check-config names each mistake by file, line and key."""

from __future__ import annotations

from pathlib import Path

from gatepost.cli import main

HEAD = """site = "s"
gate = "g"
[mqtt]
host = "127.0.0.1"
username = "u"
password_file = "secret"
"""


def check(tmp_path: Path, body: str, capsys) -> tuple[int, str]:
    (tmp_path / "secret").write_text("x")
    path = tmp_path / "gate.toml"
    path.write_text(HEAD + body)
    status = main(["edge", "check-config", str(path)])
    captured = capsys.readouterr()
    return status, captured.out + captured.err


def test_pinned_readers_are_accepted(tmp_path: Path, capsys):
    status, out = check(
        tmp_path,
        """
[[scanners]]
name = "entry"
url = "/dev/gatepost/entry"
usb_serial = "NLS-0001"
[[rdm6300]]
name = "cards"
url = "/dev/gatepost/cards"
usb_path = "1-1.2:1.0"
""",
        capsys,
    )
    assert status == 0, out


def test_each_mistake_is_named_by_line_and_key(tmp_path: Path, capsys):
    status, out = check(
        tmp_path,
        """
[[scanners]]
name = "entry"
url = "/dev/ttyACM0"
usb_serial = "NLS-0001"

[[scanners]]
name = "exit"
url = "/dev/gatepost/exit"
usb_path = "port3"

[[rdm6300]]
name = "cards"
url = "/dev/gatepost/cards"
usb_serial = "has space"

[[scanners]]
name = "both"
url = "/dev/gatepost/both"
usb_serial = "A1"
usb_path = "1-1.4"

[[scanners]]
name = "glob"
url = "/dev/gatepost/glob"
usb_serial = "A*"
""",
        capsys,
    )
    assert status == 2
    assert (
        "gate.toml:8: scanners.0: with usb_serial or usb_path the url must be the udev link '/dev/gatepost/entry'"
        in out
    )
    assert "gate.toml:16: scanners.1.usb_path" in out
    assert "gate.toml:21: rdm6300.0.usb_serial" in out
    assert "gate.toml:23: scanners.2: give usb_serial or usb_path, not both" in out
    assert "gate.toml:32: scanners.3.usb_serial" in out
    assert "Traceback" not in out
