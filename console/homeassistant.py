"""Home Assistant MQTT discovery: each gate a device, its door a lock, commands through the console.

Off unless ``[homeassistant] enabled = true`` (docs/homeassistant.md).  For every gate the
console has heard of it publishes, retained, Home Assistant discovery configs
(https://www.home-assistant.io/integrations/mqtt/#mqtt-discovery):

* ``lock``: the door's lock; its command topic is the console's, never the gate's;
* ``binary_sensor``: door open, tamper, held open;
* ``sensor``: last decision, outbox backlog, clock trust;
* ``event``: one per reader (granted / denied / rejected);

and keeps one retained JSON state per gate that every entity reads with a value template.

Why the console and not the gates: Home Assistant is a second door into the site.  Its
broker account (``homeassistant.<site>.<name>``, broker/acl.py) can read these topics and
write one command topic; a command arriving there is checked here (a known, unretired
gate of this console's site; ``LOCK`` or ``UNLOCK``; the console user named in
``[homeassistant] user`` holds the ``unlock`` grant for that gate) and then sent as the
console's own signed command (console/commands.py), the path an operator's web unlock
takes.  Every command, done or refused, is one audit row.

The states come from what the console stored (an :class:`~console.follow.EventFollower`
on the store, so ingest workers and the integrity guard apply; events the guard does not
take as fact are left out) and from the gates' retained status and health.  A gate's
events are applied in sequence order: an older one resent after an outage does not
overwrite a newer state.  Availability is the gate's retained status, republished as
``online``/``offline``, together with the console's own retained status (its will says
``offline``), so a dead console does not leave Home Assistant showing stale states as live.

Card numbers and pass codes are never published: Home Assistant gets outcomes and reasons.
"""

from __future__ import annotations

import json
import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

import paho.mqtt.client as paho
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from console.follow import EventFollower
from console.store import NOT_FACT, StoredEvent
from protocol import (
    GateHealth,
    GateState,
    GateStatus,
    ProtocolError,
    RejectReason,
    decode_health,
    decode_status,
    parse_topic,
)
from protocol import homeassistant as ha
from protocol.identity import ConsoleConnection
from protocol.mqtt import QOS, BrokerEndpoint, connect_async, make_client
from protocol.topics import TopicKind, all_sites_filter, site_filter

if TYPE_CHECKING:
    from console.audit import AuditLog
    from console.commands import CommandResult
    from console.gate_retirement import GateRetirements
    from console.store import EventStore
    from console.users import UserStore

log = logging.getLogger("gatepost.console.homeassistant")

MANUFACTURER = "gatepost"
MODEL = "gatepost gate"
POLL_S = 0.5
RETIRED_CHECK_S = 2.0
COMMAND_QUEUE = 32
"""Commands waiting for the gate's answer at most; more are refused (and audited), not queued:
an unlock that runs minutes late is worse than none."""
READER_EVENT_TYPES = ("granted", "denied", "rejected")
_AVAILABLE_STATES = {GateState.ONLINE, GateState.DEGRADED}
_FIELDS = ("lock", "door", "tamper", "held_open", "last_decision", "backlog", "clock")


class CommandSender(Protocol):
    def send(
        self,
        site: str,
        gate: str,
        name: str,
        args: dict[str, Any] | None = None,
        *,
        operator: str | None = None,
    ) -> CommandResult: ...


@dataclass(slots=True)
class GateView:
    """What Home Assistant is told about one gate; ``state`` is the retained JSON."""

    site: str
    gate: str
    state: dict[str, Any] = field(default_factory=dict)
    readers: set[str] = field(default_factory=set)
    version: str = ""
    available: bool | None = None
    seq: int = 0
    """The highest sequence number applied: older events, resent late, do not overwrite newer states."""
    boot: str = ""
    time: str = ""
    """Boot and (trusted) time of the event applied last: a gate whose outbox was replaced
    numbers from 1 again, and its new events must not wait until they pass the old numbers."""

    def document(self) -> dict[str, Any]:
        return {
            **{key: self.state.get(key) for key in _FIELDS},
            **{key: value for key, value in self.state.items() if key not in _FIELDS},
            "seq": self.seq,
            "readers": sorted(self.readers),
            "version": self.version,
        }


