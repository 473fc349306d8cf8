"""Sends the site's door-card list and holder thumbnails to its gates (docs/cards.md).

Three paths, each enough on its own to bring a gate up to date eventually, together fast:

* the whole list as **retained** snapshot chunks, so that a gate that boots or reconnects
  receives it from the broker without anyone asking; republished after changes at most
  every ``snapshot_every_s``, since for 100,000 cards it is several megabytes;
* each change as **delta** chunks (not retained) the moment the registry's version moves;
* an answer on the gate's own ``cards`` topic when a gate asks on ``cards_request`` (it
  missed a delta, or its copy no longer matches its hash): a delta from the version it
  holds, or a snapshot.

The registry may be changed by another process (the web console, ``gatepost card``
commands), so the publisher watches its version rather than being told.  Thumbnails are
files ``<digest>.jpg`` in a folder; each new or changed one is published retained under
its digest, and a removed one is cleared.
"""

from __future__ import annotations

import json
import logging
import queue
import stat
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import paho.mqtt.client as paho
from paho.mqtt.subscribeoptions import SubscribeOptions

from console.credentials import CardRegistry
from protocol.credentials import decode_chunk
from protocol.identity import ConsoleConnection
from protocol.mqtt import QOS, BrokerEndpoint, connect_async, make_client
from protocol.topics import (
    ROOT,
    GateTopics,
    TopicKind,
    card_delta_topic,
    card_snapshot_topic,
    parse_topic,
    photo_topic,
    validate_name,
)

log = logging.getLogger(__name__)

PUBLISH_TIMEOUT_S: Final = 30.0
_DIGEST_LENGTH: Final = 32
_SETTLED_NS: Final = 2_000_000_000
"""A folder mtime this old (2 s) is past any filesystem's timestamp granularity, so a change since would move it."""


@dataclass(slots=True)
class PublisherCounters:
    snapshots: int = 0
    deltas: int = 0
    answers: int = 0
    photos: int = 0
    refused_requests: int = 0


