"""The real installation, in a fresh Debian 12 root, from the offline bundle, with the network off.

What is checked is what a site installer would look at afterwards: the files, their owners
and modes, ``systemd-analyze verify`` of every installed unit, ``gatepost edge
check-config`` of the installed configuration by the installed program, and that a second
run changes nothing.  chrony is not in the root: it comes from the bundle's ``.deb`` files,
as at a compound office with no internet.  The image has what Raspberry Pi OS has (Python,
systemd, udev) and, for the kiosk, cage and Chromium.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from deploy.bundle import build_gatepost_wheel, write_bundle
from tests.deploy.debian_root import build_root, cached_debs, chroot, mounted, needs, unpack
from tests.deploy.roots import GATE

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1800)]

AMD64_IMAGE = ("systemd", "udev", "python3", "python3-venv", "dbus")
AMD64_APT = ("cage", "chromium")
AMD64_OFFLINE = ("chrony",)
"""Fetched when the root is built, installed by the test from the bundle with the network off."""


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The offline bundle of this checkout (its wheel freshly built), with the root's missing .debs."""
    needs("debootstrap", "chroot", "unshare")
    build_root("amd64", AMD64_IMAGE, AMD64_APT, AMD64_OFFLINE)
    folder = tmp_path_factory.mktemp("bundle")
    wheel = build_gatepost_wheel(folder / "dist")
    return write_bundle(folder / "gatepost-bundle.tar", wheel=wheel, debs=cached_debs("amd64"), say=print)


def _stat(root: Path, path: str) -> str:
    return chroot(root, f"stat -c '%a %U:%G' {path}").strip()


def test_gate_installs_offline_from_the_bundle_in_a_fresh_debian_12(tmp_path: Path, bundle: Path):
    root = unpack(build_root("amd64", AMD64_IMAGE, AMD64_APT, AMD64_OFFLINE), tmp_path / "root")
    (root / "boot/firmware").mkdir(parents=True)
    (root / "boot/firmware/config.txt").write_text("arm_64bit=1\n")
    site = root / "tmp/north"
    (site / "passes").mkdir(parents=True)
    # The broker password as the units' encrypted credential, sealed by the target's systemd-creds.
    (site / "gate.toml").write_text(
        GATE.replace('password_file = "mqtt.secret"', 'credential = "gatepost-mqtt"')
    )
    (site / "mqtt.secret").write_text("mqtt-password\n")
    (site / "ca.crt").write_text("-----BEGIN CERTIFICATE-----\n(the site CA)\n-----END CERTIFICATE-----\n")
    (site / "passes/root.pub").write_bytes(b"root public key")
    (site / "passes/site.secret").write_bytes(b"site secret")
    (site / "allow.txt").write_text("104729000001\n")
    shutil.copy2(bundle, root / "tmp/bundle.tar")
    with mounted(root):
        assert "chrony" not in chroot(root, "dpkg-query -W -f='${Package}\\n'")
        install = (
            "cd /tmp && tar -xf bundle.tar && ./gatepost-bundle-*/install gate --config /tmp/north/gate.toml"
            " --pi --mqtt-secret /tmp/north/mqtt.secret"
        )
        first = chroot(root, install)
        print(first)
        assert "done: install Debian packages" in first and "from the bundle's" in first
        assert "done: make /opt/gatepost (a Python environment)" in first
        assert "checked: /etc/gatepost/gate.toml: ok (site longtan, gate north, 2 scanner(s))" in first

        # Files, owners and modes, as the target's own stat and passwd see them.
        assert _stat(root, "/etc/gatepost/gate.toml") == "640 root:gatepost"
        for key in ("passes/root.pub", "passes/site.secret"):
            assert _stat(root, f"/etc/gatepost/{key}") == "600 gatepost:gatepost"
        assert _stat(root, "/etc/gatepost/gatepost-mqtt.cred") == "600 root:root"
        sealed = "systemd-creds decrypt --name=gatepost-mqtt /etc/gatepost/gatepost-mqtt.cred -"
        assert chroot(root, sealed).strip() == "mqtt-password"
        assert _stat(root, "/var/lib/gatepost") == "711 gatepost:gatepost"
        assert _stat(root, "/opt/gatepost/bin/gatepost") == "755 root:root"
        groups = chroot(root, "id -nG gatepost").split()
        assert {"gatepost", "gpio", "dialout", "video", "input"} <= set(groups)
        assert "gpio=17=op,dh" in (root / "boot/firmware/config.txt").read_text()
        assert (root / "etc/udev/rules.d/90-gatepost.rules").is_file()
        assert chroot(root, "dpkg-query -W -f='${Status}' chrony") == "install ok installed"

        # Every installed unit passes systemd's own check, with the installed binaries in place.
        units = ["gatepost-edge.service", "gatepost-kiosk.service"]
        for unit in units:
            assert chroot(root, f"systemctl is-enabled {unit}").strip() == "enabled"
        verify = chroot(
            root, "systemd-analyze verify --man=no " + " ".join(f"/etc/systemd/system/{u}" for u in units)
        )
        assert "gatepost" not in verify, verify  # no complaint names our units

        # The installed program checks the installed configuration, as the unit's ExecStartPre will.
        check = chroot(root, "/opt/gatepost/bin/gatepost edge check-config /etc/gatepost/gate.toml")
        assert "ok (site longtan, gate north" in check
        # The wheel was installed, not a checkout: and the gate never imports the simulator.
        probe = chroot(
            root,
            "cd / && /opt/gatepost/bin/python -c 'import json, sys, edge.agent, edge.cli, drivers.camera;"
            ' print(json.dumps([edge.agent.__file__, "simulator" in sys.modules]))\'',
        )
        where, simulator = json.loads(probe.strip().splitlines()[-1])
        assert where.startswith("/opt/gatepost/lib/python3.11/site-packages/")
        assert simulator is False

        second = chroot(root, install)
        assert "nothing to change: it is already as asked" in second, second
        assert "done:" not in second

        removed = chroot(root, "cd /tmp && ./gatepost-bundle-*/install uninstall gate")
        assert "done: remove /opt/gatepost/" in removed
        assert (root / "etc/gatepost/passes/site.secret").is_file()  # keys stay unless --purge
        assert "# BEGIN gatepost" not in (root / "boot/firmware/config.txt").read_text()