def _on_off(value: bool) -> str:
    return "ON" if value else "OFF"


def apply_event(view: GateView, event: StoredEvent) -> dict[str, Any] | None:
    """Update ``view`` from one stored event; return a reader event for Home Assistant, if it is one.

    Door states change only for events newer than the newest applied; a reader event is
    passed on whenever it is first seen (Home Assistant shows it at its arrival time).
    """
    data = event.data if isinstance(event.data, dict) else {}
    renumbered = (
        bool(view.boot) and event.boot != view.boot and event.clock_trusted and event.time > view.time
    )
    newer = event.seq > view.seq or renumbered
    reader = data.get("reader")
    reader = str(reader)[:32] if isinstance(reader, str) and reader else None
    if reader is not None:
        view.readers.add(reader)
    if newer:
        view.seq, view.boot = event.seq, event.boot
        if event.clock_trusted:
            view.time = event.time
        state = view.state
        kind = event.type
        if kind == "door.unlocked":
            state["lock"] = "UNLOCKED"
        elif kind == "door.locked":
            state["lock"] = "LOCKED"
        elif kind in ("door.opened", "door.forced"):
            state["door"] = _on_off(True)
        elif kind == "door.closed":
            state["door"], state["held_open"] = _on_off(False), _on_off(False)
        elif kind == "door.held_open":
            state["held_open"] = _on_off(True)
        elif kind == "door.tamper":
            state["tamper"] = _on_off(True)
        elif kind == "door.tamper_cleared":
            state["tamper"] = _on_off(False)
        elif kind == "clock.trusted":
            state["clock"] = "trusted"
        elif kind == "clock.untrusted":
            state["clock"] = "untrusted"
        elif kind == "agent.started":
            if isinstance(data.get("clock_trusted"), bool):
                state["clock"] = "trusted" if data["clock_trusted"] else "untrusted"
            if isinstance(data.get("version"), str):
                view.version = data["version"][:32]
        decision = _decision(kind, data)
        if decision is not None:
            state["last_decision"] = decision
            state["last_decision_reason"] = str(data.get("reason") or "")[:64] or None
            state["last_decision_reader"] = reader
            state["last_decision_time"] = event.time
    outcome = _reader_outcome(event.type, data)
    if reader is None or outcome is None:
        return None
    return {
        "event_type": outcome,
        "reason": str(data.get("reason") or "")[:64],
        "time": event.time,
        "seq": event.seq,
    }


def _decision(kind: str, data: dict[str, Any]) -> str | None:
    if kind == "access.scan" and isinstance(data.get("granted"), bool):
        return "granted" if data["granted"] else "denied"
    if kind == "door.access_granted":
        return "granted"
    if kind == "door.access_denied":
        return "denied"
    return None


def _reader_outcome(kind: str, data: dict[str, Any]) -> str | None:
    decision = _decision(kind, data)
    if decision is not None:
        return decision
    if kind in ("door.card_rejected", "scanner.rejected"):
        return "rejected"
    return None


def apply_status(view: GateView, status: GateStatus) -> None:
    view.available = status.state in _AVAILABLE_STATES
    if status.version:
        view.version = status.version
    if status.backlog is not None:
        view.state["backlog"] = status.backlog
    if status.clock_trusted is not None:
        view.state["clock"] = "trusted" if status.clock_trusted else "untrusted"


def apply_health(view: GateView, health: GateHealth) -> None:
    view.state["backlog"] = health.backlog
    view.state["clock"] = "trusted" if health.clock_trusted else "untrusted"
    if health.version:
        view.version = health.version
    view.readers.update(name[:32] for name in health.readers)


# -- discovery configs -------------------------------------------------------------------


def device_id(site: str, gate: str) -> str:
    return f"gatepost_{site}_{gate}"


def console_device_id(name: str) -> str:
    return f"gatepost_console_{name}"


