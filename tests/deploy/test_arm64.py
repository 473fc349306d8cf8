"""On arm64, the Pi's architecture: the bundle installs a broker, a console and a gate into an arm64
Debian 12 root run through qemu-user-static, and a smoke scenario runs there with the network off.

This is what catches a dependency with no aarch64 wheel before a compound does.  It takes
minutes under emulation, so it runs only when asked: ``pytest -m emulated tests/deploy``.
"""

from __future__ import annotations

import json
import shutil
import tarfile
import time
from pathlib import Path

import pytest

from deploy.bundle import build_gatepost_wheel, write_bundle
from tests.deploy.debian_root import build_root, chroot, enable_arm64_emulation, mounted, needs, unpack

pytestmark = [pytest.mark.slow, pytest.mark.emulated, pytest.mark.timeout(3600)]

ARM64_IMAGE = ("systemd", "udev", "python3", "python3-venv", "dbus")
ARM64_APT = ("mosquitto", "logrotate", "chrony", "procps")
SCANS = 20

GATE = """site = "longtan"
gate = "north"
[mqtt]
host = "127.0.0.1"
username = "gate.longtan.north"
password_file = "mqtt.secret"
[[scanners]]
name = "entry"
url = "/dev/gatepost/entry"
usb_path = "1-1.2"
[door.pins]
relay = "GPIO17"
relay_active_high = false
"""
CONSOLE = """name = "console"
site = "longtan"
[mqtt]
host = "127.0.0.1"
username = "console.console"
password_file = "mqtt.secret"
[store]
path = "/var/lib/gatepost/console/events.db"
"""


def test_bundle_installs_and_runs_on_arm64(tmp_path: Path):
    needs("debootstrap", "chroot", "unshare", "update-binfmts", "qemu-aarch64-static")
    enable_arm64_emulation()
    timings: dict[str, float] = {}
    began = time.monotonic()
    tarball = build_root("arm64", ARM64_IMAGE, ARM64_APT)
    timings["root_s"] = time.monotonic() - began
    wheel = build_gatepost_wheel(tmp_path / "dist")
    bundle = write_bundle(tmp_path / "bundle.tar", wheel=wheel, debs=[], say=print)
    with tarfile.open(bundle) as archive:
        member = next(m for m in archive.getmembers() if m.name.endswith("/MANIFEST.json"))
        manifest = json.load(archive.extractfile(member))  # type: ignore[arg-type]
    assert manifest["unavailable"]["aarch64"] == []
    assert any(name.startswith("lgpio-") for name in manifest["wheels"]["aarch64"])

    root = unpack(tarball, tmp_path / "root")
    for role, text in (("gate", GATE), ("console", CONSOLE)):
        (root / f"tmp/{role}").mkdir(parents=True)
        (root / f"tmp/{role}/{role}.toml").write_text(text)
        (root / f"tmp/{role}/mqtt.secret").write_text("set by gatepost broker add-gate\n")
    (root / "boot/firmware").mkdir(parents=True)
    (root / "boot/firmware/config.txt").write_text("arm_64bit=1\n")
    shutil.copy2(bundle, root / "tmp/bundle.tar")
    shutil.copy2(Path(__file__).with_name("smoke.py"), root / "tmp/smoke.py")
    with mounted(root):
        assert chroot(root, "uname -m").strip() == "aarch64"
        began = time.monotonic()
        installer = "cd /tmp && tar -xf bundle.tar && ./gatepost-bundle-*/install"
        out = chroot(root, f"{installer} broker")
        out += chroot(root, f"{installer} console --config /tmp/console/console.toml")
        out += chroot(root, f"{installer} gate --config /tmp/gate/gate.toml --pi --no-kiosk")
        timings["install_s"] = time.monotonic() - began
        print(out)
        assert "checked: /etc/gatepost/gate.toml: ok" in out, out
        assert "checked: /etc/gatepost/console.toml: ok" in out
        assert "gpio=17=op,dh" in (root / "boot/firmware/config.txt").read_text()
        probe = chroot(
            root, "/opt/gatepost/bin/python -c 'import lgpio, cv2, zxingcpp, nacl; print(lgpio.__file__)'"
        )
        assert "/opt/gatepost/lib/python3.11/site-packages/" in probe
        units = " ".join(
            f"/etc/systemd/system/gatepost-{name}.service" for name in ("edge", "console", "broker")
        )
        verify = chroot(root, f"systemd-analyze verify --man=no {units}")
        assert "gatepost" not in verify, verify

        began = time.monotonic()
        smoke = chroot(root, f"cd /tmp && /opt/gatepost/bin/python smoke.py {SCANS}", timeout=1800)
        timings["smoke_s"] = time.monotonic() - began
    result = json.loads(smoke.strip().splitlines()[-1])
    print(json.dumps({**result, **{k: round(v, 1) for k, v in timings.items()}}))
    assert result["sent"] == SCANS
    assert result["stored"] == SCANS and result["distinct"] == SCANS  # every scan once, none lost
    assert result["granted"] == SCANS // 2 and result["denied"] == SCANS - SCANS // 2
