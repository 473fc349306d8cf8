"""``[mqtt] failover``: the other brokers of the site, checked where the operator wrote them."""

from __future__ import annotations

import pytest

from edge.config import load_config
from protocol.configfile import ConfigError

pytestmark = pytest.mark.timeout(30)

HEAD = 'site = "s1"\ngate = "g1"\n\n[mqtt]\nhost = "10.0.0.1"\nport = 8883\ntls_ca = "ca.crt"\n'


def test_failover_brokers_share_the_first_ones_identity(tmp_path):
    path = tmp_path / "gate.toml"
    path.write_text(HEAD + 'username = "gate.s1.g1"\nfailover = ["10.0.0.2:8883", "[fd00::3]:8884"]\n')
    first, second, third = load_config(path).mqtt.endpoints()
    assert (first.host, first.port) == ("10.0.0.1", 8883)
    assert (second.host, second.port, third.host, third.port) == ("10.0.0.2", 8883, "fd00::3", 8884)
    assert {e.username for e in (first, second, third)} == {"gate.s1.g1"}
    assert {e.tls_ca for e in (first, second, third)} == {str(tmp_path / "ca.crt")}


@pytest.mark.parametrize("entry", ["10.0.0.2", "10.0.0.2:0", "10.0.0.2:http", ":8883"])
def test_a_bad_failover_entry_names_file_line_and_key(tmp_path, entry):
    path = tmp_path / "gate.toml"
    path.write_text(HEAD + f'failover = ["{entry}"]\n')
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert f"{path}:8: mqtt.failover:" in str(caught.value)


def test_a_password_is_not_sent_in_clear_to_a_failover_broker(tmp_path):
    path = tmp_path / "gate.toml"
    path.write_text('[mqtt]\nhost = "127.0.0.1"\npassword_file = "pw"\nfailover = ["10.0.0.2:1883"]\n')
    with pytest.raises(ConfigError, match=r"in clear to 10\.0\.0\.2"):
        load_config(path)
