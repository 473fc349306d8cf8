"""A gate agent with its guard screen on a free port, a mock-pin door and the network down.

Browser tests use the shared ``browser_page`` fixture of tests/conftest.py.
"""

from __future__ import annotations

import io
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from gpiozero.pins.mock import MockFactory

from edge.agent import GateAgent, Presented
from edge.config import EdgeConfig
from edge.guard.pin import hash_pin
from protocol import decode_event
from protocol.passes import photo_digest
from simulator.door import DoorModel

PIN = "246813"
PIN_HASH = hash_pin(PIN, n=2**12)  # cheaper than the default: tests check hundreds of PINs
PINS = {
    "relay": "GPIO17",
    "contact": "GPIO27",
    "exit_button": "GPIO22",
    "tamper": "GPIO23",
    "green": "GPIO24",
    "red": "GPIO25",
}
RESIDENT_CARD = "wiegand26:13:1001"


def portrait_jpeg() -> bytes:
    """A plain head-and-shoulders silhouette: a stand-in for a holder's thumbnail."""
    from PIL import Image, ImageDraw

    image = Image.new("RGB", (240, 300), (176, 190, 197))
    draw = ImageDraw.Draw(image)
    draw.ellipse((70, 40, 170, 150), fill=(69, 90, 100))
    draw.ellipse((30, 160, 210, 380), fill=(69, 90, 100))
    out = io.BytesIO()
    image.save(out, "JPEG", quality=85)
    return out.getvalue()


class GuardGate:
    """One gate with ``[guard_screen]`` enabled; ``events()`` reads its outbox."""

    def __init__(
        self,
        tmp_path: Path,
        *,
        door: bool = True,
        mqtt: dict[str, Any] | None = None,
        cards: list[Any] | None = None,
        extra: dict[str, Any] | None = None,
        idle_s: float = 30,
    ) -> None:
        self.tmp_path = tmp_path
        self.photo_dir = tmp_path / "photos"
        self.photo_dir.mkdir(parents=True, exist_ok=True)
        self.photo = portrait_jpeg()
        self.photo_hex = photo_digest(self.photo).hex()
        (self.photo_dir / f"{self.photo_hex}.jpg").write_bytes(self.photo)
        raw: dict[str, Any] = {
            "site": "longtan",
            "gate": "north",
            "mqtt": mqtt or {"host": "127.0.0.1", "port": 9},  # nothing listens: the network is down
            "outbox": {"path": str(tmp_path / "outbox.db")},
            "access": {"allow": ["104729", "wiegand26:13:2002"], "repeat_s": 0},
            "clock": {"trust": "trusted"},
            "guard_screen": {
                "enabled": True,
                "listen": "127.0.0.1:0",
                "pin_hash": PIN_HASH,
                "photo_dir": str(self.photo_dir),
                "visitor_db": str(tmp_path / "visitors.db"),
                "idle_s": idle_s,
            },
        }
        self.factory: MockFactory | None = None
        if door:
            self.factory = MockFactory()
            raw["gpio"] = {"pin_factory": "mock"}
            raw["door"] = {"pins": PINS, "behaviour": {"unlock_s": 1.0, "max_unlock_s": 3.0}}
        if cards is not None:
            from console.credentials import CardRegistry
            from edge.credentials import CardStore

            registry = CardRegistry(tmp_path / "registry.db")
            registry.put(cards)
            store = CardStore(tmp_path / "cards.db")
            store.apply_snapshot_chunks(registry.snapshot())
            store.close()
            raw["cards"] = {"store": str(tmp_path / "cards.db"), "timezone": "Asia/Shanghai"}
        raw.update(extra or {})
        self.config = EdgeConfig.model_validate(raw)
        self.agent = GateAgent(self.config, pin_factory=self.factory)
        self.door = DoorModel(self.factory, self.config.door.pins) if door and self.config.door else None
        self.agent.start()
        self.screen = self.agent.guard
        assert self.screen is not None and self.screen.url is not None
        self.url = self.screen.url.rstrip("/")

    def scan(
        self, code: str, *, kind: str = "pass", reader: str = "scanner", direction: str | None = None
    ) -> Any:
        return self.agent.present(
            Presented(code, kind, reader, time.monotonic_ns(), code, None, direction)  # type: ignore[arg-type]
        )

    def events(self, event_type: str | None = None) -> list[Any]:
        events = [decode_event(row.body) for row in self.agent.outbox.pending(limit=10_000)]
        return [e for e in events if event_type is None or e.type == event_type]

    def post(self, path: str, body: Any) -> httpx.Response:
        return httpx.post(f"{self.url}{path}", json=body, timeout=10)

    def close(self) -> None:
        self.agent.stop(drain_s=0)


@pytest.fixture
def guard_gate(tmp_path: Path) -> Iterator[GuardGate]:
    gate = GuardGate(tmp_path)
    try:
        yield gate
    finally:
        gate.close()


class SseReader:
    """Reads ``event:``/``data:`` blocks from the guard screen's stream on the real server."""

    def __init__(self, url: str) -> None:
        self._client = httpx.Client(timeout=httpx.Timeout(10.0))
        self._cm = self._client.stream("GET", f"{url}/events")
        self.response = self._cm.__enter__()
        self._lines = self.response.iter_lines()

    def next(self, kind: str | None = None) -> tuple[str, dict[str, Any]]:
        event = ""
        for line in self._lines:
            if line.startswith("event: "):
                event = line[7:]
            elif line.startswith("data: "):
                data = json.loads(line[6:])
                if kind is None or event == kind:
                    return event, data
        raise AssertionError("stream ended")

    def close(self) -> None:
        self._cm.__exit__(None, None, None)
        self._client.close()
