"""The rendered configuration: the committed production file, and the numbers in it."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from broker.config import (
    QueueSizing,
    committed_example,
    configured_dynsec_file,
    configured_listener,
    configured_tls_listener,
    find_dynsec_plugin,
    render_config,
)
from protocol.messages import MAX_MESSAGE_BYTES
from protocol.mqtt import SESSION_EXPIRY_S


def settings(text: str) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            key, _, value = line.partition(" ")
            out.setdefault(key, []).append(value)
    return out


def test_committed_production_file_is_what_render_config_writes():
    assert committed_example().read_text(encoding="utf-8") == render_config(), (
        "broker/mosquitto.conf is stale: regenerate it with render_config()"
    )


def test_production_settings():
    conf = settings(render_config())
    assert conf["allow_anonymous"] == ["false"]
    assert conf["per_listener_settings"] == ["false"]
    assert "password_file" not in conf and "acl_file" not in conf, "the plugin decides, alone"
    assert conf["plugin"] == ["/usr/lib/x86_64-linux-gnu/mosquitto_dynamic_security.so"]
    assert conf["plugin_opt_config_file"] == ["/var/lib/gatepost/broker/dynamic-security.json"]
    assert conf["allow_zero_length_clientid"] == ["false"]
    assert conf["persistence"] == ["true"]
    assert conf["persistence_location"] == ["/var/lib/gatepost/broker"]
    assert conf["log_dest"] == ["file /var/lib/gatepost/broker/mosquitto.log"]
    assert conf["listener"] == ["1883 127.0.0.1", "8883 0.0.0.0"], "plain on loopback only; TLS outside"
    assert conf["tls_version"] == ["tlsv1.2"]
    for key in ("require_certificate", "use_identity_as_username", "use_username_as_clientid"):
        assert conf[key] == ["true"], key
    assert conf["crlfile"] == ["/etc/gatepost/broker/pki/crl.pem"]
    assert "listener" not in settings(render_config(port=None)) or settings(render_config(port=None))[
        "listener"
    ] == ["8883 0.0.0.0"], "no plain listener when asked for none"
    assert conf["queue_qos0_messages"] == ["false"]
    assert conf["message_size_limit"] == [str(MAX_MESSAGE_BYTES)] == ["65536"]
    assert conf["user"] == ["mosquitto"]
    assert int(conf["autosave_interval"][0]) <= 60
    assert "information" in conf["log_type"], (
        "the launcher waits for the 'running' line, logged at information"
    )


def test_every_placeholder_is_filled():
    assert not re.search(r"\{[a-z_]+\}", render_config())


def test_client_expiration_outlasts_the_session_expiry_clients_ask_for():
    value = settings(render_config())["persistent_client_expiration"][0]
    units = {"h": 3600, "d": 86400, "w": 7 * 86400}
    assert int(value[:-1]) * units[value[-1]] > SESSION_EXPIRY_S


def test_queue_sizing_arithmetic():
    sizing = QueueSizing(
        gates=16, peak_events_per_s=2.0, outage_s=3600, headroom=2.0, mean_message_bytes=1024
    )
    assert sizing.messages == 16 * 2 * 3600 * 2 == 230_400
    assert sizing.bytes == 230_400 * 1024
    conf = settings(render_config(sizing=sizing))
    assert conf["max_queued_messages"] == ["230400"]
    assert conf["max_queued_bytes"] == [str(230_400 * 1024)]
    assert sizing.messages > 1000, "mosquitto's default queue would drop most of an outage"


def test_render_for_another_place():
    text = render_config(
        config_dir="/srv/b",
        data_dir="/data/b",
        port=18830,
        bind="127.0.0.1",
        user="gp",
        max_queued_messages=7,
        plugin="/opt/m/mosquitto_dynamic_security.so",
    )
    conf = settings(text)
    assert conf["listener"] == ["18830 127.0.0.1", "8883 127.0.0.1"]
    assert conf["cafile"] == ["/srv/b/pki/ca.crt"] and conf["crlfile"] == ["/srv/b/pki/crl.pem"]
    assert conf["plugin"] == ["/opt/m/mosquitto_dynamic_security.so"]
    assert conf["plugin_opt_config_file"] == ["/data/b/dynamic-security.json"]
    assert conf["persistence_location"] == ["/data/b"]
    assert conf["max_queued_messages"] == ["7"]
    assert conf["max_queued_bytes"] == [str(7 * 1024)]


@pytest.mark.parametrize(
    "kwargs", [{"port": 0}, {"port": 70000}, {"max_queued_messages": 0}, {"autosave_interval": 0}]
)
def test_nonsense_is_refused(kwargs):
    with pytest.raises(ValueError):
        render_config(**kwargs)


def test_queue_sizing_refuses_nonsense():
    with pytest.raises(ValueError):
        QueueSizing(gates=0)


def test_the_plugin_is_installed_here():
    """Debian's mosquitto package ships it; every test broker loads it."""
    assert find_dynsec_plugin().name == "mosquitto_dynamic_security.so"


def test_provisioning_reads_where_a_written_config_points(tmp_path):
    path = tmp_path / "mosquitto.conf"
    assert configured_dynsec_file(path) is None and configured_listener(path) is None
    path.write_text(render_config(data_dir=tmp_path / "data", port=18830, bind="0.0.0.0"))
    assert configured_dynsec_file(path) == tmp_path / "data" / "dynamic-security.json"
    assert configured_listener(path) == ("127.0.0.1", 18830), "all addresses: reach it on loopback"
    assert configured_tls_listener(path) == ("127.0.0.1", 8883)
    path.write_text(render_config(port=None, tls_port=18831, bind="10.0.0.5"))
    assert configured_listener(path) == ("10.0.0.5", 18831), "no plain listener: the TLS one"
    assert configured_tls_listener(path) == ("10.0.0.5", 18831)


def test_max_connections_follows_the_number_of_gates():
    """``broker init --gates`` bounds the clients at once; the unit's open-file limit stays above it."""
    small, fleet = QueueSizing(gates=16), QueueSizing(gates=1000)
    assert settings(render_config(sizing=small))["max_connections"] == [str(small.connections)]
    assert settings(render_config(sizing=fleet))["max_connections"] == ["1314"]
    assert fleet.connections >= 1000 + 64, "every gate and the console's connections must fit"


def test_the_broker_unit_allows_more_open_files_than_the_cli_assumes():
    from broker.cli import UNIT_NOFILE

    unit = (Path(__file__).resolve().parents[2] / "systemd" / "gatepost-broker.service").read_text()
    assert f"LimitNOFILE={UNIT_NOFILE}" in unit
