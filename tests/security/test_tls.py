"""TLS on the broker, tried as an attacker on the compound's network would, against the real mosquitto.

Every attempt is a real connection to the ``broker`` fixture (TLS listener with client
certificates, plain listener on loopback).  Each bad one must be refused while a good
gate, connected throughout, stays connected and served: nothing crashes.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import socket
import ssl
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from broker.launcher import Broker
from broker.pki import SiteCA
from broker.probe import ConnackCode, try_login
from broker.provision import Credentials
from protocol.certs import key_pem, make_csr, new_key
from protocol.identity import gate_identity
from protocol.mqtt import BrokerEndpoint, connect_async, make_client
from protocol.topics import GateTopics, TopicKind, all_sites_filter
from simulator.mitm import MqttProxy
from tests.conftest import ClientFactory, MqttTestClient
from tests.waiting import wait_until

NOT_AUTHORIZED = 0x87


def tls_login(broker: Broker, endpoint: BrokerEndpoint, *, port: int | None = None) -> ConnackCode:
    """One MQTT login through a TLS handshake; OSError (ssl.SSLError among them) if refused before CONNACK."""
    context = endpoint.tls_context()
    assert context is not None
    return try_login(broker.host, port or broker.tls_port, endpoint.username, timeout=3.0, tls=context)


def refused(attempt: object) -> str:
    """Run ``attempt``; return why it was refused, or fail the test if the broker let it in."""
    try:
        code = attempt()  # type: ignore[operator]
    except OSError as exc:
        return f"{type(exc).__name__}: {exc}"
    assert code is not ConnackCode.ACCEPTED, "the broker accepted it"
    return f"CONNACK {code.name}"


@pytest.fixture
def site(broker: Broker, unique_name: str) -> dict[str, Credentials]:
    return {"g1": broker.add_gate(unique_name, "g1"), "g2": broker.add_gate(unique_name, "g2")}


@pytest.fixture
def good(
    broker: Broker, site: dict[str, Credentials], mqtt_client_factory: ClientFactory, unique_name: str
) -> Iterator[MqttTestClient]:
    """A gate on TLS that must stay connected and served through every bad attempt."""
    client = mqtt_client_factory(site["g2"])
    pid = broker.pid
    yield client
    assert broker.running and broker.pid == pid, "the broker kept running"
    assert client.disconnects == 0, "the good gate was never disconnected"
    assert not client.publish(GateTopics(unique_name, "g2").event, b"still here").is_failure


def other_endpoint(broker: Broker, creds: Credentials, tmp_path: Path) -> BrokerEndpoint:
    """The same name, certified by another site's CA (a second ``broker init``)."""
    other = SiteCA(tmp_path / "other-site")
    other.init(["localhost"], ["127.0.0.1"])
    issued = other.issue_with_key([creds.username])[0]
    return replace(
        broker.endpoint(creds), tls_cert=str(issued.cert_path), tls_key=str(other.key_path(creds.username))
    )


def csr_certificate(
    broker: Broker, username: str, tmp_path: Path, *, valid_from: dt.datetime, days: int
) -> BrokerEndpoint:
    key = new_key()
    key_file = tmp_path / f"{username}.key"
    key_file.write_bytes(key_pem(key))
    issued = broker.ca.sign_csr(make_csr(key, username), {username}, days=days, valid_from=valid_from)
    return BrokerEndpoint(
        broker.host,
        broker.tls_port,
        username,
        None,
        str(broker.ca.ca_cert),
        str(issued.cert_path),
        str(key_file),
    )


# -- good paths -------------------------------------------------------------------------


def test_a_certificate_is_one_name_whatever_user_name_the_client_sends(
    broker: Broker, site: dict[str, Credentials], unique_name: str, good: MqttTestClient
):
    """use_identity_as_username: g1's certificate claiming to be g2 is still g1, fenced to g1's
    topics; use_username_as_clientid: its client id is g1's too, so connected g2 (``good``)
    keeps its session instead of being taken over."""
    liar = MqttTestClient(replace(broker.endpoint(site["g1"]), username=site["g2"].username))
    try:
        assert not liar.connect().is_failure
        assert liar.publish(GateTopics(unique_name, "g2").event).value == NOT_AUTHORIZED
        assert not liar.publish(GateTopics(unique_name, "g1").event).is_failure
    finally:
        liar.close()


