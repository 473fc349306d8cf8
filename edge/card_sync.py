"""Keeps the gate's door-card list in step with the console, and its holder thumbnails on disk.

The console publishes the whole list as retained snapshot chunks, every change as delta
chunks, and answers a gate's request on that gate's own ``cards`` topic (docs/cards.md).
Chunks from these three sources are assembled separately, so that a delta arriving in the
middle of the retained snapshot does not discard the snapshot's chunks already held.

Applying a snapshot of 100,000 cards takes about a second, so it runs on this module's own
thread with its own connection to the store: the MQTT network thread keeps acknowledging
and the readers keep looking cards up (SQLite's WAL lets them read the old list until the
new one commits).  A refusal is reported once per reason and version, not once per
retained chunk replayed on every reconnect, and a refusal that only a fresh update can mend
(``wrong_base``, ``hash_mismatch``) makes the gate ask for one, at most every
``request_every_s``.
"""

from __future__ import annotations

import json
import logging
import os
import queue
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Final

from edge.credentials import CardStore
from protocol.credentials import Assembler, CredentialListError, CredentialRejectReason
from protocol.events import CARDS_APPLIED, CARDS_REJECTED, CARDS_REQUESTED
from protocol.topics import (
    GateTopics,
    card_delta_topic,
    card_snapshot_filter,
    photo_digest_of_topic,
    photo_filter,
)

log = logging.getLogger(__name__)

