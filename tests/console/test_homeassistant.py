"""Home Assistant discovery against a real mosquitto: configs, states, ACL, lock commands, retirement.

The Home Assistant side is a plain paho client logged in with the Home Assistant account
the broker provisions (``homeassistant.<site>.<name>``), so what it can read and write is
exactly what the production ACL grants.

Which keys each component's discovery config must carry, from Home Assistant's own
schemas (home-assistant/core, homeassistant/components/mqtt/):

* every platform reading a state (``binary_sensor``, ``sensor``, ``event``) extends
  ``MQTT_RO_SCHEMA`` (config.py), where ``state_topic`` is ``vol.Required``;
* ``lock`` extends ``MQTT_RW_SCHEMA`` (config.py, lock.py): ``command_topic`` is required;
* ``event`` also requires ``event_types`` (event.py ``vol.Required(CONF_EVENT_TYPES)``), and
  ignores retained payloads (event.py ``_event_received``), so reader events are not retained;
* a ``device`` needs ``identifiers`` or ``connections`` (schemas.py
  ``validate_device_has_at_least_one_identifier``), and the device registry needs the
  entity's ``unique_id`` (https://www.home-assistant.io/integrations/mqtt/#discovery-messages);
* the discovery topic is ``<prefix>/<component>/[<node_id>/]<object_id>/config``, ids of
  ``[a-zA-Z0-9_-]`` (https://www.home-assistant.io/integrations/mqtt/#discovery-topic).
"""

from __future__ import annotations

import json
import re
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from gpiozero.pins.mock import MockFactory

from broker.launcher import Broker
from broker.provision import Credentials
from console.audit import AuditLog
from console.commands import CommandClient, OfficeCommandSigner
from console.gate_retirement import GateRetirements
from console.homeassistant import HomeAssistantBridge
from console.store import EventStore
from console.users import UserStore
from edge.agent import GateAgent
from edge.config import EdgeConfig
from protocol import Event, GateState, GateStatus, decode_event, encode
from protocol import homeassistant as ha
from protocol.topics import GateTopics, console_status_topic
from tests.conftest import MqttTestClient
from tests.offices import create_office, gate_passes_section
from tests.waiting import wait_until

pytestmark = pytest.mark.timeout(90)

SITE = "s1"
PREFIX = "homeassistant"
NOT_AUTHORIZED = 0x87
REQUIRED = {
    "lock": {"command_topic"},
    "binary_sensor": {"state_topic"},
    "sensor": {"state_topic"},
    "event": {"state_topic", "event_types"},
}
ENTITY = {"unique_id", "device", "availability"}
DEVICE = {"identifiers", "name", "manufacturer", "model", "sw_version", "via_device"}
PINS = {"relay": "GPIO17", "contact": "GPIO27", "exit_button": "GPIO22"}
DISCOVERY = re.compile(
    r"^homeassistant/(lock|binary_sensor|sensor|event)/[a-zA-Z0-9_-]+/[a-zA-Z0-9_-]+/config$"
)


class Site:
    """A console store, its users and audit, and the bridge over a real broker."""

    def __init__(self, tmp_path: Path, broker: Broker, console: Credentials) -> None:
        self.store = EventStore(tmp_path / "events.db")
        self.users = UserStore(self.store.db)
        self.audit = AuditLog(self.store.db)
        self.retirements = GateRetirements(self.store.db)
        self.endpoint = broker.endpoint(console)
        self.commands: CommandClient | None = None
        self.bridge: HomeAssistantBridge | None = None

    def start(self, *, office: Path | None = None) -> HomeAssistantBridge:
        if office is not None:
            self.commands = CommandClient(self.endpoint, signer=OfficeCommandSigner(office)).start()
            assert self.commands.wait_connected(10)
        self.bridge = HomeAssistantBridge(
            self.endpoint,
            self.store,
            name="console",
            site=SITE,
            prefix=PREFIX,
            user="homeassistant",
            unlock_seconds=2.0,
            commands=self.commands,
            users=self.users,
            audit=self.audit,
            retirements=self.retirements,
            console_status=console_status_topic(SITE),
            version="test",
            poll_s=0.05,
            retired_check_s=0.1,
        ).start()
        assert self.bridge.wait_connected(10)
        return self.bridge

    def close(self) -> None:
        if self.bridge is not None:
            self.bridge.stop()
        if self.commands is not None:
            self.commands.stop()
        self.store.close()


@pytest.fixture
def site(tmp_path: Path, broker: Broker) -> Iterator[Site]:
    instance = Site(tmp_path, broker, broker.add_console("console"))
    try:
        yield instance
    finally:
        instance.close()


