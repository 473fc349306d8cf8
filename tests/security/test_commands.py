"""Commands to gates, attacked as someone on the compound's network would: issue 13, item 2.

Everything is real: mosquitto from ``broker/``'s configuration, two gate agents with
doors on gpiozero's mock pins, a site office on disk, the console's ingest into its
store and the console's alarm rules over what it stored.  The attacker holds the
console's MQTT password (read off the LAN or the console host) or a gate's (a stolen
gate), but not the command key.  Each row of the matrix is one real attempt; a control
(a genuine command opening the door) shows the gate could have opened, so each refusal
is the check's doing.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from nacl.signing import SigningKey

from broker.launcher import Broker
from console.commands import CommandClient, OfficeCommandSigner
from console.documents import publish_documents
from console.passes.office import Office
from protocol import encode
from protocol.commands import CommandBody, sign_command
from protocol.messages import Command
from protocol.passes import TrustBundle, seal_bundle
from protocol.passes.keys import load_signing_key, public_hex
from protocol.passes.trust import CommandKeyEntry
from protocol.topics import SiteDocument, site_document_topic
from simulator.mitm import MqttProxy, Packet
from tests.conftest import ClientFactory, MqttTestClient
from tests.offices import create_office
from tests.security.compound import Compound, running_compound
from tests.waiting import wait_until

NOW = datetime.now(UTC)


@pytest.fixture
def compound(tmp_path: Path, broker: Broker, unique_name: str) -> Iterator[Compound]:
    office = tmp_path / "office"
    create_office(office, site=unique_name).close()
    with running_compound(tmp_path, broker, unique_name, office) as site:
        yield site


@pytest.fixture
def attacker(compound: Compound, mqtt_client_factory: ClientFactory) -> MqttTestClient:
    """Someone holding the console's MQTT password, but not its command key."""
    return mqtt_client_factory(compound.broker.add_console("console"))


@pytest.fixture
def console(compound: Compound) -> Iterator[CommandClient]:
    """The real console command path: the web console's office folder, its command key."""
    creds = compound.broker.add_console("web")
    client = CommandClient(
        compound.broker.endpoint(creds), name=f"w{compound.site}", signer=OfficeCommandSigner(compound.office)
    ).start()
    assert client.wait_connected(10)
    yield client
    client.stop()


def _unsigned_unlock() -> bytes:
    """What opened a door with a synchronised clock before commands were signed (format 1)."""
    now = datetime.now(UTC)
    command = Command(
        id=uuid.uuid4().hex,
        name="unlock",
        args={"seconds": 1.0},
        issued_at=now,
        expires_at=now + timedelta(seconds=30),
        operator="admin",
    )
    return encode(command)


def _forged(body: CommandBody, kid: int, signature: bytes = b"\x00" * 64) -> bytes:
    return json.dumps({"v": 2, "kid": kid, "body": body.model_dump_json(), "sig": signature.hex()}).encode()


def test_console_credentials_without_the_command_key_open_no_door_and_raise_alarms(
    compound: Compound, attacker: MqttTestClient, console: CommandClient
):
    north = compound.start_gate("north")
    topic = compound.command_topic("north")
    with Office.open(compound.office) as office:
        command_kid = office.bundle.command_keys[-1].kid
        signing_kid = office.bundle.keys[-1].kid
    issuing_key = load_signing_key(compound.office / f"signing-{signing_kid}.key")
    own_key = SigningKey.generate()
    attempts = [
        _unsigned_unlock(),  # format 1, as any console could send it before
        sign_command(compound.body("north"), own_key, command_kid),  # a key of its own under the real kid
        sign_command(compound.body("north"), own_key, 77),  # a kid the site never certified
        sign_command(compound.body("north"), issuing_key, signing_kid),  # the web's pass signing key
        _forged(compound.body("north", operator="admin"), command_kid),  # a genuine-looking envelope
        b'{"v": 3, "kid": 1, "body": "{}", "sig": "00"}',
        b"\xff\x00 garbage",
    ]
    for payload in attempts:
        assert not attacker.publish(topic, payload).is_failure  # the broker lets the password through
    reasons = compound.wait_rejected("north", len(attempts))
    assert reasons == [
        "unsigned",
        "bad_signature",
        "unknown_key",
        "wrong_role",
        "bad_signature",
        "bad_version",
        "malformed",
    ]
    assert compound.unlocked("north") == [] and not north.door.machine.unlocked  # type: ignore[union-attr]
    alarms = compound.alarms()
    assert [(kind, gate) for kind, gate, _ in alarms] == [("command.unverified", "north")] * len(attempts)
    assert [reason for *_, reason in alarms] == reasons

    # Control: the console's own signed command opens the same door, names its operator, and
    # raises no alarm.
    result = console.send(compound.site, "north", "unlock", {"seconds": 1.0}, operator="ana")
    assert result.status == "ok", result
    assert wait_until(lambda: compound.unlocked("north"))
    assert compound.unlocked("north")[0]["command_id"] == result.command_id
    assert len(compound.alarms()) == len(attempts)