MAX_PHOTO_BYTES: Final = 64 * 1024
_IMAGE_MAGIC: Final = (b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n")
_ASK_AGAIN_ON: Final = {CredentialRejectReason.WRONG_BASE, CredentialRejectReason.HASH_MISMATCH}
_QUIET: Final = {CredentialRejectReason.OLDER, CredentialRejectReason.CHUNK_MISSING}
_STOP: Final = object()

Record = Callable[[str, dict[str, Any]], object]
Publish = Callable[[str, bytes], bool]
Handler = Callable[[str, bytes], None]


class CardSync:
    """The gate's side of card-list delivery; ``subscriptions()`` is what the link subscribes to."""

    def __init__(
        self,
        store_path: Path,
        topics: GateTopics,
        record: Record,
        publish: Publish,
        *,
        request_every_s: float = 30.0,
    ) -> None:
        self.topics = topics
        self.store = CardStore(store_path)
        self.request_every_s = request_every_s
        self._record = record
        self._publish = publish
        self._assemblers = {"snapshot": Assembler(), "delta": Assembler(), "direct": Assembler()}
        self._queue: queue.SimpleQueue[tuple[str, bytes] | object] = queue.SimpleQueue()
        self._last_refusal: tuple[str, int] | None = None
        self._last_request = -float("inf")
        self._needs_update = self.store.state.version == 0
        self._thread = threading.Thread(target=self._run, name="card-sync", daemon=True)
        self.applied = 0

    def subscriptions(self) -> list[tuple[str, Handler]]:
        return [
            (card_snapshot_filter(self.topics.site), self._enqueue("snapshot")),
            (card_delta_topic(self.topics.site), self._enqueue("delta")),
            (self.topics.cards, self._enqueue("direct")),
        ]

    def start(self) -> None:
        self._thread.start()

    def close(self, timeout: float = 5.0) -> None:
        self._queue.put(_STOP)
        if self._thread.is_alive():
            self._thread.join(timeout)
        self.store.close()

    def on_connected(self) -> None:
        """After every (re)connect: a gate with no list, or a list known to be off, asks at once."""
        if self._needs_update:
            self._queue.put(("request", b"connected"))

    # -- card chunks (network thread: enqueue only) ---------------------------------------

    def _enqueue(self, source: str) -> Handler:
        def handler(_topic: str, payload: bytes) -> None:
            if payload:  # an empty retained message clears an index the snapshot no longer uses
                self._queue.put((source, payload))

        return handler

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is _STOP:
                return
            assert isinstance(item, tuple)
            source, payload = item
            try:
                if source == "request":
                    self._request(payload.decode())
                else:
                    self._offer(source, payload)
            except Exception:  # a broken store or a bug must not end the sync thread
                log.exception("card sync failed on a %s message", source)

    def _offer(self, source: str, payload: bytes) -> None:
        try:
            update = self._assemblers[source].add(payload)
            if update is None:
                return
            before = self.store.state
            result = self.store.apply(update)
        except CredentialListError as exc:
            self._refused(source, exc)
            return
        if not result.changed:
            return
        self.applied += 1
        self._needs_update = False
        self._last_refusal = None
        state = result.state
        log.info(
            "card list %d -> %d (%s, %d cards) from %s", before.version, state.version, update.kind.name.lower(),
            state.count, source,
        )  # fmt: skip
        self._record(
            CARDS_APPLIED,
            {
                "version": state.version,
                "previous": before.version,
                "hash": state.hash,
                "count": state.count,
                "kind": update.kind.name.lower(),
                "source": source,
            },
        )

    def _refused(self, source: str, exc: CredentialListError) -> None:
        if exc.reason in _QUIET:
            log.debug("card chunk from %s ignored: %s", source, exc)
            return
        key = (exc.reason.value, self.store.state.version)
        if key != self._last_refusal:
            self._last_refusal = key
            log.warning("card update from %s refused: %s", source, exc)
            self._record(
                CARDS_REJECTED,
                {"reason": exc.reason.value, "detail": exc.detail[:200], "source": source, "held": key[1]},
            )
        if exc.reason in _ASK_AGAIN_ON:
            self._needs_update = True
            self._request(exc.reason.value)

    def _request(self, reason: str) -> None:
        now = time.monotonic()
        if now - self._last_request < self.request_every_s:
            return
        self._last_request = now
        state = self.store.state
        # After a hash mismatch the gate's own copy is suspect: ask for a snapshot, not a delta.
        version = None if reason == CredentialRejectReason.HASH_MISMATCH.value else state.version
        body = {"version": version, "hash": state.hash, "count": state.count, "reason": reason}
        sent = self._publish(self.topics.cards_request, json.dumps(body).encode())
        log.info(
            "asked the console for a card-list update (%s): %s", reason, "sent" if sent else "not connected"
        )
        self._record(CARDS_REQUESTED, {**body, "sent": sent})


class ThumbnailStore:
    """Holder thumbnails from the console, in the folder the guard screen shows them from."""

    def __init__(self, photo_dir: Path, site: str) -> None:
        self.photo_dir = photo_dir
        self.site = site
        photo_dir.mkdir(parents=True, exist_ok=True)

    def subscriptions(self) -> list[tuple[str, Handler]]:
        return [(photo_filter(self.site), self.on_photo)]

    def path(self, digest_hex: str) -> Path:
        return self.photo_dir / f"{digest_hex}.jpg"

    def on_photo(self, topic: str, payload: bytes) -> None:
        """Keep a holder's thumbnail where the guard screen looks, named by its digest.

        The broker lets only the console write photo topics, so the image is taken on
        that authority; it is still checked to be a small JPEG or PNG, and written by
        rename so that the guard screen never shows half a file.  An empty retained
        message (the console removed the photo) deletes it.
        """
        digest = photo_digest_of_topic(topic)
        if digest is None:
            log.warning("photo on %r ignored: not named by a digest", topic[:120])
            return
        target = self.path(digest)
        if not payload:
            target.unlink(missing_ok=True)
            return
        if len(payload) > MAX_PHOTO_BYTES or not payload.startswith(_IMAGE_MAGIC):
            log.warning("photo %s ignored: %d bytes, not a small JPEG or PNG", digest, len(payload))
            return
        temporary = target.with_suffix(".part")
        temporary.write_bytes(payload)
        os.replace(temporary, target)
