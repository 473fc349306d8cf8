"""A gate installed from the wheel never imports the simulator.

The simulator registers its devices (``sim://`` cameras, people at a door) with
``drivers.devices`` when it is itself imported; production modules look them up and never
name it.  Each check runs in a fresh interpreter, because this test process has imported
the simulator through ``tests/conftest.py``.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PRODUCTION = ("protocol", "drivers", "edge", "console", "broker", "gatepost", "deploy")
ALLOWED = {
    # The demo and sim-gate exist to run the simulator; they import it inside their commands.
    Path("gatepost/demo.py"),
    Path("gatepost/sim_gate.py"),
    Path("gatepost/demo_office.py"),
}

IMPORT_EVERYTHING = """
import importlib, json, pkgutil, sys
failed = {}
for package in %(packages)r:
    module = importlib.import_module(package)
    for info in pkgutil.walk_packages(module.__path__, package + "."):
        if info.name.endswith(".__main__"):
            continue
        try:
            importlib.import_module(info.name)
        except ImportError as exc:  # an optional extra that is not installed
            failed[info.name] = str(exc)
from gatepost.cli import build_parser
build_parser()
print(json.dumps({"simulator": sorted(m for m in sys.modules if m.split(".")[0] == "simulator"),
                  "failed": failed}))
"""

RUN_A_GATE = """
import json, os, signal, sqlite3, sys, threading, time, tty
from gatepost.cli import main

master, slave = os.openpty()
tty.setraw(slave)
outbox = %(outbox)r
config = %(config)r
with open(config, "w") as f:
    f.write('''site = "site1"
gate = "north"
[mqtt]
host = "127.0.0.1"
port = 9
username = "gate.site1.north"
password_file = "%(secret)s"
[[scanners]]
url = "%%s"
baudrate = 115200
[outbox]
path = "%%s"
[access]
allow = ["104729000001"]
[clock]
trust = "trusted"
''' %% (os.ttyname(slave), outbox))

def scan_then_stop():
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        os.write(master, b"104729000001\\r\\n")
        time.sleep(0.3)
        try:
            with sqlite3.connect(outbox) as db:
                if db.execute("SELECT count(*) FROM outbox WHERE type = 'access.scan'").fetchone()[0]:
                    break
        except sqlite3.Error:
            pass
    os.kill(os.getpid(), signal.SIGTERM)

threading.Thread(target=scan_then_stop, daemon=True).start()
status = main(["edge", "run", "--config", config])
with sqlite3.connect(outbox) as db:
    scans = db.execute("SELECT count(*) FROM outbox WHERE type = 'access.scan'").fetchone()[0]
print(json.dumps({"status": status, "scans": scans,
                  "simulator": sorted(m for m in sys.modules if m.split(".")[0] == "simulator")}))
"""

SIM_CAMERA = """
import json, sys
from drivers.camera import Camera, CameraSourceError
try:
    Camera("sim://?codes=42&realtime=0", on_frame=lambda frame: None)
except CameraSourceError as exc:
    print(json.dumps({"type": type(exc).__name__, "reason": exc.reason.value, "detail": exc.detail,
                      "simulator": "simulator" in sys.modules}))
"""


def _python(code: str, tmp_path: Path) -> dict:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=90, env=env, cwd=tmp_path
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_no_production_module_names_the_simulator():
    pattern = re.compile(r"^\s*(from\s+simulator[\s.]|import\s+simulator\b)|import_module\(\s*['\"]simulator")
    offenders = []
    for package in PRODUCTION:
        for path in sorted((ROOT / package).rglob("*.py")):
            relative = path.relative_to(ROOT)
            if relative in ALLOWED:
                continue
            for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
                if pattern.search(line):
                    offenders.append(f"{relative}:{number}: {line.strip()}")
    assert offenders == []


def test_importing_every_production_module_loads_no_simulator(tmp_path: Path):
    result = _python(IMPORT_EVERYTHING % {"packages": PRODUCTION}, tmp_path)
    assert result["simulator"] == []
    assert set(result["failed"]) <= {"drivers.keyboard"}, result["failed"]


def test_a_gate_without_simulated_devices_runs_without_the_simulator(tmp_path: Path):
    secret = tmp_path / "mqtt.secret"
    secret.write_text("not-used")
    code = RUN_A_GATE % {
        "outbox": str(tmp_path / "outbox.db"),
        "config": str(tmp_path / "gate.toml"),
        "secret": str(secret),
    }
    result = _python(code, tmp_path)
    assert result["status"] == 0
    assert result["scans"] >= 1  # the scanner on the pseudo-terminal was read and decided
    assert result["simulator"] == []


def test_sim_camera_without_the_simulator_is_a_typed_error(tmp_path: Path):
    result = _python(SIM_CAMERA, tmp_path)
    assert result["type"] == "CameraSourceError"
    assert result["reason"] == "not_registered"
    assert "importing simulator" in result["detail"]
    assert result["simulator"] is False


def test_simulation_section_without_the_simulator_is_refused(tmp_path: Path):
    config = tmp_path / "door.toml"
    config.write_text(
        """site = "site1"
gate = "door"
[mqtt]
host = "127.0.0.1"
port = 9
username = "gate.site1.door"
password_file = "secret"
[gpio]
pin_factory = "mock"
[door.pins]
relay = "GPIO17"
[[wiegand]]
d0 = "GPIO5"
d1 = "GPIO6"
[outbox]
path = "outbox.db"
[simulation]
cards = ["13:1000"]
"""
    )
    (tmp_path / "secret").write_text("x")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    edge = subprocess.run(
        [sys.executable, "-m", "gatepost", "edge", "run", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    assert edge.returncode == 1
    assert "[simulation] needs simulated people" in edge.stderr
    assert "Traceback" not in edge.stderr
