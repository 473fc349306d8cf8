"""A gate as systemd would run it: its configuration file, and the unit's installed paths mapped onto tmp_path."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from broker.launcher import free_port

ROOT = Path(__file__).resolve().parents[2]
EDGE_UNIT = ROOT / "systemd" / "gatepost-edge.service"
GRANTED = "RESIDENT-0001"
RELAY = "GPIO17"


def write_gate_config(
    folder: Path,
    scanner_path: Path,
    *,
    door: bool = False,
    relay_active_high: bool = False,
    unlock_s: float = 30.0,
) -> Path:
    """A scanner gate whose broker does not exist (a free port nobody listens on); with a door on ``mockfile`` pins."""
    folder.mkdir(parents=True, exist_ok=True)
    secret = folder / "mqtt.secret"
    secret.write_text("unused")
    secret.chmod(0o600)
    lines = [
        'site = "s1"',
        'gate = "g1"',
        "",
        "[mqtt]",
        'host = "127.0.0.1"',
        f"port = {free_port()}",
        'username = "gate.s1.g1"',
        f"password_file = {json.dumps(str(secret))}",
        "",
        "[[scanners]]",
        'name = "scanner"',
        f"url = {json.dumps(str(scanner_path))}",
        "",
        "[outbox]",
        f"path = {json.dumps(str(folder / 'outbox.db'))}",
        "",
        "[access]",
        f'allow = ["{GRANTED}"]',
        "repeat_s = 0",
        "",
        "[clock]",
        'trust = "trusted"',
        "",
    ]
    if door:
        lines += [
            "[gpio]",
            'pin_factory = "mockfile"',
            "",
            "[door.pins]",
            f'relay = "{RELAY}"',
            f"relay_active_high = {'true' if relay_active_high else 'false'}",
            "",
            "[door.behaviour]",
            f"unlock_s = {unlock_s}",
            f"max_unlock_s = {max(unlock_s, 30.0)}",
            "",
        ]
    path = folder / "gate.toml"
    path.write_text("\n".join(lines))
    return path


def unit_paths(config: Path, state: Path) -> dict[str, list[str]]:
    """The installed layout the unit names, mapped onto a test's files (for simulator.service.ServiceRun)."""
    state.mkdir(parents=True, exist_ok=True)
    return {
        "/opt/gatepost/bin/gatepost": [sys.executable, "-m", "gatepost"],
        "/etc/gatepost/gate.toml": [str(config)],
        "/var/lib/gatepost": [str(state)],
    }


def child_env(pins: Path | None = None) -> dict[str, str]:
    env = {"PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1"}
    if pins is not None:
        env["GATEPOST_MOCK_PIN_DIR"] = str(pins)
    return env
