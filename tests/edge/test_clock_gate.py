"""The clock at a real gate agent: a power cut, a boot behind its own past, NTP, and the events that say so.

The agent builds its clock as in production — the newest stored event as the floor, the
anchor file beside the outbox, events for every change of trust — on time sources the
test drives (``FakeTime``), so the gate's whole life fits in a test.
"""

from __future__ import annotations

import functools
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

import edge.agent
from edge.agent import GateAgent, Presented
from edge.clock import Clock
from edge.config import EdgeConfig
from protocol import decode_event

from .clock_support import FakeTime

ALLOWED = "104729000001"
T = datetime(2026, 3, 2, 7, 30, tzinfo=UTC)


def gate(tmp_path: Path) -> GateAgent:
    config = EdgeConfig.model_validate(
        {
            "site": "longtan",
            "gate": "north",
            "mqtt": {"host": "127.0.0.1", "port": 9},  # the network is down
            "outbox": {"path": str(tmp_path / "outbox.db")},
            "access": {"allow": [ALLOWED], "repeat_s": 0},
        }
    )
    agent = GateAgent(config)
    agent.start()
    return agent


def events(agent: GateAgent) -> list[Any]:
    return [decode_event(row.body) for row in agent.outbox.pending(limit=10_000)]


def scan(agent: GateAgent) -> Any:
    agent.present(Presented(ALLOWED, "card", "reader", time.monotonic_ns(), ALLOWED))
    return [e for e in events(agent) if e.type == "access.scan"][-1]


def test_a_gate_rebooted_behind_its_own_past_earns_trust_back_from_ntp(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    fake = FakeTime(T)
    fake.synchronise()
    sources = {
        "synchronised": fake.kernel,
        "wall": fake.wall,
        "monotonic": fake.mono,
        "boot_id": fake.boot_id,
    }
    monkeypatch.setattr(edge.agent, "Clock", functools.partial(Clock, recheck_s=0.0, **sources))

    first = gate(tmp_path)
    try:
        fake.advance(120)
        before = scan(first)
        assert before.clock_trusted and before.time == T + timedelta(seconds=120)
    finally:
        first.stop(drain_s=0)
    assert (tmp_path / "outbox.clock.json").is_file()

    fake.advance(60)
    fake.reboot(T - timedelta(hours=1))  # power cut; fake-hwclock saved an hour before it
    second = gate(tmp_path)
    try:
        started = [e for e in events(second) if e.type in ("agent.started", "clock.untrusted")][-2:]
        assert [e.type for e in started] == ["agent.started", "clock.untrusted"]
        assert started[0].data["clock_trusted"] is False and not started[0].clock_trusted
        fake.advance(10)
        during = scan(second)
        assert during.clock_trusted is False
        assert during.time > before.time  # the lower bound, not the wall clock's hour-old time

        fake.synchronise(T + timedelta(minutes=10))  # NTP reaches the console
        after = scan(second)
        assert after.clock_trusted is True and after.time == T + timedelta(minutes=10)
        regained = [e for e in events(second) if e.type == "clock.trusted"]
        assert len(regained) == 1 and regained[0].clock_trusted
        status = second._status_command(None)  # type: ignore[arg-type]
        assert status["clock_trusted"] is True
    finally:
        second.stop(drain_s=0)
