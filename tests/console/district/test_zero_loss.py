"""Zero loss end to end: ``gatepost console run`` ingesting from the site broker and feeding a second
mosquitto as the district broker; the district broker is killed (-9) and restarted mid-stream, and so
is the console.  Every stored event reaches the district subscriber; repeats are exact and counted."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from console.store import EventStore
from protocol import GateTopics, encode
from tests.console.district.district_support import DistrictBroker, DistrictSubscriber
from tests.waiting import wait_until

ROOT = Path(__file__).resolve().parents[3]
TOTAL = 3000

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]


def start_console(config: Path, log: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "gatepost", "console", "run", "--config", str(config)],
        stdout=log.open("a"),
        stderr=subprocess.STDOUT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )


def sent(store: EventStore) -> int:
    rows = store.db.query("SELECT sent FROM district_cursor WHERE name = 'mqtt'")
    return int(rows[0][0]) if rows else 0


def test_every_event_reaches_the_district_through_broker_and_console_kills(
    tmp_path, broker, unique_name, mqtt_client_factory, make_events
):
    site = unique_name
    district = DistrictBroker(tmp_path / "district")
    try:
        creds = broker.add_console("console")
        (tmp_path / "console.secret").write_text(creds.password)
        feed = district.feed
        db = tmp_path / "events.db"
        config = tmp_path / "console.toml"
        config.write_text(
            f'site = "{site}"\n[mqtt]\nhost = "{broker.host}"\nport = {broker.port}\n'
            f'username = "{creds.username}"\npassword_file = "console.secret"\n'
            f'[store]\npath = "{db}"\n[web]\nenabled = false\n[metrics]\nlisten = ""\n'
            f'[district]\nname = "compound"\nbatch = 200\n[district.privacy]\ndrop = ["holder"]\n'
            f'[district.mqtt]\nhost = "{district.broker.host}"\nport = {district.broker.tls_port}\n'
            f'username = "{feed.username}"\ntls_ca = "{feed.tls_ca}"\ntls_cert = "{feed.tls_cert}"\n'
            f'tls_key = "{feed.tls_key}"\n'
        )
        subscriber = DistrictSubscriber(district.broker.endpoint(district.reader)).start()
        district.save_sessions()  # the district's own subscription is durable (its side of the contract)
        log = tmp_path / "console.log"
        proc = start_console(config, log)
        watcher = mqtt_client_factory(creds, "watch")  # the console is subscribed before the gate sends
        watcher.subscribe(f"gatepost/v1/{site}/$console/status")
        assert wait_until(lambda: (m := watcher.get(0.5)) is not None and b'"online"' in m.payload, 60)
        gate = mqtt_client_factory(broker.add_gate(site, "north"))
        events = make_events(site, "north", range(1, TOTAL + 1))
        topic = GateTopics(site, "north").event

        def publish() -> None:
            for event in events:
                gate.client.publish(topic, encode(event), qos=1)
                time.sleep(0.004)

        sender = threading.Thread(target=publish, daemon=True)
        sender.start()
        assert wait_until(lambda: subscriber.distinct() >= 500, 60), subscriber.distinct()
        subscriber.pause()  # the district's consumer is away: its broker queues, acknowledges, saves later
        with EventStore(db, readonly=True) as store:
            paused_at = sent(store)
            assert wait_until(lambda: sent(store) >= paused_at + 300, 60)
        district.kill()  # the district broker dies holding acknowledged, unsaved records
        time.sleep(1.0)
        district.start()
        subscriber.resume()
        assert wait_until(lambda: subscriber.distinct() >= 1500, 60), subscriber.distinct()
        proc.send_signal(signal.SIGKILL)  # the console dies mid-round; it restarts from its cursor
        proc.wait(10)
        proc = start_console(config, log)
        sender.join(120)
        with EventStore(db, readonly=True) as store:
            assert wait_until(lambda: store.stats().total_events == TOTAL, 90), store.stats().total_events
        assert wait_until(lambda: subscriber.distinct() == TOTAL, 120), subscriber.distinct()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
        subscriber.stop()
    finally:
        if "proc" in locals() and proc.poll() is None:
            proc.kill()
            proc.wait(10)
        district.stop()
    output = log.read_text()
    assert "Traceback" not in output, output[-3000:]
    with EventStore(db, readonly=True) as store:
        stored = {e.id for e in store.events_after(0, TOTAL + 10)}
    received = {r["id"] for r in subscriber.records if r["kind"] == "event"}
    assert stored == received and len(stored) == TOTAL
    assert not subscriber.inexact_repeats()
    assert all("holder" not in r["data"] for r in subscriber.records)
    print(f"district: {TOTAL} distinct, {subscriber.repeats()} exact repeats")