def test_a_captured_command_is_refused_again_here_after_a_restart_and_at_another_gate(
    compound: Compound, attacker: MqttTestClient, console: CommandClient
):
    # North reaches the broker through a tap on the LAN: the capture is the bytes on the wire.
    topic = compound.command_topic("north")
    sniffed: list[bytes] = []

    def sniff(packet: Packet, from_client: bool) -> bool:
        if not from_client and packet.topic == topic:
            sniffed.append(packet.payload)
        return False  # forward everything

    tap = MqttProxy((compound.broker.host, compound.broker.port), sniff)
    try:
        compound.start_gate("north", port=tap.port)
        compound.start_gate("south")
        result = console.send(compound.site, "north", "unlock", {"seconds": 1.0}, operator="ana")
        assert result.status == "ok", result
        assert wait_until(lambda: len(compound.unlocked("north")) == 1)
        payload = sniffed[0]

        assert not attacker.publish(topic, payload).is_failure  # the same gate, still running
        assert compound.wait_rejected("north", 1) == ["replayed"]
        compound.stop_gate("north")  # a power cut or an update: the memory is on disk
    finally:
        tap.close()
    compound.start_gate("north")
    assert not attacker.publish(topic, payload).is_failure
    assert compound.wait_rejected("north", 2) == ["replayed", "replayed"]

    assert not attacker.publish(compound.command_topic("south"), payload).is_failure
    assert compound.wait_rejected("south", 1) == ["wrong_target"]

    assert len(compound.unlocked("north")) == 1 and compound.unlocked("south") == []
    assert sorted((gate, reason) for _, gate, reason in compound.alarms()) == [
        ("north", "replayed"),
        ("north", "replayed"),
        ("south", "wrong_target"),
    ]


def test_expired_and_misdirected_commands_are_refused(compound: Compound, attacker: MqttTestClient):
    north = compound.start_gate("north")
    past = datetime.now(UTC) - timedelta(minutes=5)
    other_site = compound.body("north", site="elsewhere")
    with Office.open(compound.office) as office:
        kid, key = office.command_key()
    # ``status``, not ``unlock``: the door's own checks would refuse a stale unlock anyway,
    # and these rows are about the gate's checks on every command.
    status: dict[str, Any] = {"name": "status", "args": {}}
    attempts = [
        compound.signed("north", issued_at=past, expires_at=past + timedelta(seconds=30), **status),
        compound.signed("south"),  # for another gate of this site
        sign_command(other_site, key, kid),  # for another site, with this site's key
        compound.signed(
            "north", issued_at=datetime.now(UTC), expires_at=datetime.now(UTC) + timedelta(hours=1), **status
        ),
    ]
    for payload in attempts:
        attacker.publish(compound.command_topic("north"), payload)
    assert compound.wait_rejected("north", len(attempts)) == [
        "expired",
        "wrong_target",
        "wrong_target",
        "expiry_too_far",
    ]
    assert compound.unlocked("north") == [] and not north.door.machine.unlocked  # type: ignore[union-attr]
    # An expired command may only have waited in a queue; a misdirected one is someone's doing.
    assert [reason for *_, reason in compound.alarms()] == ["wrong_target", "wrong_target"]


