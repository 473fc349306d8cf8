"""``gatepost console run`` speaking systemd's notify protocol to a socket the test owns.

READY once the store is open and ingest is trying; pings while the ingest writer and the
web server make progress; none while another process holds the store's write lock with
events waiting (the writer is stuck inside one commit); STOPPING on SIGTERM.
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from broker.launcher import free_port
from console.store import EventStore
from protocol import GateTopics, encode
from simulator.service import NotifySocket
from tests.waiting import wait_until

ROOT = Path(__file__).resolve().parents[2]
WATCHDOG_S = 2.0


@pytest.fixture
def notify() -> Iterator[NotifySocket]:
    with NotifySocket() as listener:
        yield listener


def start_console(tmp_path: Path, broker, notify: NotifySocket) -> tuple[subprocess.Popen[bytes], Path]:
    creds = broker.add_console("console")
    secret = tmp_path / "console.secret"
    secret.write_text(creds.password)
    db = tmp_path / "store" / "events.db"
    config = tmp_path / "console.toml"
    config.write_text(
        f'[mqtt]\nhost = "{broker.host}"\nport = {broker.port}\nusername = "{creds.username}"\n'
        f'password_file = "console.secret"\n[store]\npath = "{db}"\n'
        f'[web]\nenabled = true\nlisten = "127.0.0.1:{free_port()}"\n'
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT), "NOTIFY_SOCKET": notify.address}
    env["WATCHDOG_USEC"] = str(int(WATCHDOG_S * 1e6))
    with open(tmp_path / "console.log", "wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "gatepost", "console", "run", "--config", str(config)],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    return process, db


def stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)


def test_console_ready_pings_and_stopping(tmp_path, broker, notify):
    console, _db = start_console(tmp_path, broker, notify)
    try:
        ready = notify.wait_for("READY", "1", timeout=60)
        assert ready is not None, (tmp_path / "console.log").read_text()
        assert ready.pid == console.pid
        subscribed = notify.wait_for("WATCHDOG", "1", after=ready.at, timeout=10)
        assert subscribed is not None
        assert wait_until(
            lambda: any("broker subscribed" in m.fields["STATUS"] for m in notify.with_key("WATCHDOG")), 10
        )
        stopping_at = time.monotonic()
        console.terminate()
        assert console.wait(20) == 0
        assert notify.wait_for("STOPPING", "1", after=stopping_at, timeout=5) is not None
    finally:
        stop(console)


@pytest.mark.slow
def test_a_store_that_stops_answering_stops_the_console_pings(
    tmp_path, broker, notify, unique_name, mqtt_client_factory, make_events
):
    console, db = start_console(tmp_path, broker, notify)
    try:
        ready = notify.wait_for("READY", "1", timeout=60)
        assert ready is not None, (tmp_path / "console.log").read_text()
        assert wait_until(
            lambda: any("broker subscribed" in m.fields["STATUS"] for m in notify.with_key("WATCHDOG")), 10
        )
        holder = sqlite3.connect(db, isolation_level=None, timeout=10)
        try:
            holder.execute("BEGIN EXCLUSIVE")
            held_at = time.monotonic()
            gate = mqtt_client_factory(broker.add_gate(unique_name, "north"))
            topic = GateTopics(unique_name, "north").event
            for event in make_events(unique_name, "north", range(1, 21), boot=uuid.uuid4().hex):
                gate.client.publish(topic, encode(event), qos=1)
            wedged = wait_until(
                lambda: [
                    m for m in notify.with_key("STATUS", after=held_at) if "WEDGED" in m.fields["STATUS"]
                ],
                timeout=4 * WATCHDOG_S,
            )
            assert wedged, [m.fields for m in notify.messages]
            assert "ingest-writer" in wedged[0].fields["STATUS"]
            time.sleep(WATCHDOG_S)
            assert notify.with_key("WATCHDOG", after=wedged[0].at) == []
        finally:
            holder.execute("ROLLBACK")
            holder.close()
        released_at = time.monotonic()
        assert notify.wait_for("WATCHDOG", "1", after=released_at, timeout=15) is not None

        def stored() -> int:
            with EventStore(db, readonly=True) as store:
                return sum(g.count for g in store.stats().gates)

        assert wait_until(lambda: stored() == 20, timeout=20)
    finally:
        stop(console)