# -- refusals ---------------------------------------------------------------------------


def test_no_client_certificate_is_refused(broker: Broker, good: MqttTestClient):
    why = refused(lambda: tls_login(broker, broker.tls_anonymous()))
    assert "certificate" in why.lower() or "reset" in why.lower() or "EOF" in why, why


def test_plain_listener_refuses_anonymous_and_wrong_password(
    broker: Broker, site: dict[str, Credentials], good: MqttTestClient
):
    assert try_login(broker.host, broker.port) is ConnackCode.NOT_AUTHORIZED
    wrong = site["g1"].password[::-1]
    assert try_login(broker.host, broker.port, site["g1"].username, wrong) is ConnackCode.NOT_AUTHORIZED
    assert (
        try_login(broker.host, broker.port, site["g1"].username, site["g1"].password) is ConnackCode.ACCEPTED
    )


def test_plain_text_to_the_tls_port_is_refused(
    broker: Broker, site: dict[str, Credentials], good: MqttTestClient
):
    creds = site["g1"]
    refused(lambda: try_login(broker.host, broker.tls_port, creds.username, creds.password, timeout=3.0))


def test_a_client_trusting_another_ca_refuses_the_broker(
    broker: Broker, site: dict[str, Credentials], good: MqttTestClient, tmp_path: Path
):
    """Wrong CA on the client's side: it will not talk to a broker its CA did not certify."""
    other = SiteCA(tmp_path / "other-site")
    other.init(["localhost"], ["127.0.0.1"])
    endpoint = replace(broker.endpoint(site["g1"]), tls_ca=str(other.ca_cert))
    with pytest.raises(ssl.SSLCertVerificationError):
        tls_login(broker, endpoint)


def test_another_sites_certificate_is_refused(
    broker: Broker, site: dict[str, Credentials], good: MqttTestClient, tmp_path: Path
):
    """Same name, same everything, but certified by a second site's CA."""
    why = refused(lambda: tls_login(broker, other_endpoint(broker, site["g1"], tmp_path)))
    # TLS 1.3 finishes the client's handshake before the broker checks its certificate, so the
    # refusal reaches the client as the broker's alert or, when the close wins the race, as EOF.
    assert any(word in why.lower() for word in ("unknown ca", "alert", "reset", "eof")), why


def test_an_expired_certificate_is_refused(
    broker: Broker, site: dict[str, Credentials], good: MqttTestClient, tmp_path: Path
):
    endpoint = csr_certificate(
        broker,
        site["g1"].username,
        tmp_path,
        valid_from=dt.datetime.now(dt.UTC) - dt.timedelta(days=400),
        days=365,
    )
    why = refused(lambda: tls_login(broker, endpoint))
    assert any(word in why.lower() for word in ("expired", "alert", "reset", "eof")), why
    fresh = csr_certificate(broker, site["g1"].username, tmp_path, valid_from=dt.datetime.now(dt.UTC), days=1)
    assert tls_login(broker, fresh) is ConnackCode.ACCEPTED, "the same key, certified now, is let in"


def test_garbage_bytes_to_the_tls_port(broker: Broker, site: dict[str, Credentials], good: MqttTestClient):
    for junk in (os.urandom(4096), b"\x16\x03\x01\xff\xff" + os.urandom(300), b"GET / HTTP/1.0\r\n\r\n"):
        with socket.create_connection((broker.host, broker.tls_port), timeout=3.0) as sock:
            sock.sendall(junk)
            sock.settimeout(3.0)
            try:
                while sock.recv(4096):
                    pass
            except OSError:
                pass
    assert tls_login(broker, broker.endpoint(site["g1"])) is ConnackCode.ACCEPTED