@pytest.fixture
def home(broker: Broker) -> Iterator[MqttTestClient]:
    """Home Assistant's connection: its own account, its own client id, password on loopback."""
    creds = broker.add_homeassistant(SITE)
    client = MqttTestClient(broker.plain_endpoint(creds))
    assert not client.connect().is_failure
    try:
        yield client
    finally:
        client.close()


def _announce(broker: Broker, gate: str, state: GateState = GateState.ONLINE) -> None:
    """The gate's retained status, published with the gate's own credentials."""
    client = MqttTestClient(broker.plain_endpoint(broker.add_gate(SITE, gate)))
    client.connect()
    status = GateStatus(
        state=state, site=SITE, gate=gate, boot="a" * 32, version="9.9", backlog=3, clock_trusted=True
    )
    assert not client.publish(GateTopics(SITE, gate).status, encode(status), retain=True).is_failure
    client.close()


def _retained(home: MqttTestClient, topic_filter: str, *, quiet: float = 1.0) -> dict[str, bytes]:
    """Every retained message under ``topic_filter`` now: a fresh subscription gets them all."""
    probe = MqttTestClient(home.endpoint)  # one client id: this replaces the fixture's session briefly
    home.close()
    probe.connect()
    try:
        assert not probe.subscribe(topic_filter).is_failure
        return {m.topic: bytes(m.payload) for m in probe.collect(1000, timeout=10, quiet=quiet) if m.retain}
    finally:
        probe.close()
        home.connect()


def _event(gate: str, seq: int, type_: str, **data: object) -> Event:
    return Event(
        id=uuid.uuid4().hex,
        site=SITE,
        gate=gate,
        boot="b" * 32,
        seq=seq,
        time=datetime.now(UTC),
        clock_trusted=True,
        type=type_,
        data=data,
    )


def _configs(home: MqttTestClient, gate: str) -> dict[str, dict]:
    found = _retained(home, f"{PREFIX}/#")
    return {
        topic: json.loads(payload)
        for topic, payload in found.items()
        if payload and json.loads(payload)["device"]["identifiers"] == [f"gatepost_{SITE}_{gate}"]
    }


def test_configs_are_retained_on_the_right_topics_with_the_keys_home_assistant_requires(
    site: Site, broker: Broker, home: MqttTestClient, unique_name: str
):
    site.start()
    _announce(broker, unique_name)
    site.store.commit(
        [_event(unique_name, 1, "access.scan", reader="front", granted=False, reason="unknown")]
    )
    assert wait_until(lambda: len(_configs(home, unique_name)) == 8, timeout=20), _configs(home, unique_name)
    configs = _configs(home, unique_name)
    components = sorted(topic.split("/")[1] for topic in configs)
    assert components == ["binary_sensor"] * 3 + ["event"] + ["lock"] + ["sensor"] * 3
    for topic, config in configs.items():
        assert DISCOVERY.match(topic), topic
        assert topic.split("/")[2] == f"gatepost_{SITE}"
        component = topic.split("/")[1]
        missing = (REQUIRED[component] | ENTITY) - config.keys()
        assert not missing, f"{topic} lacks {missing}"
        assert config["device"].keys() >= DEVICE, config["device"]
        assert config["device"]["sw_version"] == "9.9"
        assert config["availability"][0]["topic"] == ha.availability_topic(SITE, unique_name)
    every = _retained(home, f"{PREFIX}/#")
    console = json.loads(every[f"{PREFIX}/sensor/gatepost_{SITE}/console_status/config"])
    via = next(iter(configs.values()))["device"]["via_device"]
    assert console["device"]["identifiers"] == [via], "the gates' via_device is a device Home Assistant knows"
    assert console["state_topic"] == console_status_topic(SITE)
    (lock,) = [c for t, c in configs.items() if t.startswith(f"{PREFIX}/lock/")]
    assert lock["command_topic"] == ha.command_topic(SITE, unique_name)
    assert not lock["command_topic"].startswith(GateTopics(SITE, unique_name).base), "never the gate's topic"
    (event,) = [c for t, c in configs.items() if t.startswith(f"{PREFIX}/event/")]
    assert event["event_types"] == ["granted", "denied", "rejected"]
    assert len({c["unique_id"] for c in configs.values()}) == 8

    state = _retained(home, ha.state_filter(SITE))[ha.state_topic(SITE, unique_name)]
    document = json.loads(state)
    assert (document["backlog"], document["clock"], document["last_decision"]) == (3, "trusted", "denied")
    assert "credential" not in state.decode() and "code" not in document
    available = _retained(home, ha.availability_filter(SITE))
    assert available[ha.availability_topic(SITE, unique_name)] == b"online"


