"""Fixtures shared by every test area: a real mosquitto, MQTT clients that clean up, unique names.

The broker is started from ``broker/``'s own configuration (the production template,
rendered for ``tmp_path`` and a free port), never the system mosquitto on 1883, so
tests run in parallel and prove things about the configuration that ships.
"""

from __future__ import annotations

import queue
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import paho.mqtt.client as paho
import pytest
from paho.mqtt.reasoncodes import ReasonCode

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # running from a checkout without `pip install -e .`
    sys.path.insert(0, str(ROOT))

import simulator  # noqa: E402, F401 - registers sim:// cameras and simulated door people (drivers.devices)
from broker.launcher import Broker  # noqa: E402
from broker.provision import Credentials  # noqa: E402
from protocol.mqtt import KEEPALIVE_S, BrokerEndpoint, connect_properties, make_client  # noqa: E402

WAIT_S = 5.0


@pytest.fixture
def unique_name() -> str:
    """A fresh site/gate-safe name (``validate_name``), so parallel tests never share topics."""
    return f"t{uuid.uuid4().hex[:12]}"


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Broker]:
    """A started mosquitto in ``tmp_path/broker`` on a free port; stopped (and checked dead) at teardown."""
    instance = Broker(tmp_path / "broker")
    instance.start()
    try:
        yield instance
    finally:
        instance.stop()
        assert not instance.running


class MqttTestClient:
    """A paho MQTT 5 client (built by ``protocol.mqtt.make_client``) whose replies tests can wait for.

    Every PUBACK and SUBACK reason code is kept, because with MQTT 5 that is where
    mosquitto says "not authorized"; received messages go to a queue.
    """

    def __init__(self, endpoint: BrokerEndpoint) -> None:
        self.endpoint = endpoint
        self.client = make_client(endpoint)
        self.client_id = endpoint.client_id or "anonymous"
        self.disconnects = 0
        self.messages: queue.Queue[paho.MQTTMessage] = queue.Queue()
        self.connack: ReasonCode | None = None
        self.session_present: bool | None = None
        self._connected = threading.Event()
        self._lock = threading.Condition()
        self._pubacks: dict[int, ReasonCode] = {}
        self._subacks: dict[int, list[ReasonCode]] = {}
        self.client.on_connect = self._on_connect
        self.client.on_message = lambda client, userdata, message: self.messages.put(message)
        self.client.on_publish = self._on_publish
        self.client.on_subscribe = self._on_subscribe
        self.client.on_disconnect = self._on_disconnect

    def _on_connect(
        self, client: paho.Client, userdata: object, flags: object, reason: ReasonCode, props: object
    ) -> None:
        self.connack = reason
        self.session_present = bool(getattr(flags, "session_present", False))
        if reason.is_failure:
            client.disconnect()  # otherwise paho's loop retries the refused login for ever
        self._connected.set()

    def _on_disconnect(self, *_args: object) -> None:
        self.disconnects += 1

    def _on_publish(
        self, client: paho.Client, userdata: object, mid: int, reason: ReasonCode, props: object
    ) -> None:
        with self._lock:
            self._pubacks[mid] = reason
            self._lock.notify_all()

    def _on_subscribe(
        self, client: paho.Client, userdata: object, mid: int, reasons: list[ReasonCode], props: object
    ) -> None:
        with self._lock:
            self._subacks[mid] = list(reasons)
            self._lock.notify_all()

    def connect(
        self, *, clean_start: bool = True, session_expiry_s: int = 0, timeout: float = WAIT_S
    ) -> ReasonCode:
        """Connect and wait for CONNACK; returns its reason code (a failure does not raise)."""
        self._connected.clear()
        self.client.connect(
            self.endpoint.host,
            self.endpoint.port,
            keepalive=KEEPALIVE_S,
            clean_start=clean_start,
            properties=connect_properties(session_expiry_s),
        )
        self.client.loop_start()
        if not self._connected.wait(timeout):
            raise AssertionError(f"{self.client_id}: no CONNACK in {timeout} s")
        assert self.connack is not None
        return self.connack

    def _wait(self, table: dict, mid: int, timeout: float) -> object:
        with self._lock:
            if not self._lock.wait_for(lambda: mid in table, timeout):
                raise AssertionError(f"{self.client_id}: no acknowledgement for mid {mid} in {timeout} s")
            return table.pop(mid)

    def publish(
        self, topic: str, payload: bytes | str = b"x", *, retain: bool = False, timeout: float = WAIT_S
    ) -> ReasonCode:
        """QoS 1 publish; returns the PUBACK reason code (0x87 "Not authorized" if the ACL refused)."""
        info = self.client.publish(topic, payload, qos=1, retain=retain)
        reason = self._wait(self._pubacks, info.mid, timeout)
        assert isinstance(reason, ReasonCode)
        return reason

    def subscribe(self, topic: str, *, timeout: float = WAIT_S) -> ReasonCode:
        """QoS 1 subscription; returns the SUBACK reason code (granted QoS, or a failure)."""
        result, mid = self.client.subscribe(topic, qos=1)
        assert result == paho.MQTT_ERR_SUCCESS, f"subscribe not sent: {result}"
        reasons = self._wait(self._subacks, mid, timeout)
        assert isinstance(reasons, list)
        return reasons[0]

    def get(self, timeout: float = WAIT_S) -> paho.MQTTMessage | None:
        try:
            return self.messages.get(timeout=timeout)
        except queue.Empty:
            return None

    def collect(
        self, count: int, timeout: float = WAIT_S, *, quiet: float | None = None
    ) -> list[paho.MQTTMessage]:
        """Wait for ``count`` messages; fewer if ``timeout`` runs out or none came for ``quiet`` seconds."""
        deadline = time.monotonic() + timeout
        out: list[paho.MQTTMessage] = []
        while len(out) < count:
            left = max(0.0, deadline - time.monotonic())
            message = self.get(left if quiet is None else min(left, quiet))
            if message is None:
                break
            out.append(message)
        return out

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