def discovery_configs(
    view: GateView, *, prefix: str, console: str, console_status: str, version: str
) -> dict[str, dict[str, Any]]:
    """Every discovery config of one gate, by topic.

    Keys are Home Assistant's full names (not the abbreviations): easier to read and
    to check against its documentation.
    """
    site, gate = view.site, view.gate
    state = ha.state_topic(site, gate)
    device = {
        "identifiers": [device_id(site, gate)],
        "name": f"{site} {gate}",
        "manufacturer": MANUFACTURER,
        "model": MODEL,
        "sw_version": view.version or "unknown",
        "via_device": console_device_id(console),
    }
    common = {
        "device": device,
        "origin": {"name": "gatepost", "sw_version": version},
        "availability": [
            {"topic": ha.availability_topic(site, gate)},
            {"topic": console_status, "value_template": "{{ value_json.state }}"},
        ],
        "availability_mode": "all",
        "qos": QOS,
    }

    def entity(key: str, name: str, **extra: Any) -> dict[str, Any]:
        return {"name": name, "unique_id": f"{device_id(site, gate)}_{key}", **common, **extra}

    def value(key: str) -> str:
        return f"{{{{ value_json.{key} }}}}"

    configs: dict[str, dict[str, Any]] = {}

    def put(component: str, key: str, config: dict[str, Any]) -> None:
        configs[ha.discovery_topic(prefix, component, site, f"{gate}_{key}")] = config

    put(
        "lock",
        "lock",
        entity(
            "lock",
            "Door lock",
            command_topic=ha.command_topic(site, gate),
            payload_lock=ha.LOCK_PAYLOAD,
            payload_unlock=ha.UNLOCK_PAYLOAD,
            state_topic=state,
            value_template=value("lock"),
            state_locked="LOCKED",
            state_unlocked="UNLOCKED",
            optimistic=False,
            retain=False,
        ),
    )
    for key, name, device_class in (
        ("door", "Door", "door"),
        ("tamper", "Tamper", "tamper"),
        ("held_open", "Held open", "problem"),
    ):
        put(
            "binary_sensor",
            key,
            entity(key, name, state_topic=state, value_template=value(key), device_class=device_class),
        )
    put(
        "sensor",
        "last_decision",
        entity(
            "last_decision",
            "Last decision",
            state_topic=state,
            value_template=value("last_decision"),
            json_attributes_topic=state,
            json_attributes_template=(
                '{{ {"reason": value_json.last_decision_reason, "reader": value_json.last_decision_reader,'
                ' "time": value_json.last_decision_time} | tojson }}'
            ),
        ),
    )
    put(
        "sensor",
        "backlog",
        entity(
            "backlog",
            "Outbox backlog",
            state_topic=state,
            value_template=value("backlog"),
            unit_of_measurement="events",
            state_class="measurement",
            entity_category="diagnostic",
        ),
    )
    put(
        "sensor",
        "clock",
        entity(
            "clock",
            "Clock trust",
            state_topic=state,
            value_template=value("clock"),
            device_class="enum",
            options=["trusted", "untrusted"],
            entity_category="diagnostic",
        ),
    )
    for reader in sorted(view.readers):
        slug = ha.reader_slug(reader)
        put(
            "event",
            f"reader_{slug}",
            entity(
                f"reader_{slug}",
                f"Reader {reader}",
                state_topic=ha.reader_topic(site, gate, reader),
                event_types=list(READER_EVENT_TYPES),
            ),
        )
    return configs


def console_config(
    site: str, *, prefix: str, console: str, console_status: str, version: str
) -> tuple[str, dict[str, Any]]:
    """The console itself as a device (the gates' ``via_device``), with its status as a sensor, per site."""
    config = {
        "name": "Console status",
        "unique_id": f"{console_device_id(console)}_{site}_status",
        "state_topic": console_status,
        "value_template": "{{ value_json.state }}",
        "device": {
            "identifiers": [console_device_id(console)],
            "name": f"gatepost console {console}",
            "manufacturer": MANUFACTURER,
            "model": "gatepost console",
            "sw_version": version,
        },
        "origin": {"name": "gatepost", "sw_version": version},
        "entity_category": "diagnostic",
    }
    return ha.discovery_topic(prefix, "sensor", site, "console_status"), config


# -- the bridge --------------------------------------------------------------------------