def test_states_follow_the_stored_events_in_sequence_order_and_readers_fire_events(
    site: Site, broker: Broker, home: MqttTestClient, unique_name: str
):
    site.start()
    gate = unique_name
    assert not home.subscribe(ha.reader_filter(SITE)).is_failure
    assert not home.subscribe(ha.state_topic(SITE, gate)).is_failure
    site.store.commit(
        [
            _event(gate, 1, "door.locked", cause="start"),
            _event(gate, 2, "door.forced"),
            _event(gate, 3, "door.held_open", open_for_s=30),
            _event(gate, 4, "door.tamper"),
            _event(gate, 5, "door.card_rejected", reader="side door", reason="parity"),
        ]
    )
    site.store.commit([_event(gate, 2, "door.closed", open_for_s=1)])  # an old seq, resent late: no effect

    def latest() -> dict:
        messages = home.collect(100, timeout=1, quiet=0.3)
        for message in messages:
            if message.topic == ha.state_topic(SITE, gate):
                latest.doc = json.loads(message.payload)
            else:
                latest.events.append((message.topic, json.loads(message.payload), message.retain))
        return latest.doc

    latest.doc, latest.events = {}, []
    assert wait_until(lambda: latest().get("seq") == 5, timeout=15)
    doc = latest.doc
    assert (doc["lock"], doc["door"], doc["held_open"], doc["tamper"]) == ("LOCKED", "ON", "ON", "ON")
    assert latest.events, "the reader event reached Home Assistant"
    topic, payload, retained = latest.events[0]
    assert topic == ha.reader_topic(SITE, gate, "side door") and not retained
    assert payload["event_type"] == "rejected" and payload["reason"] == "parity"
    site.store.commit([_event(gate, 6, "door.closed", open_for_s=40), _event(gate, 7, "door.tamper_cleared")])
    assert wait_until(lambda: latest().get("seq") == 7, timeout=15)
    assert (latest.doc["door"], latest.doc["held_open"], latest.doc["tamper"]) == ("OFF", "OFF", "OFF")


def test_home_assistant_credentials_reach_no_gate_topic(
    site: Site, broker: Broker, home: MqttTestClient, unique_name: str
):
    topics = GateTopics(SITE, unique_name)
    assert home.publish(topics.command, b'{"v":1}').value == NOT_AUTHORIZED
    assert home.publish(topics.event, b"{}").value == NOT_AUTHORIZED
    assert home.publish(ha.state_topic(SITE, unique_name), b"{}").value == NOT_AUTHORIZED
    assert home.publish(f"{PREFIX}/lock/gatepost_{SITE}/x/config", b"{}").value == NOT_AUTHORIZED
    assert home.publish(ha.command_topic("other", unique_name), b"UNLOCK").value == NOT_AUTHORIZED
    assert home.subscribe(topics.event).is_failure
    assert home.subscribe(topics.command).is_failure
    assert home.subscribe("gatepost/#").is_failure
    assert not home.subscribe(f"{PREFIX}/#").is_failure, "Home Assistant's own discovery subscription"
    assert not home.publish(ha.command_topic(SITE, unique_name), b"LOCK").is_failure
    assert not home.publish(ha.ha_status_topic(PREFIX), b"online").is_failure


@pytest.fixture
def office(tmp_path: Path) -> Path:
    directory = tmp_path / "office"
    create_office(directory, site=SITE).close()
    return directory


@pytest.fixture
def door_gate(tmp_path: Path, broker: Broker, unique_name: str, office: Path) -> Iterator[GateAgent]:
    creds = broker.add_gate(SITE, unique_name)
    secret = tmp_path / "gate.secret"
    secret.write_text(creds.password)
    config = EdgeConfig.model_validate(
        {
            "site": SITE,
            "gate": unique_name,
            "mqtt": {
                "host": broker.host,
                "port": broker.port,
                "username": creds.username,
                "password_file": str(secret),
            },
            "outbox": {"path": str(tmp_path / "outbox.db")},
            "access": {"allow": []},
            "clock": {"trust": "trusted"},
            "gpio": {"pin_factory": "mock"},
            "door": {"pins": PINS, "behaviour": {"unlock_s": 1.0, "max_unlock_s": 5.0}},
            "passes": gate_passes_section(office, tmp_path / "gate-passes"),
        }
    )
    agent = GateAgent(config, pin_factory=MockFactory())
    agent.start()
    try:
        assert agent.link.wait_connected(10)
        yield agent
    finally:
        agent.stop(drain_s=0)