ClientFactory = Callable[..., MqttTestClient]


@pytest.fixture
def mqtt_client_factory(broker: Broker) -> Iterator[ClientFactory]:
    """``factory(creds, connection=None, *, connect=True, clean_start=True, session_expiry_s=0)``.

    Returns an :class:`MqttTestClient` connected to the ``broker`` fixture (asserting
    that the login succeeded when ``connect`` is true).  Its client id is its user name,
    as the broker demands: ``creds.username``, or with ``connection`` that connection of a
    console account (``"watch"``, ``"w3"``: protocol.identity), for a second client of the
    same console.  Pass ``creds=None`` for an anonymous client and ``connect=False`` to
    inspect a refusal.  All are closed at teardown.
    """
    made: list[MqttTestClient] = []

    def factory(
        creds: Credentials | None,
        connection: str | None = None,
        *,
        connect: bool = True,
        clean_start: bool = True,
        session_expiry_s: int = 0,
    ) -> MqttTestClient:
        endpoint = broker.endpoint(creds)
        if connection is not None:
            endpoint = endpoint.for_connection(connection)
        client = MqttTestClient(endpoint)
        made.append(client)
        if connect:
            reason = client.connect(clean_start=clean_start, session_expiry_s=session_expiry_s)
            assert not reason.is_failure, f"{client.client_id} refused: {reason}"
        return client

    yield factory
    for client in made:
        client.close()


# -- browser tests (web console, guard screen) ----------------------------------------------

BROWSER_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture(scope="session")
def _chromium() -> Iterator[object]:
    """One headless Chromium (Debian's /usr/bin/chromium) for the whole session: starting one costs seconds."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path="/usr/bin/chromium", args=BROWSER_ARGS)
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture
def browser_page(_chromium: object) -> Iterator[object]:
    """A fresh page in its own context (own cookies), closed after the test."""
    context = _chromium.new_context(viewport={"width": 1280, "height": 800})  # type: ignore[attr-defined]
    page = context.new_page()
    page.set_default_timeout(10_000)
    try:
        yield page
    finally:
        context.close()
