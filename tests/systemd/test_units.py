"""The unit files the installer installs: systemd's own checks, the hardening scores, and what they run.

``systemd-analyze verify`` and ``systemd-analyze security --offline=yes`` read the files as
systemd would.  verify also wants every command to exist, so it runs against a root
folder holding the host's own system units, stand-in executables at the installed paths
(/opt/gatepost/bin/gatepost, /usr/sbin/mosquitto) and our units; its warnings fail the
test as much as its errors do.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from gatepost.cli import build_parser
from simulator.service import Unit

ROOT = Path(__file__).resolve().parents[2]
UNITS = ROOT / "systemd"
SYSTEM_UNITS = Path("/usr/lib/systemd/system")
EXPOSURE_LIMITS = {
    "gatepost-edge.service": 4.5,
    "gatepost-console.service": 2.5,
    "gatepost-broker.service": 2.5,
}
GATEPOST = "/opt/gatepost/bin/gatepost"

analyze = shutil.which("systemd-analyze")
needs_analyze = pytest.mark.skipif(analyze is None, reason="systemd-analyze is not installed here")


def unit(name: str) -> Unit:
    return Unit.parse(UNITS / name)


def unit_section(name: str, section: str) -> dict[str, list[str]]:
    settings: dict[str, list[str]] = {}
    current = ""
    for raw in (UNITS / name).read_text().splitlines():
        line = raw.strip()
        if line.startswith("["):
            current = line.strip("[]")
        elif current == section and "=" in line and not line.startswith("#"):
            key, value = line.split("=", 1)
            settings.setdefault(key, []).append(value)
    return settings


@needs_analyze
@pytest.mark.parametrize("name", sorted(EXPOSURE_LIMITS))
def test_hardening_scores(name):
    done = subprocess.run(
        [analyze, "security", "--offline=yes", "--no-pager", str(UNITS / name)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    found = re.search(r"Overall exposure level for \S+: (\d+(?:\.\d+)?)", done.stdout + done.stderr)
    if found is None and "--offline" in done.stderr:
        pytest.skip(f"this systemd-analyze has no --offline: {done.stderr.strip()[:200]}")
    assert found is not None, done.stdout + done.stderr
    assert float(found.group(1)) <= EXPOSURE_LIMITS[name], done.stdout


@needs_analyze
@pytest.mark.skipif(
    not SYSTEM_UNITS.is_dir(), reason="no system units to verify against (/usr/lib/systemd/system)"
)
@pytest.mark.parametrize("name", sorted(EXPOSURE_LIMITS))
def test_systemd_verify(tmp_path, name):
    root = tmp_path / "root"
    shutil.copytree(SYSTEM_UNITS, root / "usr/lib/systemd/system", symlinks=True)
    for command in (GATEPOST, "/usr/sbin/mosquitto", "/bin/kill"):
        stand_in = root / command.lstrip("/")
        stand_in.parent.mkdir(parents=True, exist_ok=True)
        stand_in.write_text("#!/bin/sh\n")
        stand_in.chmod(0o755)
    installed = root / "etc/systemd/system" / name
    installed.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(UNITS / name, installed)
    done = subprocess.run(
        [analyze, "verify", "--man=no", f"--root={root}", str(installed)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0 and done.stderr.strip() == "", done.stdout + done.stderr


@pytest.mark.parametrize("name", sorted(EXPOSURE_LIMITS))
def test_gatepost_units_run_commands_that_exist(name):
    settings = unit(name).settings
    commands = [
        value.lstrip("-@:+!").split()
        for key in ("ExecStartPre", "ExecStart", "ExecStopPost")
        for value in settings.get(key, [])
    ]
    gatepost = [argv for argv in commands if "gatepost" in argv[0]]
    assert gatepost or name == "gatepost-broker.service"
    parser = build_parser()
    for argv in gatepost:
        assert argv[0] == GATEPOST  # the wheel's virtual environment, not a checkout
        parser.parse_args(argv[1:])  # exits (fails the test) on a sub-command or option that does not exist


@pytest.mark.parametrize("name", ["gatepost-edge.service", "gatepost-console.service"])
def test_supervised_never_given_up_on(name):
    service = unit(name).settings
    assert service["Type"] == ["notify"] and service["NotifyAccess"] == ["main"]
    assert unit(name).watchdog_s > 0
    assert service["Restart"] == ["always"]
    assert unit_section(name, "Unit")["StartLimitIntervalSec"] == ["0"]
    assert service["WorkingDirectory"] == ["/var/lib/gatepost"]


def test_the_gate_puts_the_relay_off_after_it_and_sees_only_its_devices():
    edge = unit("gatepost-edge.service")
    assert edge.exec_stop_post == [[GATEPOST, "edge", "relay-off", "--config", "/etc/gatepost/gate.toml"]]
    assert edge.environment["LG_WD"] == "/var/lib/gatepost"  # lgpio's notification FIFO
    assert edge.settings["DevicePolicy"] == ["closed"]
    classes = {value.split()[0] for value in edge.settings["DeviceAllow"]}
    assert classes == {
        "char-gpiochip",
        "char-ttyACM",
        "char-ttyUSB",
        "char-ttyAMA",
        "char-ttyS",
        "char-video4linux",
        "char-input",
    }
    assert edge.settings["SupplementaryGroups"] == ["gpio dialout video input"]


def test_the_broker_unit_is_not_debians_and_takes_many_clients():
    name = "gatepost-broker.service"
    assert not (UNITS / "mosquitto.service").exists()
    broker = unit(name)
    assert broker.exec_start == ["/usr/sbin/mosquitto", "-c", "/etc/gatepost/broker/mosquitto.conf"]
    assert unit_section(name, "Unit")["Conflicts"] == ["mosquitto.service"]  # both would want port 1883
    assert int(broker.settings["LimitNOFILE"][0]) >= 16384
    # The data folder the unit lets it write is the one broker/'s configuration names.
    conf = (ROOT / "broker" / "mosquitto.conf").read_text()
    location = re.search(r"^persistence_location (\S+)", conf, re.MULTILINE)
    assert location is not None and broker.settings["ReadWritePaths"] == [location.group(1)]


def test_the_broker_restarts_when_its_revocation_list_changes():
    """mosquitto reads its CRL only at start: the path unit must watch the very file the config names."""
    crlfile = re.search(r"^crlfile (\S+)$", (ROOT / "broker" / "mosquitto.conf").read_text(), re.M)
    assert crlfile is not None
    assert unit_section("gatepost-broker-crl.path", "Path") == {
        "PathChanged": [crlfile.group(1)],
        "Unit": ["gatepost-broker-crl.service"],
    }
    restart = unit_section("gatepost-broker-crl.service", "Service")["ExecStart"]
    assert restart == ["/bin/systemctl try-restart gatepost-broker.service"]


@needs_analyze
@pytest.mark.skipif(not SYSTEM_UNITS.is_dir(), reason="no system units to verify against")
def test_the_revocation_restart_units_verify(tmp_path):
    root = tmp_path / "root"
    shutil.copytree(SYSTEM_UNITS, root / "usr/lib/systemd/system", symlinks=True)
    for command in (GATEPOST, "/usr/sbin/mosquitto", "/bin/kill", "/bin/systemctl"):
        stand_in = root / command.lstrip("/")
        stand_in.parent.mkdir(parents=True, exist_ok=True)
        stand_in.write_text("#!/bin/sh\n")
        stand_in.chmod(0o755)
    installed = root / "etc/systemd/system"
    installed.mkdir(parents=True)
    names = ("gatepost-broker.service", "gatepost-broker-crl.service", "gatepost-broker-crl.path")
    for name in names:
        shutil.copy(UNITS / name, installed / name)
    done = subprocess.run(
        [analyze, "verify", "--man=no", f"--root={root}", *(str(installed / name) for name in names[1:])],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0 and done.stderr.strip() == "", done.stdout + done.stderr