def test_a_command_key_the_root_did_not_certify_or_whose_certificate_ended_is_refused(
    compound: Compound, attacker: MqttTestClient
):
    north = compound.start_gate("north")
    # 1. An impostor office: its own root certifies its own command key, and the bundle is
    #    published where the real one is (the console's password may write there).
    impostor_root, impostor_key = SigningKey.generate(), SigningKey.generate()
    impostor_kid = 50
    certificate = CommandKeyEntry(
        kid=impostor_kid,
        public_key=public_hex(impostor_key),
        not_before=NOW - timedelta(days=1),
        not_after=NOW + timedelta(days=1),
    )
    bundle = TrustBundle(
        v=2, site=compound.site, site_id=7, version=10**6, issued_at=NOW, command_keys=(certificate,)
    )
    trust_topic = site_document_topic(compound.site, SiteDocument.TRUST)
    attacker.publish(trust_topic, seal_bundle(bundle, impostor_root))
    assert wait_until(
        lambda: [e.data["reason"] for e in compound.events("north", "passes.document")] == ["bad_signature"]
    )
    attacker.publish(
        compound.command_topic("north"), sign_command(compound.body("north"), impostor_key, impostor_kid)
    )

    # 2. The real command key, retired by the office (leaked): the new bundle reaches the gate.
    with Office.open(compound.office) as office:
        kid, key = office.command_key()
        office.unlock_root("correct horse battery staple")
        office.retire_key(kid)
        public = office.public
    office_account = compound.broker.add_console("office")
    publish_documents(
        compound.broker.endpoint(office_account).for_connection("publish"), compound.site, public
    )
    assert wait_until(
        lambda: north.decider.passes.trust.command_key(kid).entry.not_after <= datetime.now(UTC)
    )  # type: ignore[union-attr]
    attacker.publish(compound.command_topic("north"), sign_command(compound.body("north"), key, kid))
    assert compound.wait_rejected("north", 2) == ["unknown_key", "key_expired"]
    assert compound.unlocked("north") == []
    assert [reason for *_, reason in compound.alarms()] == ["unknown_key", "key_expired"]


def test_a_command_key_whose_certificate_expired_signs_nothing(
    tmp_path: Path, broker: Broker, unique_name: str, mqtt_client_factory: ClientFactory
):
    office = tmp_path / "office"
    old = datetime.now(UTC) - timedelta(days=3)
    create_office(office, site=unique_name, now=old, command_key_lifetime=timedelta(days=1)).close()
    with running_compound(tmp_path, broker, unique_name, office) as site:
        site.start_gate("north")
        with Office.open(office) as opened:
            (entry,) = opened.bundle.command_keys
        assert entry.not_after < datetime.now(UTC)
        key = load_signing_key(office / f"command-{entry.kid}.key")
        # The console's signer will not use it; someone holding the file still might.
        stale = CommandClient(broker.endpoint(), signer=OfficeCommandSigner(office))
        assert stale.send(unique_name, "north", "unlock", timeout_s=0.1).status == "unsigned"
        attacker = mqtt_client_factory(broker.add_console("console"))
        attacker.publish(site.command_topic("north"), sign_command(site.body("north"), key, entry.kid))
        assert site.wait_rejected("north", 1) == ["key_expired"]
        assert site.unlocked("north") == []


def test_a_retained_signed_command_is_refused(compound: Compound, attacker: MqttTestClient):
    north = compound.start_gate("north")
    assert not attacker.publish(
        compound.command_topic("north"), compound.signed("north"), retain=True
    ).is_failure
    assert compound.wait_rejected("north", 1) == ["retained"]
    # It would come again on every reconnect: it does, and is refused again.
    compound.stop_gate("north")
    compound.start_gate("north")
    assert compound.wait_rejected("north", 2) == ["retained", "retained"]
    assert compound.unlocked("north") == [] and not north.door.machine.unlocked  # type: ignore[union-attr]
    assert [reason for *_, reason in compound.alarms()] == ["retained", "retained"]
