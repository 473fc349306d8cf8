"""A console enrols once (one key, one request) and gets a certificate per connection it runs."""

from __future__ import annotations

from pathlib import Path

from broker.launcher import Broker
from broker.probe import ConnackCode, try_login
from console.config import load_config
from gatepost.cli import main


def test_console_enrols_one_key_for_each_connection(tmp_path: Path, broker: Broker, unique_name: str):
    name = f"c{unique_name}"
    broker.add_console(name)
    config = tmp_path / "console.toml"
    config.write_text(f'name = "{name}"\n\n[mqtt]\nhost = "{broker.host}"\nport = {broker.tls_port}\n')
    account = f"console.{name}"
    assert main(["console", "enroll", "--config", str(config)]) == 0
    csr, office = tmp_path / f"{account}.csr", tmp_path / "office"
    sign = ["broker", "sign", "--state", str(broker.state_dir), "--csr", str(csr), "--out", str(office)]
    assert main([*sign, "--workers", "2"]) == 0
    certs = sorted(office.glob("console.*.crt"))
    names = {path.name.removesuffix(".crt") for path in certs}
    assert {account, f"{account}.w1", f"{account}.commands", f"{account}.watch"} <= names
    assert f"{account}.w2" not in names, "only the workers it runs"
    assert main(["console", "enroll", "--config", str(config), "--install", *map(str, certs)]) == 0

    config.write_text(
        config.read_text()
        + f'tls_ca = "{broker.ca.ca_cert}"\ntls_cert = "{account}.crt"\ntls_key = "{account}.key"\n'
    )
    endpoint = load_config(config).mqtt.endpoint()
    for connection in (None, "w1", "commands"):
        one = endpoint.for_connection(connection)
        assert (
            try_login(broker.host, broker.tls_port, one.username, tls=one.tls_context())
            is ConnackCode.ACCEPTED
        )
