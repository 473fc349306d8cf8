"""The installer's small pure parts: udev rules, the kiosk's page, wheel tags and markers."""

from __future__ import annotations

from deploy.kiosk import guard_url
from deploy.udev import ReaderLink, render_rules
from deploy.wheels import WheelName, marker_environment


def test_udev_rules_pin_each_reader_by_serial_or_port():
    rules = render_rules(
        [
            ReaderLink("entry", usb_serial="ABC-1"),
            ReaderLink("exit", usb_path="1-1.2:1.0"),
            ReaderLink("plain"),
        ]
    )
    lines = [line for line in rules.splitlines() if not line.startswith("#")]
    assert lines == [
        'SUBSYSTEM=="gpio", KERNEL=="gpiochip*", GROUP="gpio", MODE="0660"',
        'SUBSYSTEM=="tty", ATTRS{serial}=="ABC-1", SYMLINK+="gatepost/entry", GROUP="dialout", MODE="0660"',
        'SUBSYSTEM=="tty", KERNELS=="1-1.2:1.0", SYMLINK+="gatepost/exit", GROUP="dialout", MODE="0660"',
    ]
    assert [line for line in render_rules([]).splitlines() if not line.startswith("#")] == [
        'SUBSYSTEM=="gpio", KERNEL=="gpiochip*", GROUP="gpio", MODE="0660"'
    ]


def test_kiosk_shows_the_guard_screen_over_loopback():
    assert guard_url("0.0.0.0:8088") == "http://127.0.0.1:8088/"


def test_wheel_names_tell_the_machines_they_fit():
    arm = WheelName.parse("numpy-2.4.6-cp311-cp311-manylinux_2_27_aarch64.manylinux_2_28_aarch64.whl")
    assert arm.project == "numpy" and arm.fits("aarch64") and not arm.fits("x86_64")
    pure = WheelName.parse("paho_mqtt-2.2.0-py3-none-any.whl")
    assert pure.project == "paho-mqtt" and pure.pure and pure.fits("aarch64") and pure.fits("x86_64")


def test_markers_are_judged_for_the_target_machine_not_this_one():
    from packaging.requirements import Requirement

    lgpio = Requirement(
        "lgpio>=0.2.2.0; sys_platform == 'linux' and platform_machine == 'aarch64' and python_version == '3.11'"
    )
    assert lgpio.marker is not None
    assert lgpio.marker.evaluate(marker_environment("aarch64"))
    assert not lgpio.marker.evaluate(marker_environment("x86_64"))


def _wheel(folder, filename: str, requires: list[str]) -> None:
    import zipfile

    name, version = filename.split("-")[:2]
    with zipfile.ZipFile(folder / filename, "w") as archive:
        metadata = f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n"
        metadata += "".join(f"Requires-Dist: {r}\n" for r in requires)
        archive.writestr(f"{name}-{version}.dist-info/METADATA", metadata)


def test_bundle_finds_what_pip_left_out_for_the_other_machine(tmp_path):
    """pip download --platform judges markers by this machine: the bundle finds the gap itself."""
    from deploy.bundle import _gaps

    gatepost = "gatepost-0.1.0-py3-none-any.whl"
    _wheel(
        tmp_path,
        gatepost,
        [
            "pyserial>=3.5",
            "lgpio>=0.2.2.0; platform_machine == 'aarch64' and python_version == '3.11'",
            "pyzbar>=0.1.9; extra == 'pyzbar'",
            "pytest; extra == 'test'",
        ],
    )
    _wheel(tmp_path, "pyserial-3.5-py2.py3-none-any.whl", [])
    _wheel(tmp_path, "pyzbar-0.1.9-py2.py3-none-any.whl", [])
    assert _gaps("aarch64", tmp_path, tmp_path / gatepost) == ["lgpio>=0.2.2.0"]
    assert _gaps("x86_64", tmp_path, tmp_path / gatepost) == []
    _wheel(tmp_path, "lgpio-0.2.2.0-cp311-cp311-manylinux_2_34_aarch64.whl", [])
    assert _gaps("aarch64", tmp_path, tmp_path / gatepost) == []
