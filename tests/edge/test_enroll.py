"""``gatepost edge enroll`` → ``gatepost broker sign`` → ``enroll --install``: the key never leaves the gate."""

from __future__ import annotations

import stat
import subprocess
import sys
from pathlib import Path

from broker.launcher import Broker
from broker.probe import ConnackCode, try_login
from edge.config import load_config
from gatepost.cli import main


def gate_toml(path: Path, broker: Broker, site: str, *, tls: bool) -> Path:
    text = f'site = "{site}"\ngate = "north"\n\n[mqtt]\nhost = "{broker.host}"\nport = {broker.tls_port}\n'
    if tls:
        text += 'tls_ca = "ca.crt"\ntls_cert = "gate.crt"\n'
        text += f'tls_key = "gate.{site}.north.key"\n'
    path.write_text(text)
    return path


def test_enrol_sign_install_connect_and_renew(tmp_path: Path, broker: Broker, unique_name: str, capsys):
    gate_dir, office = tmp_path / "gate", tmp_path / "office"
    gate_dir.mkdir()
    broker.add_gate(unique_name, "north")
    config = gate_toml(gate_dir / "gate.toml", broker, unique_name, tls=False)
    cn = f"gate.{unique_name}.north"

    assert main(["edge", "enroll", "--config", str(config)]) == 0
    key, csr = gate_dir / f"{cn}.key", gate_dir / f"{cn}.csr"
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert b"PRIVATE KEY" not in csr.read_bytes()
    assert main(["edge", "enroll", "--config", str(config)]) == 2, "enrolling twice would lose the key"

    assert (
        main(["broker", "sign", "--state", str(broker.state_dir), "--csr", str(csr), "--out", str(office)])
        == 0
    )
    assert main(["edge", "enroll", "--config", str(config), "--install", str(office / f"{cn}.crt")]) == 0
    (gate_dir / "ca.crt").write_bytes((office / "ca.crt").read_bytes())
    (gate_dir / f"{cn}.crt").rename(gate_dir / "gate.crt")
    settings = load_config(gate_toml(config, broker, unique_name, tls=True)).mqtt
    endpoint = settings.endpoint()
    context = endpoint.tls_context()
    login = try_login(broker.host, broker.tls_port, endpoint.username, tls=context, timeout=3.0)
    assert login is ConnackCode.ACCEPTED

    # Renewal: a new key beside the old one; the old one works until the new certificate is in.
    assert main(["edge", "enroll", "--config", str(config), "--renew"]) == 0
    pending = gate_dir / f"{cn}.key.new"
    assert pending.exists() and key.exists()
    renewed = tmp_path / "renewed"
    assert (
        main(["broker", "sign", "--state", str(broker.state_dir), "--csr", str(csr), "--out", str(renewed)])
        == 0
    )
    old_key = key.read_bytes()
    assert main(["edge", "enroll", "--config", str(config), "--install", str(renewed / f"{cn}.crt")]) == 0
    assert key.read_bytes() != old_key and not pending.exists()


def test_sign_refuses_a_name_nobody_provisioned(tmp_path: Path, broker: Broker, unique_name: str, capsys):
    gate_dir = tmp_path / "gate"
    gate_dir.mkdir()
    config = gate_toml(gate_dir / "gate.toml", broker, unique_name, tls=False)
    assert main(["edge", "enroll", "--config", str(config)]) == 0
    csr = gate_dir / f"gate.{unique_name}.north.csr"
    capsys.readouterr()
    assert main(["broker", "sign", "--state", str(broker.state_dir), "--csr", str(csr)]) == 2
    assert "not provisioned" in capsys.readouterr().err
    assert not (gate_dir / f"gate.{unique_name}.north.crt").exists()


def test_a_password_in_clear_off_loopback_is_refused_with_file_line_and_key(tmp_path: Path):
    config = tmp_path / "gate.toml"
    config.write_text(
        'site = "s"\ngate = "g"\n\n[mqtt]\nhost = "10.0.0.5"\nusername = "gate.s.g"\npassword_file = "g.secret"\n'
    )
    result = subprocess.run(
        [sys.executable, "-m", "gatepost", "edge", "check-config", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert f"{config}:7: mqtt.password_file:" in result.stderr and "in clear" in result.stderr
    assert "Traceback" not in result.stderr
    config.write_text(config.read_text() + 'tls_ca = "ca.crt"\n')
    ok = subprocess.run(
        [sys.executable, "-m", "gatepost", "edge", "check-config", str(config)],
        capture_output=True,
        timeout=60,
    )
    assert ok.returncode == 0, ok.stderr
    loopback = tmp_path / "local.toml"
    loopback.write_text('site = "s"\ngate = "g"\n\n[mqtt]\nhost = "127.0.0.1"\npassword_file = "g.secret"\n')
    assert (
        subprocess.run(
            [sys.executable, "-m", "gatepost", "edge", "check-config", str(loopback)], timeout=60
        ).returncode
        == 0
    )
