"""The push feed over MQTT 5: each record a QoS 1 PUBLISH, a batch done when the broker PUBACKed all of it.

A PUBACK is the district broker taking responsibility for the message (MQTT 5.0 section
4.3.2, QoS 1 "at least once"); a PUBACK whose reason code is 0x80 or above is a refusal
(not authorised, quota exceeded …) and counts as not sent.  :meth:`MqttFeed.send`
returns True only when every record of the batch was accepted, and only then does the
runner move the cursor.  Anything else — a refusal, a dropped connection, a broker that
does not answer within ``ack_timeout_s`` — makes the runner send the whole batch again
after a back-off: repeats carry the same ``id``, the district drops them.

The connection starts clean with no session (``clean_start``, expiry 0): what is owed to
the district is the store's cursor, not a broker session, so a fresh broker (or one that
lost its persistence file) is fed the same as the one before.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence

import paho.mqtt.client as paho
from paho.mqtt.reasoncodes import ReasonCode

from protocol.mqtt import QOS, BrokerEndpoint, connect_async, make_client

log = logging.getLogger("gatepost.console.district")

__all__ = ["MqttFeed"]


class MqttFeed:
    name = "mqtt"

    def __init__(self, endpoint: BrokerEndpoint, *, inflight: int = 500, ack_timeout_s: float = 30.0) -> None:
        self.endpoint = endpoint
        self.ack_timeout_s = ack_timeout_s
        self.client = make_client(endpoint, max_inflight=inflight)
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_publish = self._on_publish
        self._cond = threading.Condition()
        self._connected = False
        self._epoch = 0  # bumped at every disconnect: a batch waiting across one is sent again
        self._results: dict[int, tuple[bool, int]] = {}  # mid -> (accepted, number of the PUBACK)
        self._acks = 0
        self.refused = 0
        self.connections = 0
        """Successful connections so far: the runner resends its unsettled records on each new one."""

    def start(self) -> None:
        connect_async(self.client, self.endpoint, clean_start=True, session_expiry_s=0)
        self.client.loop_start()

    def stop(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()

    @property
    def connected(self) -> bool:
        return self._connected

    def wait_connected(self, timeout: float) -> bool:
        with self._cond:
            return self._cond.wait_for(lambda: self._connected, timeout)

    def send(self, messages: Sequence[tuple[str, bytes]], stop: threading.Event | None = None) -> bool:
        """Publish every ``(topic, payload)`` at QoS 1; True once the broker accepted all of them."""
        if not messages:
            return True
        if not self.wait_connected(min(self.ack_timeout_s, 5.0)):
            return False
        with self._cond:
            epoch = self._epoch
            # A mid is reused once paho's counter wraps; a PUBACK that came before this
            # batch was published (a repeat paho sent after a reconnect) is not for it.
            first_ack = self._acks + 1
        mids: list[int] = []
        for topic, payload in messages:
            info = self.client.publish(
                topic, payload, qos=QOS
            )  # no properties: packing them per record costs
            if info.rc != paho.MQTT_ERR_SUCCESS and info.rc != paho.MQTT_ERR_NO_CONN:
                log.warning("district publish refused locally: %s", paho.error_string(info.rc))
                return False
            mids.append(info.mid)
        deadline = time.monotonic() + self.ack_timeout_s
        pending = set(mids)
        with self._cond:
            while True:
                for mid in list(pending):
                    result = self._results.get(mid)
                    if result is None or result[1] < first_ack:
                        continue
                    del self._results[mid]
                    if not result[0]:
                        self._forget(pending)
                        return False
                    pending.discard(mid)
                if not pending:
                    return True
                left = deadline - time.monotonic()
                if self._epoch != epoch or left <= 0 or (stop is not None and stop.is_set()):
                    if left <= 0:
                        log.warning(
                            "the district broker acknowledged %d of %d in time",
                            len(mids) - len(pending),
                            len(mids),
                        )
                    self._forget(pending)
                    return False
                self._cond.wait(min(left, 0.5))

    def _forget(self, mids: set[int]) -> None:
        for mid in mids:
            self._results.pop(mid, None)

    def _on_connect(
        self, _client: paho.Client, _u: object, _flags: object, reason: ReasonCode, _props: object
    ) -> None:
        if reason.is_failure:
            log.warning("the district broker refused the connection: %s", reason)
            return
        log.info("connected to the district broker %s:%d", self.endpoint.host, self.endpoint.port)
        with self._cond:
            self._connected = True
            self.connections += 1
            self._cond.notify_all()

    def _on_disconnect(
        self, _client: paho.Client, _u: object, _flags: object, reason: ReasonCode, _p: object
    ) -> None:
        with self._cond:
            if self._connected:
                log.warning("lost the district broker: %s", reason)
            self._connected = False
            self._epoch += 1
            self._cond.notify_all()

    def _on_publish(
        self, _client: paho.Client, _u: object, mid: int, reason: ReasonCode, _props: object
    ) -> None:
        ok = not reason.is_failure
        if not ok:
            self.refused += 1
            log.warning("the district broker refused a record: %s", reason)
        with self._cond:
            self._acks += 1
            self._results[mid] = (ok, self._acks)
            self._cond.notify_all()
