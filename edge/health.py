"""The gate's retained health message: its vital signs where the console can see them.

Every ``interval_s`` (a minute by default), and within a second of a change of state —
online/degraded, the clock's trust, a reader coming or going, a reconnect — the agent
publishes a :class:`~protocol.GateHealth`, retained, on ``gatepost/v1/<site>/<gate>/health``.
Retained, so a console that starts (or reconnects) gets every gate's latest at once
without asking; sent on change, so a card filling up or a degraded disk is seen in
seconds, not at the next minute.  It travels beside the outbox, not through it: health
is a state, not an event, and a stale one is worth nothing.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from protocol import GateHealth, GateState, encode

if TYPE_CHECKING:
    from edge.agent import GateAgent

log = logging.getLogger("gatepost.edge.health")

CHECK_S = 1.0
"""How often the cheap part of the state is compared with what was last sent."""


def memory() -> tuple[int | None, int | None]:
    """``(available, total)`` bytes from ``/proc/meminfo``; ``None`` where it cannot be read."""
    values: dict[str, int] = {}
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                key, _, rest = line.partition(":")
                if key in ("MemAvailable", "MemTotal"):
                    values[key] = int(rest.split()[0]) * 1024
    except (OSError, ValueError, IndexError):
        return None, None
    return values.get("MemAvailable"), values.get("MemTotal")


def disk(path: Path) -> tuple[int | None, int | None]:
    """``(free, total)`` bytes of the filesystem holding ``path`` (its nearest existing folder)."""
    probe = path
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    try:
        stats = os.statvfs(probe)
    except OSError:
        return None, None
    return stats.f_bavail * stats.f_frsize, stats.f_blocks * stats.f_frsize


def load() -> float | None:
    try:
        return os.getloadavg()[0]
    except OSError:
        return None


class HealthReporter:
    """Publishes one agent's health through its link; :meth:`poke` sends at once."""

    def __init__(self, agent: GateAgent, interval_s: float) -> None:
        self.agent = agent
        self.interval_s = interval_s
        self.topic = agent.topics.health
        self.published = 0
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._sent_key: tuple[Any, ...] | None = None
        self._sent_at = 0.0
        self._thread = threading.Thread(target=self._run, name="gate-health", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread.is_alive():
            self._thread.join(5)

    def poke(self) -> None:
        """Something changed (a reconnect, the disk): publish now rather than at the next check."""
        self._sent_key = None
        self._wake.set()

    def snapshot(self) -> GateHealth:
        agent = self.agent
        outbox = agent.outbox
        oldest = outbox.oldest_pending_time()
        available, total = memory()
        free, size = disk(outbox.path)
        return GateHealth(
            site=agent.config.site,
            gate=agent.config.gate,
            boot=outbox.boot,
            time=datetime.now(UTC),
            version=agent.version[:32],
            state=GateState.DEGRADED if outbox.degraded is not None else GateState.ONLINE,
            load_1m=load(),
            memory_available_bytes=available,
            memory_total_bytes=total,
            disk_free_bytes=free,
            disk_total_bytes=size,
            backlog=outbox.backlog,
            oldest_unacked_s=max(0.0, (datetime.now(UTC) - oldest).total_seconds()) if oldest else None,
            resends=agent.link.resent,
            clock_trusted=agent.clock.now().trusted,
            degraded=outbox.degraded is not None,
            held=outbox.held,
            outbox_error=outbox.degraded,
            readers={name[:32]: state[:32] for name, state in list(agent.reader_states.items())[:64]},
        )

    def _key(self) -> tuple[Any, ...]:
        agent = self.agent
        return (
            agent.outbox.degraded is not None,
            agent.clock.now().trusted,
            tuple(sorted(agent.reader_states.items())),
        )

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(CHECK_S)
            self._wake.clear()
            if self._stop.is_set() or not self.agent.link.connected:
                continue
            try:
                key = self._key()
                if key == self._sent_key and time.monotonic() - self._sent_at < self.interval_s:
                    continue
                if self.agent.link.publish(self.topic, encode(self.snapshot()), retain=True):
                    self._sent_key, self._sent_at = key, time.monotonic()
                    self.published += 1
            except Exception:  # a health message must never take the agent down
                log.exception("could not publish the gate's health")
