"""Who may connect and what each may read or write, proven against a real mosquitto.

MQTT 5 matters here: mosquitto acknowledges an ACL-refused QoS 1 publish with PUBACK
reason 0x87 "Not authorized" (an MQTT 3 client would see a plain success), and the
message is dropped.  Each refusal is checked both ways: the reason code, and a
subscriber who would have seen the message sees nothing, while a permitted message on
the same connection does arrive (so silence is not just a slow broker).
"""

from __future__ import annotations

import pytest
from paho.mqtt.reasoncodes import ReasonCode

from broker.launcher import Broker
from broker.provision import Credentials
from protocol.topics import GateTopics, TopicKind, all_sites_filter, console_status_topic

NOT_AUTHORIZED = 0x87
QUIET_S = 0.3


@pytest.fixture
def site(broker: Broker, unique_name: str) -> dict[str, Credentials]:
    """Two gates and a console, provisioned together and taken up with one reload."""
    users = {
        "g1": broker.provisioning.add_gate(unique_name, "g1"),
        "g2": broker.provisioning.add_gate(unique_name, "g2"),
        "console": broker.provisioning.add_console(),
    }
    broker.reload()
    return users


def test_anonymous_client_is_refused(broker, mqtt_client_factory):
    client = mqtt_client_factory(None, connect=False)
    reason = client.connect()
    assert reason.is_failure
    assert reason.value in (0x86, 0x87), reason  # bad username or password / not authorized


def test_wrong_password_is_refused(broker, site, mqtt_client_factory):
    wrong = Credentials(site["g1"].username, site["g1"].password[::-1])
    client = mqtt_client_factory(wrong, connect=False)
    reason = client.connect()
    assert reason.is_failure
    assert reason.value in (0x86, 0x87), reason


def test_password_of_another_user_is_refused(broker, site, mqtt_client_factory):
    swapped = Credentials(site["g1"].username, site["g2"].password)
    assert mqtt_client_factory(swapped, connect=False).connect().is_failure


def test_own_hash_logs_in(broker, site, mqtt_client_factory):
    """The plugin's file carries hashes made by broker.passwords: a successful login proves the format."""
    for creds in site.values():
        client = mqtt_client_factory(creds, connect=False)
        assert client.connect() == ReasonCode(2, identifier=0)  # CONNACK: success


def test_gate_cannot_publish_as_another_gate(broker, site, unique_name, mqtt_client_factory):
    console = mqtt_client_factory(site["console"])
    assert not console.subscribe(all_sites_filter(TopicKind.EVENT)).is_failure
    g1 = mqtt_client_factory(site["g1"])
    other = GateTopics(unique_name, "g2")
    other_site = GateTopics(f"{unique_name}x", "g1")

    for topic in (other.event, other.status, other.response, other_site.event):
        assert g1.publish(topic, b"forged").value == NOT_AUTHORIZED, topic
    assert console.get(QUIET_S) is None, "a forged event reached the console"

    own = GateTopics(unique_name, "g1")
    assert not g1.publish(own.event, b"genuine").is_failure
    message = console.get()
    assert message is not None and (message.topic, message.payload) == (own.event, b"genuine")
    assert console.get(QUIET_S) is None


def test_gate_cannot_send_commands_or_acks(broker, site, unique_name, mqtt_client_factory):
    g2 = mqtt_client_factory(site["g2"])
    g2_topics = GateTopics(unique_name, "g2")
    assert not g2.subscribe(g2_topics.command).is_failure
    assert not g2.subscribe(g2_topics.ack).is_failure
    g1 = mqtt_client_factory(site["g1"])
    g1_topics = GateTopics(unique_name, "g1")

    for topic in (g2_topics.command, g2_topics.ack, g1_topics.command, g1_topics.ack):
        assert g1.publish(topic, b"open the gate").value == NOT_AUTHORIZED, topic
    assert g1.publish(console_status_topic(unique_name), b"i am the console").value == NOT_AUTHORIZED
    assert g2.get(QUIET_S) is None, "a gate's forged command reached another gate"


def test_gate_cannot_read_another_gates_commands_or_acks(broker, site, unique_name, mqtt_client_factory):
    g1 = mqtt_client_factory(site["g1"])
    g2_topics = GateTopics(unique_name, "g2")
    for topic in (g2_topics.command, g2_topics.ack, g2_topics.event, all_sites_filter(TopicKind.COMMAND)):
        g1.subscribe(topic)  # mosquitto may grant the filter; what matters is that nothing is delivered
    g2 = mqtt_client_factory(site["g2"])
    assert not g2.subscribe(g2_topics.command).is_failure
    console = mqtt_client_factory(site["console"])

    assert not console.publish(g2_topics.command, b"cmd").is_failure
    assert not console.publish(g2_topics.ack, b"ack").is_failure
    assert not g2.publish(g2_topics.event, b"evt").is_failure

    delivered = g2.get()
    assert delivered is not None and delivered.payload == b"cmd", "the rightful gate got its command"
    assert g1.get(QUIET_S) is None, "g1 read g2's traffic"


def test_console_reads_every_gate_and_commands_each(broker, site, unique_name, mqtt_client_factory):
    console = mqtt_client_factory(site["console"])
    for kind in (TopicKind.EVENT, TopicKind.STATUS, TopicKind.RESPONSE):
        assert not console.subscribe(all_sites_filter(kind)).is_failure
    gates = {name: mqtt_client_factory(site[name]) for name in ("g1", "g2")}
    sent = []
    for name, client in gates.items():
        topics = GateTopics(unique_name, name)
        assert not client.subscribe(topics.command).is_failure
        assert not client.subscribe(topics.ack).is_failure
        for topic in (topics.event, topics.status, topics.response):
            assert not client.publish(topic, name.encode()).is_failure
            sent.append((topic, name.encode()))

    received = console.collect(len(sent))
    assert sorted((m.topic, m.payload) for m in received) == sorted(sent)

    for name, client in gates.items():
        topics = GateTopics(unique_name, name)
        assert not console.publish(topics.command, f"cmd-{name}".encode()).is_failure
        assert not console.publish(topics.ack, f"ack-{name}".encode()).is_failure
        got = client.collect(2)
        assert sorted(m.payload for m in got) == sorted([f"cmd-{name}".encode(), f"ack-{name}".encode()])


def test_retained_status_reaches_late_subscribers(broker, site, unique_name, mqtt_client_factory):
    g1 = mqtt_client_factory(site["g1"])
    gate_status = GateTopics(unique_name, "g1").status
    assert not g1.publish(gate_status, b'{"state":"online"}', retain=True).is_failure
    console = mqtt_client_factory(site["console"])
    assert not console.publish(
        console_status_topic(unique_name), b'{"state":"online"}', retain=True
    ).is_failure

    late_console = mqtt_client_factory(site["console"], "watch")  # a second connection of the console
    late_console.subscribe(all_sites_filter(TopicKind.STATUS))
    message = late_console.get()
    assert message is not None and message.retain and message.topic == gate_status

    late_gate = mqtt_client_factory(site["g2"])
    assert not late_gate.subscribe(console_status_topic(unique_name)).is_failure
    message = late_gate.get()
    assert message is not None and message.retain and message.payload == b'{"state":"online"}'
