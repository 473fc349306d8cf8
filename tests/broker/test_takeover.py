"""A stolen password takes over no one's session and joins no share group, against a real mosquitto.

The attack (issue 12): connect with one gate's user name and password but another
client's id.  With a password file mosquitto accepted it, closed the real client and
handed over its persistent session.  Now each user name is a dynamic-security client
bound to one client id, so every such login is refused with CONNACK "not authorised"
before mosquitto looks for a session to take over.

The attacker here is a raw MQTT 5 CONNECT on a socket, not gatepost's ``make_client``
(which offers no way to choose the id): it asks for a persistent session
(``clean_start`` 0, an expiry), as someone after the queued messages would.
"""

from __future__ import annotations

import re
import socket
import struct

import pytest

from broker.launcher import Broker
from broker.provision import Credentials
from protocol.identity import account_connections
from protocol.topics import GateTopics, TopicKind, site_filter
from tests.waiting import wait_until

NOT_AUTHORIZED = 0x87
SUCCESS = 0x00
GATES = ("north", "east", "west")
SESSION_S = 3600


def _string(value: str) -> bytes:
    raw = value.encode()
    return struct.pack("!H", len(raw)) + raw


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n % 128, n // 128
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def attempt(broker: Broker, username: str, password: str, client_id: str) -> tuple[int, int]:
    """One MQTT 5 login asking for the persistent session of ``client_id``; (CONNACK reason, our port)."""
    properties = b"\x11" + struct.pack("!I", SESSION_S)  # session expiry interval
    flags = 0x80 | 0x40  # user name, password; clean start 0: resume the session if there is one
    body = (
        _string("MQTT")
        + bytes([5, flags])
        + struct.pack("!H", 30)
        + _varint(len(properties))
        + properties
        + _string(client_id)
        + _string(username)
        + _string(password)
    )
    with socket.create_connection((broker.host, broker.port), timeout=5) as sock:
        port = sock.getsockname()[1]
        sock.sendall(b"\x10" + _varint(len(body)) + body)
        reply = b""
        while len(reply) < 4:
            chunk = sock.recv(64)
            if not chunk:
                break
            reply += chunk
        assert reply[:1] == b"\x20", f"no CONNACK for {username} as {client_id}: {reply!r}"
        if reply[3] == SUCCESS:
            sock.sendall(b"\xe0\x00")
        return reply[3], port


@pytest.fixture
def site(broker: Broker, unique_name: str) -> dict[str, Credentials]:
    users = {gate: broker.add_gate(unique_name, gate) for gate in GATES}
    users["console"] = broker.add_console("console")
    return users


def test_no_credential_takes_over_another_clients_session(broker, site, unique_name, mqtt_client_factory):
    # Every real client connected with a persistent session: the gates listen for their
    # commands, the console (its ingest connection, console.console) for every event.
    real = {
        name: mqtt_client_factory(creds, clean_start=False, session_expiry_s=SESSION_S)
        for name, creds in site.items()
    }
    for gate in GATES:
        assert not real[gate].subscribe(GateTopics(unique_name, gate).command).is_failure
    assert not real["console"].subscribe(site_filter(unique_name, TopicKind.EVENT)).is_failure
    log_before = broker.log_path.stat().st_size

    # Every credential against every other client id: the other gates, and each of the
    # console's connections (for the console's own password, those of its other connections).
    ids = [creds.username for name, creds in site.items() if name != "console"]
    ids += account_connections(site["console"].username)
    tried: list[tuple[str, str, int]] = []
    for creds in site.values():
        for client_id in ids:
            if client_id == creds.username:
                continue
            reason, port = attempt(broker, creds.username, creds.password, client_id)
            assert reason == NOT_AUTHORIZED, f"{creds.username} connected as {client_id}: reason {reason:#x}"
            tried.append((creds.username, client_id, port))
    assert len(tried) == 3 * (2 + 24) + (3 + 23)

    # No real client was ever disconnected.
    assert all(client.disconnects == 0 for client in real.values()), {
        name: client.disconnects for name, client in real.items()
    }

    # mosquitto's own log names each refused attempt: 2.0.11 frees the client id of a
    # refused login before it logs the disconnect, so the line reads "<unknown>"; what
    # identifies the attempt is the connection line before it, with the attacker's
    # address and port (src/handle_connect.c, src/loop.c do_disconnect).
    def refusals() -> dict[int, str]:
        lines = broker.log_path.read_bytes()[log_before:].decode(errors="replace").splitlines()
        found: dict[int, str] = {}
        for index, line in enumerate(lines):
            match = re.search(rf"New connection from 127\.0\.0\.1:(\d+) on port {broker.port}\.$", line)
            if match:
                after = [later for later in lines[index + 1 :] if "Client " in later]
                found[int(match.group(1))] = after[0] if after else ""
        return found

    def all_logged() -> bool:
        found = refusals()
        return all(
            found.get(port, "").endswith("Client <unknown> disconnected, not authorised.")
            for *_, port in tried
        )

    assert wait_until(all_logged), [(u, c, p, refusals().get(p)) for u, c, p in tried][:5]
    log = broker.log_path.read_text(errors="replace")
    assert "already connected, closing old connection" not in log, "a session was taken over"

    # The real clients' sessions still deliver, live and while they are away.
    for gate in GATES:
        assert not real[gate].publish(GateTopics(unique_name, gate).event, gate.encode()).is_failure
    received = real["console"].collect(len(GATES))
    assert sorted(m.payload for m in received) == sorted(g.encode() for g in GATES)
    for client in real.values():
        client.close()
    while_away = mqtt_client_factory(site["console"], "commands")
    for gate in GATES:
        assert not while_away.publish(
            GateTopics(unique_name, gate).command, f"open {gate}".encode()
        ).is_failure
    for gate in GATES:
        back = mqtt_client_factory(site[gate], clean_start=False, session_expiry_s=SESSION_S)
        assert back.session_present, f"{gate}'s session is gone"
        message = back.get()
        assert message is not None and message.payload == f"open {gate}".encode()


SHARE_GUESSES = (
    "$share/{group}/gatepost/v1/+/+/event",
    "$share/{group}/gatepost/v1/{site}/+/event",
    "$share/{group}/gatepost/v1/{site}/east/event",
    "$share/console-console/gatepost/v1/+/+/event",
    "$share/g/#",
    "$share/+/#",
    "$share/+/gatepost/v1/+/+/event",
    "#",
    "gatepost/v1/+/+/event",
    "gatepost/v1/{site}/east/#",
)


def test_no_gate_can_join_a_share_group_or_read_another_gate(broker, site, unique_name, mqtt_client_factory):
    """Issue 13 item 6: only the console's role may subscribe to $share/…; a gate gets nothing."""
    group = "ingest"
    console = mqtt_client_factory(site["console"])
    share = f"$share/{group}/{site_filter(unique_name, TopicKind.EVENT)}"
    assert not console.subscribe(share).is_failure, "the console's share subscription works"

    thief = mqtt_client_factory(site["north"])
    for guess in SHARE_GUESSES:
        reason = thief.subscribe(guess.format(group=group, site=unique_name))
        assert reason.value == NOT_AUTHORIZED, f"{guess}: {reason}"

    east = mqtt_client_factory(site["east"])
    for n in range(10):
        assert not east.publish(GateTopics(unique_name, "east").event, str(n).encode()).is_failure
    assert sorted(int(m.payload) for m in console.collect(10)) == list(range(10)), "all ten to the console"
    assert thief.get(0.3) is None, "a gate received another gate's event"