def _door_events(agent: GateAgent) -> list[tuple[str, dict]]:
    return [(e.type, e.data) for e in (decode_event(r.body) for r in agent.outbox.pending(limit=1000))]


@pytest.mark.slow
def test_a_lock_command_from_home_assistant_opens_the_door_through_the_signed_path(
    site: Site, home: MqttTestClient, door_gate: GateAgent, office: Path
):
    gate = door_gate.config.gate
    site.users.add("homeassistant", "a long password here", "operator")
    site.start(office=office)
    command = ha.command_topic(SITE, gate)

    # Without the grant: refused, audited, and the door stays shut.
    assert not home.publish(command, ha.UNLOCK_PAYLOAD).is_failure
    assert wait_until(lambda: any(e.action == "unlock.denied" for e in site.audit.entries()))
    (denied,) = [e for e in site.audit.entries() if e.action == "unlock.denied"]
    assert denied.user == "homeassistant" and denied.detail["reason"] == "no_permission"
    assert not any(t == "door.unlocked" for t, _ in _door_events(door_gate))

    # Anything but LOCK/UNLOCK is refused as such.
    assert not home.publish(command, b"OPEN").is_failure
    assert wait_until(lambda: any(e.detail.get("reason") == "bad_payload" for e in site.audit.entries()))

    site.users.grant("homeassistant", "unlock", f"{SITE}/{gate}")
    assert not home.publish(command, ha.UNLOCK_PAYLOAD).is_failure
    assert wait_until(lambda: any(t == "door.unlocked" for t, _ in _door_events(door_gate)), timeout=20)
    unlocked = next(d for t, d in _door_events(door_gate) if t == "door.unlocked")
    assert unlocked["cause"] == "remote" and unlocked["seconds"] == 2.0
    assert wait_until(lambda: any(e.action == "unlock" for e in site.audit.entries()))
    (entry,) = [e for e in site.audit.entries() if e.action == "unlock"]
    assert entry.user == "homeassistant" and entry.target == f"{SITE}/{gate}"
    assert entry.detail["via"] == "homeassistant" and entry.detail["status"] == "ok"
    assert entry.detail["command_id"] == unlocked["command_id"], "the console's own signed command"

    assert not home.publish(command, ha.LOCK_PAYLOAD).is_failure
    assert wait_until(
        lambda: any(e.action == "lock" and e.detail["status"] == "ok" for e in site.audit.entries())
    )


def test_retiring_a_gate_removes_its_configs(
    site: Site, broker: Broker, home: MqttTestClient, unique_name: str
):
    other = f"{unique_name}x"
    site.start()
    _announce(broker, unique_name)
    _announce(broker, other)
    site.store.commit([_event(unique_name, 1, "access.scan", reader="front", granted=True)])
    assert wait_until(lambda: len(_configs(home, unique_name)) == 8, timeout=20)
    assert wait_until(lambda: len(_configs(home, other)) == 7, timeout=20)
    assert site.retirements.retire(SITE, unique_name, by="test")
    assert wait_until(lambda: not _configs(home, unique_name), timeout=20)
    assert len(_configs(home, other)) == 7, "the other gate keeps its entities"
    assert ha.state_topic(SITE, unique_name) not in _retained(home, ha.state_filter(SITE))
    # Its retained status still sits on the broker; a restarted bridge must not bring it back.
    site.bridge.stop()
    site.start()
    time.sleep(1.0)
    assert not _configs(home, unique_name)


def test_bad_homeassistant_settings_name_file_line_and_key(tmp_path: Path):
    from console.config import load_config
    from protocol.configfile import ConfigError

    path = tmp_path / "console.toml"
    path.write_text('name = "c"\n\n[homeassistant]\nenabled = true\ndiscovery_prefix = "home/#"\n')
    with pytest.raises(ConfigError) as refused:
        load_config(path)
    text = str(refused.value)
    assert str(path) in text and ":5" in text and "discovery_prefix" in text
    path.write_text("[homeassistant]\n")
    settings = load_config(path).homeassistant
    assert (settings.enabled, settings.discovery_prefix) == (False, "homeassistant"), "off by default"