class HomeAssistantBridge:
    """Publishes discovery and states for Home Assistant, and turns its commands into the console's own.

    One MQTT connection (``console.<name>.homeassistant``, clean session); one worker thread
    that owns every :class:`GateView` and does all publishing; one command thread, since a
    command waits (bounded) for the gate's answer.
    """

    def __init__(
        self,
        endpoint: BrokerEndpoint,
        store: EventStore,
        *,
        name: str,
        site: str,
        prefix: str,
        user: str,
        unlock_seconds: float,
        commands: CommandSender | None,
        users: UserStore,
        audit: AuditLog,
        retirements: GateRetirements,
        console_status: str,
        version: str = "",
        poll_s: float = POLL_S,
        retired_check_s: float = RETIRED_CHECK_S,
    ) -> None:
        self.endpoint = endpoint.for_connection(ConsoleConnection.HOMEASSISTANT)
        self.store = store
        self.name = name
        self.site = site
        self.prefix = ha.validate_prefix(prefix)
        self.user = user
        self.unlock_seconds = unlock_seconds
        self.commands = commands
        self.users = users
        self.audit = audit
        self.retirements = retirements
        self.console_status = console_status
        self.version = version
        self.poll_s = poll_s
        self.retired_check_s = retired_check_s
        self.views: dict[tuple[str, str], GateView] = {}
        self.retired: set[tuple[str, str]] = set()
        self.published_configs: dict[tuple[str, str], dict[str, str]] = {}
        self.commands_handled = 0
        self._inbox: queue.SimpleQueue[tuple[str, bytes, bool]] = queue.SimpleQueue()
        self._commands: queue.Queue[tuple[str, str, str]] = queue.Queue(COMMAND_QUEUE)
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._subscribed = threading.Event()
        self._reconnected = threading.Event()
        self._sites: set[str] = set()
        self._client: paho.Client | None = None
        self._threads: list[threading.Thread] = []
        self._follower: EventFollower | None = None

    # -- life cycle -------------------------------------------------------------------

    def start(self) -> HomeAssistantBridge:
        self.retired = self.retirements.keys()
        newest = self.store.last_events(1)
        self._follower = EventFollower(self.store, newest[-1].row_id if newest else 0)
        client = make_client(self.endpoint)
        client.on_connect = self._on_connect
        client.on_subscribe = self._on_subscribe
        client.on_disconnect = lambda *_args: self._subscribed.clear()
        client.on_message = self._on_message
        self._client = client
        connect_async(client, self.endpoint, clean_start=True, session_expiry_s=0)
        client.loop_start()
        for target, label in ((self._work, "worker"), (self._command_loop, "commands")):
            thread = threading.Thread(target=target, name=f"console-{self.name}-ha-{label}", daemon=True)
            thread.start()
            self._threads.append(thread)
        return self

    def wait_connected(self, timeout: float | None = None) -> bool:
        return self._subscribed.wait(timeout)

    def poke(self, *_args: object) -> None:
        """New events were committed: read them now rather than at the next poll."""
        self._wake.set()

    def stop(self, timeout: float = 5.0) -> None:
        self._stopping.set()
        self._wake.set()
        for thread in self._threads:
            thread.join(timeout)
        self._threads.clear()
        client, self._client = self._client, None
        if client is not None:
            client.disconnect()
            client.loop_stop()
        self._subscribed.clear()

    # -- MQTT (network thread: enqueue only) -----------------------------------------

    def _filters(self) -> list[str]:
        statuses = (
            all_sites_filter(TopicKind.STATUS)
            if self.site == "+"
            else site_filter(self.site, TopicKind.STATUS)
        )
        health = (
            all_sites_filter(TopicKind.HEALTH)
            if self.site == "+"
            else site_filter(self.site, TopicKind.HEALTH)
        )
        # Our own retained states first: what Home Assistant was last told, so a restarted
        # console goes on from it instead of from nothing.
        return [ha.state_filter(self.site), statuses, health, ha.command_filter(self.site)]

    def _on_connect(
        self, client: paho.Client, _u: object, _f: object, reason: ReasonCode, _p: Properties | None
    ) -> None:
        if reason.is_failure:
            log.error("broker refused the console's Home Assistant connection: %s", reason)
            return
        client.subscribe([(topic, QOS) for topic in self._filters()])
        self._reconnected.set()  # what was published before may have been lost with the connection

    def _on_subscribe(
        self, _c: paho.Client, _u: object, _mid: int, reasons: list[ReasonCode], _p: Properties | None
    ) -> None:
        if any(reason.is_failure for reason in reasons):
            log.error("broker refused the Home Assistant subscriptions: %s", reasons)
            return
        self._subscribed.set()
        self._wake.set()

    def _on_message(self, _c: paho.Client, _u: object, message: paho.MQTTMessage) -> None:
        site_gate = ha.gate_of_command_topic(message.topic)
        if site_gate is not None:
            if message.retain:
                return  # a retained command is a stale one: never act on it
            text = message.payload[:32].decode("utf-8", "replace").strip()
            try:
                self._commands.put_nowait((*site_gate, text))
            except queue.Full:
                self._audit_refusal(*site_gate, text, "busy")
            return
        self._inbox.put((message.topic, bytes(message.payload), bool(message.retain)))
        self._wake.set()

    # -- the worker: every view and every publish ------------------------------------

    def _work(self) -> None:
        next_retired = time.monotonic()
        while not self._stopping.is_set():
            self._wake.wait(self.poll_s)
            self._wake.clear()
            try:
                if self._reconnected.is_set() and self._subscribed.is_set():
                    self._reconnected.clear()
                    self._republish()
                self._drain_inbox()
                if time.monotonic() >= next_retired:
                    self._check_retired()
                    next_retired = time.monotonic() + self.retired_check_s
                self._follow()
            except Exception:  # a store that fails now is read again at the next poll
                log.exception("Home Assistant bridge: an update failed; retrying")
                self._stopping.wait(self.poll_s)

    def _republish(self) -> None:
        """Everything again, after a (re)connect: a clean session keeps nothing we sent while away."""
        self._sites.clear()
        for key in list(self.published_configs):
            self.published_configs[key] = {}
        for view in list(self.views.values()):
            self._view(view.site, view.gate)  # the site's console device again
            self._publish_availability(view)
            self._publish(view)

    def _drain_inbox(self) -> None:
        while True:
            try:
                topic, payload, _retained = self._inbox.get_nowait()
            except queue.Empty:
                return
            self._handle(topic, payload)

    def _handle(self, topic: str, payload: bytes) -> None:
        if topic.endswith("/state") and "/$console/" in topic:
            self._seed(topic, payload)
            return
        try:
            ref = parse_topic(topic)
            if ref.kind is TopicKind.STATUS:
                status = decode_status(payload)
                body: GateStatus | GateHealth = status
            else:
                body = decode_health(payload)
            if (body.site, body.gate) != (ref.site, ref.gate):
                raise ProtocolError(
                    RejectReason.TOPIC_MISMATCH, f"envelope {body.site}/{body.gate} on {ref.site}/{ref.gate}"
                )
        except (ProtocolError, ValueError) as exc:
            log.debug("Home Assistant bridge ignores %s: %s", topic[:200], exc)
            return
        view = self._view(ref.site, ref.gate)
        if view is None:
            return
        if isinstance(body, GateStatus):
            apply_status(view, body)
            self._publish_availability(view)
        else:
            apply_health(view, body)
        self._publish(view)

    def _seed(self, topic: str, payload: bytes) -> None:
        """Take back a retained state we published before a restart, for what we do not know better."""
        parts = topic.split("/")
        if len(parts) != 7 or not payload:
            return
        try:
            doc = json.loads(payload)
            site, gate = parts[2], parts[5]
        except ValueError:
            return
        if not isinstance(doc, dict):
            return
        view = self._view(site, gate)
        if view is None:
            return
        for key, value in doc.items():
            if key in ("seq", "readers", "version"):
                continue
            if view.state.get(key) is None and isinstance(value, str | int | float | type(None)):
                view.state[key] = value
        if isinstance(doc.get("seq"), int) and doc["seq"] > view.seq:
            view.seq = doc["seq"]
        if isinstance(doc.get("readers"), list):
            view.readers.update(str(r)[:32] for r in doc["readers"][:64] if isinstance(r, str) and r)
        if not view.version and isinstance(doc.get("version"), str):
            view.version = doc["version"][:32]
        self._publish(view)

    def _follow(self) -> None:
        follower = self._follower
        if follower is None or not self._subscribed.is_set():
            return
        while True:
            events, more = follower.read(1000)
            for event in events:
                if event.flags & NOT_FACT:
                    continue
                view = self._view(event.site, event.gate)
                if view is None:
                    continue
                reader_event = apply_event(view, event)
                self._publish(view)
                if reader_event is not None and event.data.get("reader"):
                    self._send(
                        ha.reader_topic(event.site, event.gate, str(event.data["reader"])[:32]),
                        reader_event,
                        retain=False,
                    )
            if not more:
                return

    def _view(self, site: str, gate: str) -> GateView | None:
        if (self.site != "+" and site != self.site) or (site, gate) in self.retired:
            return None
        view = self.views.get((site, gate))
        if view is None:
            view = self.views[site, gate] = GateView(site, gate)
        if site not in self._sites:
            self._sites.add(site)
            topic, config = console_config(
                site,
                prefix=self.prefix,
                console=self.name,
                console_status=self.console_status,
                version=self.version,
            )
            self._send(topic, json.dumps(config, sort_keys=True), retain=True)
        return view

    def _publish(self, view: GateView) -> None:
        """Configs that changed (a new reader, a new version), then the state if it changed."""
        configs = discovery_configs(
            view,
            prefix=self.prefix,
            console=self.name,
            console_status=self.console_status,
            version=self.version,
        )
        published = self.published_configs.setdefault((view.site, view.gate), {})
        for topic, config in configs.items():
            text = json.dumps(config, sort_keys=True)
            if published.get(topic) != text:
                self._send(topic, text, retain=True)
                published[topic] = text
        document = json.dumps(view.document(), sort_keys=True)
        if published.get("state") != document:
            self._send(ha.state_topic(view.site, view.gate), document, retain=True)
            published["state"] = document

    def _publish_availability(self, view: GateView) -> None:
        if view.available is None:
            return
        text = ha.AVAILABLE if view.available else ha.NOT_AVAILABLE
        published = self.published_configs.setdefault((view.site, view.gate), {})
        if published.get("availability") != text:
            self._send(ha.availability_topic(view.site, view.gate), text, retain=True)
            published["availability"] = text

    def _send(self, topic: str, payload: str | dict[str, Any] | bytes, *, retain: bool) -> None:
        client = self._client
        if client is None:
            return
        data = json.dumps(payload) if isinstance(payload, dict) else payload
        client.publish(topic, data, qos=QOS, retain=retain)

    def _check_retired(self) -> None:
        """Remove the entities of gates retired since the last look: an empty retained config deletes one."""
        retired = self.retirements.keys()
        for key in sorted(retired - self.retired):
            self.retired.add(key)
            view = self.views.pop(key, None) or GateView(*key)
            published = self.published_configs.pop(key, {})
            topics = set(
                discovery_configs(
                    view,
                    prefix=self.prefix,
                    console=self.name,
                    console_status=self.console_status,
                    version=self.version,
                )
            )
            topics |= {topic for topic in published if "/" in topic}
            for topic in sorted(topics):
                self._send(topic, b"", retain=True)
            for topic in (ha.state_topic(*key), ha.availability_topic(*key)):
                self._send(topic, b"", retain=True)
            log.info("gate %s/%s retired: its Home Assistant entities are removed", *key)
        self.retired |= retired

    # -- commands ----------------------------------------------------------------------

    def _command_loop(self) -> None:
        while not self._stopping.is_set():
            try:
                site, gate, text = self._commands.get(timeout=0.5)
            except queue.Empty:
                continue
            try:
                self._command(site, gate, text)
            except Exception:
                log.exception("Home Assistant command to %s/%s failed", site, gate)
            self.commands_handled += 1

    def _command(self, site: str, gate: str, text: str) -> None:
        """Check one command from Home Assistant and send it as the console's own; audit either way."""
        action = {ha.LOCK_PAYLOAD: "lock", ha.UNLOCK_PAYLOAD: "unlock"}.get(text)
        if action is None:
            self._audit_refusal(site, gate, text, "bad_payload")
            return
        if self.site != "+" and site != self.site:
            self._audit_refusal(site, gate, text, "not_this_site", action=action)
            return
        if (site, gate) in self.retired or self.retirements.is_retired(site, gate):
            self._audit_refusal(site, gate, text, "retired", action=action)
            return
        user = self.users.get(self.user)
        if user is None or user.disabled:
            self._audit_refusal(
                site, gate, text, "no_such_user" if user is None else "user_disabled", action=action
            )
            return
        from console.users import Permission

        if not user.may(Permission.UNLOCK, site, gate):
            self._audit_refusal(site, gate, text, "no_permission", action=action)
            return
        if self.commands is None:
            self.audit.record(
                user,
                action,
                f"{site}/{gate}",
                {"via": "homeassistant", "status": "unreachable"},
                address="homeassistant",
            )
            return
        args = {"seconds": self.unlock_seconds} if action == "unlock" else {}
        result = self.commands.send(site, gate, action, args, operator=user.name)
        self.audit.record(
            user,
            action,
            f"{site}/{gate}",
            {
                "via": "homeassistant",
                "status": result.status,
                "command_id": result.command_id,
                "error": result.error,
                "result": result.result,
                "elapsed_s": result.elapsed_s,
            },
            address="homeassistant",
        )
        log.info("Home Assistant %s of %s/%s as %s: %s", action, site, gate, user.name, result.status)

    def _audit_refusal(
        self, site: str, gate: str, text: str, reason: str, *, action: str = "homeassistant"
    ) -> None:
        log.warning("Home Assistant command %r to %s/%s refused: %s", text[:32], site, gate, reason)
        try:
            self.audit.record(
                self.user,
                f"{action}.denied",
                f"{site}/{gate}",
                {"via": "homeassistant", "reason": reason, "payload": text[:32]},
                address="homeassistant",
            )
        except Exception as exc:  # the refusal stands; only its record failed
            log.error("could not audit a refused Home Assistant command: %s", exc)


