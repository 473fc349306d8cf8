"""``gatepost edge run`` speaking systemd's notify protocol, as a process, to a socket the test owns.

READY must come with the door working and no broker in the world; the watchdog pings
must come at half the period with the backlog in STATUS; and a thread that stops making
progress must stop them.  The wedge comes from outside, as on a gate: another process
holds the outbox database's write lock (an SD card that stops answering looks the same
to the agent), so the outbox writer cannot commit and a reader's thread that presents a
credential blocks in the commit.
"""

from __future__ import annotations

import itertools
import os
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from simulator.scanner import VirtualScanner
from simulator.service import NotifySocket
from tests.edge.service_support import GRANTED, child_env, write_gate_config
from tests.waiting import wait_until

WATCHDOG_S = 2.0


@pytest.fixture
def scanner(tmp_path: Path) -> Iterator[VirtualScanner]:
    device = VirtualScanner(tmp_path / "dev" / "scanner", pace=False)
    yield device
    device.close()


@pytest.fixture
def notify() -> Iterator[NotifySocket]:
    with NotifySocket() as listener:
        yield listener


def start_gate(config: Path, notify: NotifySocket, log: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, **child_env(), "NOTIFY_SOCKET": notify.address}
    env["WATCHDOG_USEC"] = str(int(WATCHDOG_S * 1e6))
    with open(log, "wb") as output:
        return subprocess.Popen(
            [sys.executable, "-m", "gatepost", "edge", "run", "--config", str(config)],
            env=env,
            stdout=output,
            stderr=subprocess.STDOUT,
        )


def backlog(status: str) -> int:
    return int(status.split("backlog ", 1)[1].split(";", 1)[0])


def stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)


def test_ready_without_a_broker_then_pings_with_the_backlog(tmp_path, scanner, notify):
    config = write_gate_config(tmp_path / "gate", scanner.link_path)
    gate = start_gate(config, notify, tmp_path / "gate.log")
    try:
        ready = notify.wait_for("READY", "1", timeout=30)
        assert ready is not None, (tmp_path / "gate.log").read_text()
        assert ready.pid == gate.pid  # the main process itself: NotifyAccess=main accepts it
        assert "broker disconnected" in ready.fields["STATUS"]  # no broker exists at all
        connected = wait_until(
            lambda: [m for m in notify.with_key("STATUS") if "scanner connected" in m.fields["STATUS"]],
            timeout=10,
        )
        assert connected  # READY does not wait for the scanner's port; typing before it opens is lost
        first = backlog(connected[-1].fields["STATUS"])

        scanner.type(GRANTED)
        scanner.type("SOMEONE-ELSE")
        grown = wait_until(
            lambda: [
                m
                for m in notify.with_key("WATCHDOG", after=ready.at)
                if backlog(m.fields["STATUS"]) >= first + 2
            ],
            timeout=10,
        )
        assert grown, [m.fields for m in notify.messages]
        assert "readers: scanner connected" in grown[0].fields["STATUS"]

        pings = wait_until(lambda: len(notify.with_key("WATCHDOG", after=ready.at)) >= 4, timeout=10)
        assert pings
        times = [m.at for m in notify.with_key("WATCHDOG", after=ready.at)]
        gaps = [b - a for a, b in itertools.pairwise(times)]
        assert max(gaps) < WATCHDOG_S, gaps  # at half the period, never as late as the period

        before_stop = time.monotonic()
        gate.terminate()
        assert gate.wait(15) == 0
        assert notify.wait_for("STOPPING", "1", after=before_stop, timeout=5) is not None
    finally:
        stop(gate)


@pytest.mark.slow
def test_a_wedged_outbox_stops_the_pings_and_they_resume_when_it_moves(tmp_path, scanner, notify):
    config = write_gate_config(tmp_path / "gate", scanner.link_path)
    gate = start_gate(config, notify, tmp_path / "gate.log")
    holder = sqlite3.connect(tmp_path / "gate" / "outbox.db", isolation_level=None, timeout=10)
    try:
        ready = notify.wait_for("READY", "1", timeout=30)
        assert ready is not None, (tmp_path / "gate.log").read_text()
        assert wait_until(
            lambda: [m for m in notify.with_key("WATCHDOG") if "scanner connected" in m.fields["STATUS"]],
            timeout=10,
        )

        holder.execute("BEGIN EXCLUSIVE")  # another process holds the outbox's write lock
        wedged_at = time.monotonic()
        scanner.type(GRANTED)  # the reader's thread decides, opens, then blocks taking the event

        wedged = wait_until(
            lambda: [m for m in notify.with_key("STATUS", after=wedged_at) if "WEDGED" in m.fields["STATUS"]],
            timeout=3 * WATCHDOG_S,
        )
        assert wedged, [m.fields for m in notify.messages]
        # The decision path is seen wedged at once; the writer at its next probe (half a period).
        both = wait_until(
            lambda: [
                m
                for m in notify.with_key("STATUS", after=wedged_at)
                if "outbox-writer" in m.fields["STATUS"] and "decision" in m.fields["STATUS"]
            ],
            timeout=2 * WATCHDOG_S,
        )
        assert both, [m.fields["STATUS"] for m in notify.with_key("STATUS", after=wedged_at)]
        # From then on no ping: systemd kills it once WatchdogSec has passed without one.
        time.sleep(WATCHDOG_S * 1.5)
        late_pings = notify.with_key("WATCHDOG", after=wedged[0].at)
        assert late_pings == [], [m.fields for m in late_pings]

        holder.execute("ROLLBACK")  # the disk answers again
        released_at = time.monotonic()
        resumed = notify.wait_for("WATCHDOG", "1", after=released_at, timeout=10)
        assert resumed is not None
        assert "WEDGED" not in resumed.fields["STATUS"]
    finally:
        holder.close()
        stop(gate)