@pytest.mark.slow
def test_console_run_serves_home_assistant_and_the_cli_retires_a_gate(
    tmp_path: Path, broker: Broker, home: MqttTestClient, unique_name: str
):
    """The wiring in ``console run``: the bridge starts from [homeassistant], the run lock is held
    (restore refuses, naming it), ``console gate retire`` reaches the running process, and
    [backup] backs up on schedule inside it."""
    from console.store_backup import backups
    from gatepost.cli import main
    from tests.console.test_cli import gatepost

    creds = broker.add_console("console")
    (tmp_path / "console.secret").write_text(creds.password)
    db = tmp_path / "store" / "events.db"
    config = tmp_path / "console.toml"
    config.write_text(
        f'site = "{SITE}"\n[mqtt]\nhost = "{broker.host}"\nport = {broker.port}\nusername = "{creds.username}"\n'
        f'password_file = "console.secret"\n[store]\npath = "{db}"\n[web]\nenabled = false\n'
        '[metrics]\nlisten = ""\n[homeassistant]\nenabled = true\n'
        f'[backup]\ndirectory = "{tmp_path / "scheduled"}"\ninterval_hours = 0.0005\nkeep = 2\n'
    )
    console = gatepost("console", "run", "--config", str(config))
    try:
        _announce(broker, unique_name)
        assert wait_until(lambda: len(_configs(home, unique_name)) == 7, timeout=30)
        assert main(["console", "backup", "--config", str(config), "--to", str(tmp_path / "b")]) == 0
        (backup,) = backups(tmp_path / "b")
        assert main(["console", "restore", "--config", str(config), str(backup)]) == 1, (
            "refused while running"
        )
        assert main(["console", "gate", "retire", "--config", str(config), f"{SITE}/{unique_name}"]) == 0
        assert wait_until(lambda: not _configs(home, unique_name), timeout=30)
        # [backup]: one at start (none yet), then every 1.8 s, the newest two kept
        scheduled = tmp_path / "scheduled"
        assert wait_until(lambda: bool(backups(scheduled)), timeout=30)
        first = backups(scheduled)[0]
        assert wait_until(
            lambda: first not in backups(scheduled) and len(backups(scheduled)) == 2, timeout=30
        )
    finally:
        console.terminate()
        output = console.communicate(timeout=20)[0]
    assert console.returncode == 0, output
    assert "Traceback" not in output


def test_a_gate_numbering_from_one_again_is_followed_but_a_late_resend_is_not():
    from console.homeassistant import GateView, apply_event
    from console.store import StoredEvent

    def stored(seq: int, type_: str, boot: str, minute: int) -> StoredEvent:
        return StoredEvent(
            seq,
            uuid.uuid4().hex,
            SITE,
            "g",
            boot,
            seq,
            f"2026-12-01T08:{minute:02d}:00.000000Z",
            True,
            type_,
            {},
            "",
        )

    view = GateView(SITE, "g")
    apply_event(view, stored(500, "door.opened", "a" * 32, 10))
    apply_event(view, stored(400, "door.closed", "a" * 32, 5))  # resent late, same boot
    assert view.state["door"] == "ON"
    apply_event(view, stored(3, "door.closed", "b" * 32, 1))  # another boot, but older: a late resend
    assert view.state["door"] == "ON"
    apply_event(view, stored(1, "door.closed", "c" * 32, 20))  # a new outbox: numbers from 1, later time
    assert (view.state["door"], view.seq) == ("OFF", 1)
    apply_event(view, stored(2, "door.opened", "c" * 32, 21))
    assert view.state["door"] == "ON"


def test_the_gates_health_gives_backlog_clock_and_an_event_entity_per_reader(
    site: Site, broker: Broker, home: MqttTestClient, unique_name: str
):
    from protocol import GateHealth

    site.start()
    client = MqttTestClient(broker.plain_endpoint(broker.add_gate(SITE, unique_name)))
    client.connect()
    health = GateHealth(
        site=SITE,
        gate=unique_name,
        boot="a" * 32,
        time=datetime.now(UTC),
        version="9.8",
        state=GateState.ONLINE,
        backlog=42,
        resends=0,
        clock_trusted=False,
        degraded=False,
        readers={"front": "ok", "Back Door": "disconnected"},
    )
    assert not client.publish(GateTopics(SITE, unique_name).health, encode(health), retain=True).is_failure
    client.close()
    assert wait_until(lambda: len(_configs(home, unique_name)) == 9, timeout=20)
    events = {t: c for t, c in _configs(home, unique_name).items() if t.startswith(f"{PREFIX}/event/")}
    assert sorted(c["name"] for c in events.values()) == ["Reader Back Door", "Reader front"]
    assert all(DISCOVERY.match(topic) for topic in events), "a reader's name made topic-safe"
    state = json.loads(_retained(home, ha.state_filter(SITE))[ha.state_topic(SITE, unique_name)])
    assert (state["backlog"], state["clock"]) == (42, "untrusted")