def start_homeassistant(
    config: Any, store: EventStore, endpoint: BrokerEndpoint, web: Any, *, console_status: str
) -> HomeAssistantBridge | None:
    """The bridge for ``console run``, or None when ``[homeassistant]`` is not enabled.

    It shares the web console's command connection when there is one (one client id may
    be connected once), else opens its own with the office's command key.
    """
    settings = config.homeassistant
    if not settings.enabled:
        return None
    from console.audit import AuditLog
    from console.commands import CommandClient, OfficeCommandSigner
    from console.gate_retirement import GateRetirements
    from console.users import UserStore
    from gatepost import __version__

    commands = web.ctx.commands if web is not None and web.ctx.commands is not None else None
    own: CommandClient | None = None
    if commands is None:
        office = config.web.office
        own = CommandClient(
            endpoint, name=config.name, signer=OfficeCommandSigner(office) if office is not None else None
        ).start()
        commands = own
    bridge = HomeAssistantBridge(
        endpoint,
        store,
        name=config.name,
        site=config.site,
        prefix=settings.discovery_prefix,
        user=settings.user,
        unlock_seconds=settings.unlock_seconds,
        commands=commands,
        users=UserStore(store.db),
        audit=AuditLog(store.db),
        retirements=GateRetirements(store.db),
        console_status=console_status,
        version=__version__,
    )
    if own is not None:
        stop = bridge.stop

        def stop_both(timeout: float = 5.0) -> None:
            stop(timeout)
            own.stop()

        bridge.stop = stop_both  # type: ignore[method-assign]
    return bridge.start()


def chain(*callbacks: Callable[..., None] | None) -> Callable[..., None] | None:
    """One ``on_commit`` for several listeners (the web console's live pages, this bridge)."""
    present = [callback for callback in callbacks if callback is not None]
    if not present:
        return None
    if len(present) == 1:
        return present[0]

    def call(*args: object) -> None:
        for callback in present:
            callback(*args)

    return call
