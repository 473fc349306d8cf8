"""The card publisher's thumbnail round, without a broker: what it publishes, and when it lists the folder.

tests/e2e/test_card_delivery.py takes thumbnails to a gate over a real mosquitto; here the
publisher's client only records, so a round can be run step by step.
"""

from __future__ import annotations

import io
import os
import time
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from console.card_sync import CardPublisher
from console.credentials import CardRegistry
from console.thumbnails import save_thumbnail
from protocol.mqtt import BrokerEndpoint
from protocol.topics import photo_topic

SITE = "longtan"


def picture(colour: tuple[int, int, int]) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (300, 400), colour).save(out, "PNG")
    return out.getvalue()


def settle(path: Path, seconds_ago: float = 60.0) -> None:
    """Date ``path`` back, as a folder and files last changed a minute ago would be."""
    past = time.time_ns() - int(seconds_ago * 1e9)
    os.utime(path, ns=(past, past))


class Rounds:
    """A publisher that never connects: its publishes and its folder listings are counted."""

    def __init__(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        self.thumbs = tmp_path / "thumbs"
        self.thumbs.mkdir()
        endpoint = BrokerEndpoint("127.0.0.1", 9)
        self.publisher = CardPublisher(
            endpoint, CardRegistry(tmp_path / "registry.db"), SITE, thumbnails=self.thumbs
        )
        self.published: list[tuple[str, bytes]] = []
        self.listings = 0
        monkeypatch.setattr(self.publisher._client, "publish", self._publish)
        glob = Path.glob

        def counting_glob(path: Path, pattern: str) -> Any:
            if path == self.thumbs:
                self.listings += 1
            return glob(path, pattern)

        monkeypatch.setattr(Path, "glob", counting_glob)

    def _publish(self, topic: str, payload: bytes, qos: int, retain: bool) -> None:
        assert retain
        self.published.append((topic, payload))

    def run(self) -> list[tuple[str, bytes]]:
        """One round; what it published."""
        self.published.clear()
        self.publisher._publish_photos()
        return list(self.published)


@pytest.fixture
def rounds(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Rounds:
    return Rounds(tmp_path, monkeypatch)


def test_an_unchanged_folder_is_not_listed_again(rounds: Rounds):
    digests = [save_thumbnail(rounds.thumbs, picture(colour)) for colour in ((200, 0, 0), (0, 200, 0))]
    settle(rounds.thumbs)
    first = rounds.run()
    assert sorted(topic for topic, _ in first) == sorted(photo_topic(SITE, d) for d in digests)
    assert rounds.listings == 1
    for _ in range(3):
        assert rounds.run() == []
    assert rounds.listings == 1


def test_a_replaced_thumbnail_is_published_again(rounds: Rounds):
    digest = save_thumbnail(rounds.thumbs, picture((0, 0, 200)))
    target = rounds.thumbs / f"{digest}.jpg"
    settle(target)
    settle(rounds.thumbs)
    assert len(rounds.run()) == 1
    assert rounds.run() == []
    replacement = rounds.thumbs / f"{digest}.part"  # as save_thumbnail writes: a file, then a rename
    replacement.write_bytes(b"\xff\xd8 a better crop")
    os.replace(replacement, target)
    assert rounds.run() == [(photo_topic(SITE, digest), b"\xff\xd8 a better crop")]


def test_a_folder_changed_just_before_a_listing_is_listed_again(rounds: Rounds):
    """A file renamed in within the timestamp granularity of the listing would leave the mtime as it was."""
    save_thumbnail(rounds.thumbs, picture((9, 9, 9)))  # the folder's mtime is now
    assert len(rounds.run()) == 1
    assert rounds.run() == [] and rounds.listings == 2
    settle(rounds.thumbs)
    assert rounds.run() == [] and rounds.listings == 3
    assert rounds.run() == [] and rounds.listings == 3


def test_a_removed_thumbnail_is_cleared(rounds: Rounds):
    digest = save_thumbnail(rounds.thumbs, picture((1, 2, 3)))
    settle(rounds.thumbs)
    rounds.run()
    (rounds.thumbs / f"{digest}.jpg").unlink()
    assert rounds.run() == [(photo_topic(SITE, digest), b"")]


def test_a_site_with_no_cards_yet_still_gets_its_thumbnails(rounds: Rounds):
    """A new site issues passes with photos before it has any door card (the demo does).

    The registry is at version 0, which no list chunk may carry; the round used to fail
    there, every second, with a traceback, before it reached the thumbnails.
    """
    digest = save_thumbnail(rounds.thumbs, picture((10, 120, 10)))
    settle(rounds.thumbs)
    rounds.publisher._publish_changes()  # nothing to send, and no error
    assert rounds.run() == [(photo_topic(SITE, digest), (rounds.thumbs / f"{digest}.jpg").read_bytes())]
