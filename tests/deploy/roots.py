"""A target root to install into: a folder with a real passwd, group, shadow and dpkg status.

Accounts are changed by the shadow tools' own ``--root`` and units enabled by ``systemctl
--root``, as they are on a real install into a chroot; that needs root, as installing
does.  The Python environment cannot be made in a folder with no Python in it: the tests
of the plan mark it made (the stamp the real step writes), and tests/deploy/test_chroot.py
makes it for real in a Debian 12 root.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from deploy.common import Request
from deploy.environment import Environment
from deploy.layout import PREFIX, STAMP
from deploy.plan import Plan
from deploy.source import WheelSource
from deploy.target import Target

INSTALLED = ("python3", "python3-venv", "chrony", "cage", "chromium", "mosquitto", "logrotate", "procps")
PIN_HASH = "scrypt$16384$8$1$VzBdS-5_D85xjC0dZ7BTLQ$bDqKmvdE4FQ034RnFlHXv7RCP330F9daMvfNF3xVfnk"

GATE = f"""\
site = "longtan"
gate = "north"

[mqtt]
host = "console.local"
port = 8883
username = "gate.longtan.north"
password_file = "mqtt.secret"                 # over TLS: never in clear off loopback
tls_ca = "ca.crt"

[[scanners]]
name = "entry"
url = "/dev/gatepost/entry"
usb_serial = "NLS0001"
direction = "in"

[[scanners]]
name = "exit"
url = "/dev/gatepost/exit"
usb_path = "1-1.3"
direction = "out"

[access]
allow_file = "allow.txt"

[door.pins]
relay = "GPIO17"
relay_active_high = false

[passes]
root_key = "passes/root.pub"
trust_bundle = "/var/lib/gatepost/passes/bundle"
site_secret_file = "passes/site.secret"

[guard_screen]
enabled = true
listen = "127.0.0.1:8099"
pin_hash = "{PIN_HASH}"
"""


def needs_root() -> None:
    if os.geteuid() != 0:
        pytest.skip("installing changes users and owners: run as root (CI does)")


def make_root(root: Path) -> Path:
    needs_root()
    (root / "etc").mkdir(parents=True)
    for name in ("passwd", "group", "shadow", "gshadow", "login.defs"):
        shutil.copy2(Path("/etc") / name, root / "etc" / name)
    (root / "var/lib/dpkg").mkdir(parents=True)
    (root / "var/lib/dpkg/status").write_text(
        "".join(
            f"Package: {p}\nStatus: install ok installed\nArchitecture: amd64\nVersion: 1\n\n"
            for p in (*INSTALLED, "dpkg")
        )
    )
    (root / "boot/firmware").mkdir(parents=True)
    (root / "boot/firmware/config.txt").write_text("# the board's own settings\narm_64bit=1\n[all]\n")
    (root / "tmp").mkdir()
    return root


def make_gate_folder(folder: Path, text: str = GATE) -> Path:
    (folder / "passes").mkdir(parents=True)
    (folder / "gate.toml").write_text(text)
    (folder / "mqtt.secret").write_text("mqtt-password\n")
    (folder / "ca.crt").write_text("-----BEGIN CERTIFICATE-----\n(the site CA)\n-----END CERTIFICATE-----\n")
    (folder / "passes/root.pub").write_bytes(b"root public key")
    (folder / "passes/site.secret").write_bytes(b"site secret")
    (folder / "allow.txt").write_text("104729000001\n")
    return folder


def make_wheel(folder: Path) -> Path:
    """Stands in for the gatepost wheel: the plan only reads its name and digest."""
    path = folder / "gatepost-0.1.0-py3-none-any.whl"
    path.parent.mkdir(parents=True)
    path.write_bytes(b"not really a wheel")
    return path


def request(root: Path, wheel: Path, config: Path | None, **options) -> Request:
    role = options.pop("role", "gate")
    return Request(role, Target(root), WheelSource(wheel), config=config, **options)


def environment_made(plan: Plan, target: Target) -> None:
    """What the environment step leaves behind, for a root with no Python to make it with."""
    env = next(change for change in plan.changes if isinstance(change, Environment))
    target.path(PREFIX / "bin").mkdir(parents=True, exist_ok=True)
    target.path(PREFIX / "bin/python").write_text("")
    target.path(STAMP).write_text(env.stamp_text())