class CardPublisher:
    """One site's card list and thumbnails, kept published; start it beside the ingestor."""

    def __init__(
        self,
        endpoint: BrokerEndpoint,
        registry: CardRegistry,
        site: str,
        *,
        name: str = "console",
        thumbnails: Path | None = None,
        poll_s: float = 1.0,
        snapshot_every_s: float = 60.0,
    ) -> None:
        self.endpoint = endpoint
        self.registry = registry
        self.site = validate_name(site, "site")
        self.thumbnails = thumbnails
        self.poll_s = poll_s
        self.snapshot_every_s = snapshot_every_s
        self.counters = PublisherCounters()
        self._state_path = registry.path.with_name(registry.path.name + f".published-{self.site}.json")
        self._client = make_client(endpoint.for_connection(ConsoleConnection.CARDS))
        self._client.on_connect = self._on_connect
        self._client.on_message = self._on_message
        self._requests: queue.SimpleQueue[tuple[str, int | None]] = queue.SimpleQueue()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._connected = threading.Event()
        self._thread = threading.Thread(target=self._loop, name=f"cards-{self.site}", daemon=True)
        self._published_version: int | None = None
        self._snapshot_version: int | None = None
        self._last_snapshot = -float("inf")
        self._photos: dict[str, float] = {}
        self._photos_scanned: int | None = None  # the folder's st_mtime_ns at its last final listing
        self._published = self._load_state()

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> CardPublisher:
        connect_async(self._client, self.endpoint)
        self._client.loop_start()
        self._thread.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread.is_alive():
            self._thread.join(timeout)
        self._client.disconnect()
        self._client.loop_stop()

    def wait_connected(self, timeout: float = 10.0) -> bool:
        return self._connected.wait(timeout)

    # -- network thread ----------------------------------------------------------------------

    def _on_connect(self, client: paho.Client, _u: Any, _f: Any, reason: Any, _p: Any) -> None:
        if reason.is_failure:
            log.error("broker refused the card publisher: %s", reason)
            return
        request_filter = f"{ROOT}/{self.site}/+/{TopicKind.CARDS_REQUEST.value}"
        client.subscribe([(request_filter, SubscribeOptions(qos=QOS))])
        self._connected.set()
        self._wake.set()

    def _on_message(self, _client: paho.Client, _u: Any, message: paho.MQTTMessage) -> None:
        """A gate's request: ``{"version": int | null, ...}``; anything else is logged and dropped."""
        try:
            ref = parse_topic(message.topic)
            body = json.loads(message.payload)
            version = body.get("version") if isinstance(body, dict) else "?"
            if version is not None and (
                not isinstance(version, int) or isinstance(version, bool) or version < 0
            ):
                raise ValueError(f"version {version!r} is not a non-negative integer")
        except Exception as exc:
            self.counters.refused_requests += 1
            log.warning("card request on %r refused: %s", message.topic[:120], str(exc)[:200])
            return
        self._requests.put((ref.gate, version))
        self._wake.set()

    # -- publishing thread -------------------------------------------------------------------

    def _loop(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(self.poll_s)
            self._wake.clear()
            if not self._client.is_connected():
                continue
            try:
                self._publish_changes()
                self._answer_requests()
                self._publish_photos()
            except Exception:  # a broken registry file must not end the thread; say so and go on
                log.exception("card publisher round failed")

    def _publish_changes(self) -> None:
        state = self.registry.state
        if self._published_version is not None and state.version != self._published_version:
            chunks = self.registry.delta(self._published_version)
            if chunks:
                self._send(card_delta_topic(self.site), chunks, retain=False)
                self.counters.deltas += 1
                log.info("card list delta %d -> %d published", self._published_version, state.version)
        self._published_version = state.version
        if state.version == 0:
            return  # a registry never written to holds no list: a list's versions start at 1
        due = time.monotonic() - self._last_snapshot >= self.snapshot_every_s
        if self._snapshot_version != state.version and (self._snapshot_version is None or due):
            self._publish_snapshot()

    def _publish_snapshot(self) -> None:
        chunks = self.registry.snapshot()
        version = decode_chunk(chunks[0]).list_version
        self._send_indexed(chunks)
        previous = self._published.get("total", 0)
        for index in range(len(chunks), previous):  # a shorter list: clear the indices it no longer uses
            self._client.publish(card_snapshot_topic(self.site, index), b"", QOS, retain=True)
        self._published["total"] = len(chunks)
        self._save_state()
        self._snapshot_version = version
        self._last_snapshot = time.monotonic()
        self.counters.snapshots += 1
        log.info("card list snapshot v%d published retained (%d chunks)", version, len(chunks))

    def _answer_requests(self) -> None:
        answered: set[str] = set()
        while True:
            try:
                gate, version = self._requests.get_nowait()
            except queue.Empty:
                return
            if gate in answered:
                continue
            answered.add(gate)
            chunks = self.registry.update_for(version)
            if chunks:
                self._send(GateTopics(self.site, gate).cards, chunks, retain=False)
            self.counters.answers += 1
            log.info("answered %s's card request (held %s) with %d chunk(s)", gate, version, len(chunks))

    def _publish_photos(self) -> None:
        """Publish new and changed thumbnails, clear removed ones; list the folder only when it changed.

        Listing 20,000 files every round costs over 100 ms.  Thumbnails are written by
        rename (``console.thumbnails.save_thumbnail``), which changes the folder's mtime,
        new file or replaced; an unchanged mtime means nothing to do.  A change within the
        filesystem's timestamp granularity of a listing could keep the mtime it had, so a
        folder changed less than :data:`_SETTLED_NS` before a listing is listed again next
        round, as is one with a thumbnail that could not be published.
        """
        if self.thumbnails is None:
            return
        try:
            folder = self.thumbnails.stat()
        except OSError:
            return
        if not stat.S_ISDIR(folder.st_mode) or folder.st_mtime_ns == self._photos_scanned:
            return
        final = time.time_ns() - folder.st_mtime_ns >= _SETTLED_NS  # else: list again next round
        seen: dict[str, float] = {}
        for path in self.thumbnails.glob("*.jpg"):
            digest = path.stem
            if len(digest) != _DIGEST_LENGTH:
                continue
            try:
                mtime = path.stat().st_mtime
                if self._photos.get(digest) != mtime:
                    self._client.publish(photo_topic(self.site, digest), path.read_bytes(), QOS, retain=True)
                    self.counters.photos += 1
            except (OSError, ValueError) as exc:
                log.warning("thumbnail %s not published: %s", path.name, exc)
                final = False  # try it again next round
                continue
            seen[digest] = mtime
        for digest in self._photos.keys() - seen.keys():
            self._client.publish(photo_topic(self.site, digest), b"", QOS, retain=True)
        self._photos = seen
        self._photos_scanned = folder.st_mtime_ns if final else None

    def _send_indexed(self, chunks: list[bytes]) -> None:
        infos = [
            self._client.publish(card_snapshot_topic(self.site, i), chunk, QOS, retain=True)
            for i, chunk in enumerate(chunks)
        ]
        self._wait(infos)

    def _send(self, topic: str, chunks: list[bytes], *, retain: bool) -> None:
        self._wait([self._client.publish(topic, chunk, QOS, retain=retain) for chunk in chunks])

    def _wait(self, infos: list[paho.MQTTMessageInfo]) -> None:
        deadline = time.monotonic() + PUBLISH_TIMEOUT_S
        for info in infos:
            try:
                info.wait_for_publish(max(0.0, deadline - time.monotonic()))
            except (RuntimeError, ValueError) as exc:
                log.warning("card chunk not confirmed by the broker: %s", exc)
                return

    # -- what was published before a restart -------------------------------------------------

    def _load_state(self) -> dict[str, int]:
        try:
            data = json.loads(self._state_path.read_text())
        except (OSError, ValueError):
            return {}
        return {"total": int(data.get("total", 0))} if isinstance(data, dict) else {}

    def _save_state(self) -> None:
        temporary = self._state_path.with_suffix(".part")
        temporary.write_text(json.dumps(self._published))
        temporary.replace(self._state_path)


def start_card_publisher(config: Any, endpoint: BrokerEndpoint) -> CardPublisher | None:
    """The publisher for ``config.cards`` (a ``ConsoleConfig``), started; ``None`` without ``[cards]``."""
    cards = config.cards
    if cards is None:
        return None
    registry = CardRegistry(cards.registry)
    return CardPublisher(
        endpoint,
        registry,
        cards.site,
        name=config.name,
        thumbnails=cards.thumbnails,
        snapshot_every_s=cards.snapshot_every_s,
    ).start()
