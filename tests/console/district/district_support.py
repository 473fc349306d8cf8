"""A second real mosquitto as the district broker, and a district subscriber that counts records.

The district is another organisation's broker; here it is one of ours (``broker.launcher``)
with two accounts: the console's, allowed to publish under ``district/#``, and the
district platform's reader.  The grant is a dynamic-security role sent as control
commands, so it is sent again after each start (``Broker.start`` rewrites the plugin's
file from the registry, which knows only gates and consoles).
"""

from __future__ import annotations

import json
import threading
from collections import Counter
from pathlib import Path

import paho.mqtt.client as paho

from broker.control import DynsecControl
from broker.launcher import Broker
from broker.provision import Credentials
from protocol.mqtt import BrokerEndpoint, connect_async, make_client

TOPICS = "district/#"


def grant(broker: Broker, publisher: str, reader: str) -> None:
    with broker.provisioning.snapshot() as snapshot:
        password = snapshot.admin.password
    assert password is not None
    with DynsecControl(broker.host, broker.port, password) as control:
        control.execute(
            [
                {"command": "deleteRole", "rolename": "district-feed"},
                {"command": "deleteRole", "rolename": "district-reader"},
            ]
        )
        control.execute(
            [
                {"command": "createRole", "rolename": "district-feed"},
                {
                    "command": "addRoleACL",
                    "rolename": "district-feed",
                    "acltype": "publishClientSend",
                    "topic": TOPICS,
                    "allow": True,
                },
                {"command": "createRole", "rolename": "district-reader"},
                *(
                    {
                        "command": "addRoleACL",
                        "rolename": "district-reader",
                        "acltype": acltype,
                        "topic": TOPICS,
                        "allow": True,
                    }
                    for acltype in ("subscribePattern", "publishClientReceive")
                ),
                {"command": "addClientRole", "username": publisher, "rolename": "district-feed"},
                {"command": "addClientRole", "username": reader, "rolename": "district-reader"},
            ]
        )


class DistrictBroker:
    """The district's mosquitto: :meth:`start` / :meth:`kill` / :meth:`restart` keep port and accounts."""

    def __init__(self, state_dir: Path, name: str = "compound") -> None:
        self.broker = Broker(state_dir)
        self.broker.start()
        self.feed: Credentials = self.broker.add_console(f"{name}feed", workers=1)
        self.reader: Credentials = self.broker.add_console(f"{name}reader", workers=1)
        self._grant()

    def _grant(self) -> None:
        grant(self.broker, self.feed.username, self.reader.username)

    def feed_endpoint(self) -> BrokerEndpoint:
        return self.broker.endpoint(self.feed)

    def kill(self) -> None:
        self.broker.kill()

    def start(self) -> None:
        self.broker.start()
        self._grant()

    def stop(self) -> None:
        self.broker.stop()

    def save_sessions(self) -> None:
        """Restart cleanly (SIGTERM writes the persistence file), so the reader's session survives a kill -9.

        mosquitto saves sessions every ``autosave_interval``; a subscription made since is
        in memory only, and a killed broker would come back without it and drop what the
        console publishes before the reader subscribes again.  The district keeping its
        own subscription durable is the district's side of the contract (docs/district.md).
        """
        self.broker.stop()
        self.start()


class DistrictSubscriber:
    """The district platform: a persistent QoS 1 session on ``district/#`` counting records by id."""

    def __init__(self, endpoint: BrokerEndpoint) -> None:
        self.endpoint = endpoint
        self.ids: Counter[str] = Counter()
        self.payloads: dict[str, set[bytes]] = {}
        self.records: list[dict] = []
        self.lock = threading.Lock()
        self.subscribed = threading.Event()
        self.client = make_client(endpoint)
        self.client.on_connect = self._on_connect
        self.client.on_subscribe = lambda *_a: self.subscribed.set()
        self.client.on_message = self._on_message

    def start(self) -> DistrictSubscriber:
        connect_async(self.client, self.endpoint, clean_start=False)
        self.client.loop_start()
        assert self.subscribed.wait(15), "the district subscriber could not subscribe"
        return self

    def stop(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()

    def pause(self) -> None:
        """Disconnect, keeping the session: the broker queues what arrives meanwhile (in memory)."""
        self.subscribed.clear()
        self.client.disconnect()
        self.client.loop_stop()  # an asked-for disconnect ends paho's loop thread

    def resume(self) -> None:
        connect_async(self.client, self.endpoint, clean_start=False)
        self.client.loop_start()
        assert self.subscribed.wait(15), "the district subscriber could not subscribe again"

    def _on_connect(self, client: paho.Client, *_args: object) -> None:
        client.subscribe(TOPICS, qos=1)

    def _on_message(self, _client: paho.Client, _u: object, message: paho.MQTTMessage) -> None:
        for line in message.payload.split(b"\n"):  # JSON lines: one record each
            record = json.loads(line)
            with self.lock:
                self.ids[record["id"]] += 1
                self.payloads.setdefault(record["id"], set()).add(line)
                self.records.append(record)

    def distinct(self, kind: str = "event") -> int:
        with self.lock:
            return len({r["id"] for r in self.records if r["kind"] == kind})

    def repeats(self) -> int:
        with self.lock:
            return sum(n - 1 for n in self.ids.values())

    def inexact_repeats(self) -> list[str]:
        """Ids received with more than one distinct payload (an event's must always be the same bytes)."""
        with self.lock:
            return [i for i, p in self.payloads.items() if len(p) > 1 and not i.startswith("flow:")]