def test_a_refused_client_says_why_and_retries_with_back_off(
    broker: Broker, site: dict[str, Credentials], good: MqttTestClient, tmp_path: Path, caplog
):
    """The gate's own paho client, with another site's certificate: a warning naming the TLS
    failure, and paho's reconnect trying again (1 s, then doubling), without crashing."""
    endpoint = other_endpoint(broker, site["g1"], tmp_path)
    client = make_client(endpoint)
    caplog.set_level(logging.WARNING, logger="gatepost.mqtt")
    started = time.monotonic()
    connect_async(client, endpoint)
    client.loop_start()
    try:
        assert wait_until(
            lambda: (
                sum("cannot connect" in r.getMessage() or "SSL" in r.getMessage() for r in caplog.records)
                >= 2
            ),
            timeout=10,
        ), [r.getMessage() for r in caplog.records]
    finally:
        client.loop_stop()
    assert time.monotonic() - started >= 0.9, "the second attempt waited for the back-off"
    text = " ".join(r.getMessage() for r in caplog.records)
    assert "SSL" in text or "certificate" in text.lower() or "alert" in text.lower(), text


def test_a_revoked_certificate_is_refused_after_the_restart_and_queued_messages_survive(
    broker: Broker, unique_name: str, mqtt_client_factory: ClientFactory
):
    """Retiring a gate revokes its certificate into the CRL; the launcher restarts mosquitto
    (it reads the CRL only at start) with SIGTERM, so the console's queued message is kept."""
    console = broker.add_console(f"c{unique_name}")
    gone = broker.add_gate(unique_name, "gone")
    stays = broker.add_gate(unique_name, "stays")
    ingest = mqtt_client_factory(console, clean_start=False, session_expiry_s=600)
    assert not ingest.subscribe(all_sites_filter(TopicKind.EVENT)).is_failure
    ingest.close()  # the console is away: what the gate sends now is queued for it
    gate = mqtt_client_factory(stays)
    assert not gate.publish(GateTopics(unique_name, "stays").event, b"queued before the restart").is_failure
    gate.close()
    old_endpoint = broker.endpoint(gone)
    assert tls_login(broker, old_endpoint) is ConnackCode.ACCEPTED

    broker.remove(gone.username)

    refused(lambda: tls_login(broker, old_endpoint))
    assert tls_login(broker, broker.endpoint(stays)) is ConnackCode.ACCEPTED
    back = mqtt_client_factory(console, clean_start=False, session_expiry_s=600)
    message = back.get(timeout=10)
    assert message is not None and message.payload == b"queued before the restart"


def test_nothing_crosses_the_network_in_clear(broker: Broker, site: dict[str, Credentials], unique_name: str):
    """An eavesdropper between gate and broker sees neither the password nor a pass payload."""
    secret_pass = f"PASS-{unique_name}-104729000001".encode()
    with MqttProxy((broker.host, broker.tls_port), raw=True) as proxy:
        endpoint = replace(broker.endpoint(site["g1"]), port=proxy.port)
        client = MqttTestClient(endpoint)
        try:
            assert not client.connect().is_failure
            assert not client.publish(GateTopics(unique_name, "g1").event, secret_pass).is_failure
        finally:
            client.close()
        assert proxy.client_bytes[:1] == b"\x16", "a TLS handshake, not MQTT"
        seen = bytes(proxy.client_bytes) + bytes(proxy.server_bytes)
    assert len(seen) > 500
    for needle in (secret_pass, site["g1"].password.encode(), GateTopics(unique_name, "g1").event.encode()):
        assert needle not in seen
    assert gate_identity(unique_name, "g1").encode() not in seen, "TLS 1.3 encrypts even the certificate"


def test_without_a_plain_listener_the_administrator_uses_its_certificate(tmp_path: Path, unique_name: str):
    """``--no-plain``: nothing listens in clear, and provisioning still reaches the running broker."""
    with Broker(tmp_path / "tls-only", plain=False) as broker:
        assert "listener" in broker.config_path.read_text()
        listeners = [
            line for line in broker.config_path.read_text().splitlines() if line.startswith("listener ")
        ]
        assert listeners == [f"listener {broker.tls_port} 127.0.0.1"]
        gate = broker.add_gate(unique_name, "north")  # applied live through $CONTROL, over TLS
        client = MqttTestClient(broker.endpoint(gate))
        try:
            assert not client.connect().is_failure
            assert not client.publish(GateTopics(unique_name, "north").event).is_failure
            assert client.publish(GateTopics(unique_name, "south").event).value == NOT_AUTHORIZED
        finally:
            client.close()
        with pytest.raises(OSError):
            try_login(broker.host, broker.port, gate.username, gate.password, timeout=1.0)
