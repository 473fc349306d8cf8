"""The push feed against a real district mosquitto: every stored event arrives, filtered, at least once."""

from __future__ import annotations

import threading
import time
import uuid
from datetime import UTC, datetime, timedelta

import pytest

from console.district.config import DistrictConfig
from console.district.cursor import Cursor
from console.district.mqtt_feed import MqttFeed
from console.district.runner import DistrictRunner
from console.store import EventStore
from protocol import Event
from tests.console.district.district_support import DistrictBroker, DistrictSubscriber
from tests.waiting import wait_until

pytestmark = pytest.mark.timeout(120)


def events(site: str, gate: str, seqs: range, *, holder: str = "Wang Fang") -> list[Event]:
    boot = uuid.uuid4().hex
    start = datetime.now(UTC) - timedelta(hours=1)
    return [
        Event(
            id=uuid.uuid4().hex,
            site=site,
            gate=gate,
            boot=boot,
            seq=seq,
            time=start + timedelta(seconds=seq),
            clock_trusted=True,
            type="access.scan" if seq % 5 else "door.forced",
            data={"holder": holder, "unit": "3-1201", "granted": True, "code": f"{seq:06d}"},
        )
        for seq in seqs
    ]


@pytest.fixture
def district(tmp_path):
    instance = DistrictBroker(tmp_path / "district")
    try:
        yield instance
    finally:
        instance.stop()


def runner_for(store: EventStore, district: DistrictBroker, **section: object) -> DistrictRunner:
    config = DistrictConfig.model_validate({"name": "compound", **section})
    return DistrictRunner(store, config, MqttFeed(district.feed_endpoint(), ack_timeout_s=5.0))


def test_records_arrive_once_with_privacy_and_the_cursor_is_durable(tmp_path, district, unique_name):
    store = EventStore(tmp_path / "events.db")
    reader = DistrictSubscriber(district.broker.endpoint(district.reader)).start()
    store.commit(events(unique_name, "north", range(1, 201)))
    runner = runner_for(store, district, privacy={"drop": ["holder"]}, replay_s=0).start()
    try:
        assert wait_until(lambda: reader.distinct() == 200, 30), reader.distinct()
    finally:
        runner.stop()
    record = reader.records[0]
    assert record["schema_version"] == 1 and record["kind"] == "event"
    assert "holder" not in record["data"] and record["data"]["unit"] == "3-1201"
    assert record["dropped"] == ["holder"]
    assert record["site"] == unique_name and record["console"] == "compound"
    position, _settled, sent = Cursor(store.db, "mqtt").load()
    assert position == max(r["cursor"] for r in reader.records) and sent == 200
    # a new runner (a console restarted) resumes after the cursor: with nothing to replay, nothing twice
    store.commit(events(unique_name, "north", range(201, 211)))
    runner = runner_for(store, district, privacy={"drop": ["holder"]}, replay_s=0).start()
    try:
        assert wait_until(lambda: reader.distinct() == 210, 30)
        time.sleep(0.5)
    finally:
        runner.stop()
        reader.stop()
    assert reader.repeats() == 0


def test_a_subset_and_flow_records(tmp_path, district, unique_name):
    store = EventStore(tmp_path / "events.db")
    reader = DistrictSubscriber(district.broker.endpoint(district.reader)).start()
    store.commit(events(unique_name, "north", range(1, 51)))
    runner = runner_for(store, district, select=["alarms", "flow"]).start()
    try:
        assert wait_until(lambda: reader.distinct() == 10 and reader.distinct("flow") >= 1, 30)
        time.sleep(0.3)
    finally:
        runner.stop()
        reader.stop()
    assert {r["type"] for r in reader.records if r["kind"] == "event"} == {"door.forced"}
    flows = [r for r in reader.records if r["kind"] == "flow"]
    total = {}
    for r in flows:  # the district keeps, per hour, the record with the most events
        if r["events"] >= total.get(r["id"], {"events": -1})["events"]:
            total[r["id"]] = r
    assert sum(r["entries"] for r in total.values()) == 40  # the 40 granted scans
    assert sum(r["events"] for r in total.values()) == 50


def test_nothing_is_lost_when_the_district_broker_is_killed_mid_stream(tmp_path, district, unique_name):
    """kill -9 the district broker while the console stores and feeds; every event arrives."""
    store = EventStore(tmp_path / "events.db")
    reader = DistrictSubscriber(district.broker.endpoint(district.reader)).start()
    district.save_sessions()
    runner = runner_for(store, district, batch=50).start()
    done = threading.Event()

    def ingest() -> None:
        for start in range(1, 3001, 50):
            store.commit(events(unique_name, "north", range(start, start + 50)))
            runner.poke()
            time.sleep(0.02)
        done.set()

    writer = threading.Thread(target=ingest, daemon=True)
    writer.start()
    try:
        assert wait_until(lambda: reader.distinct() > 300, 30)
        district.kill()
        time.sleep(1.5)
        district.start()
        assert done.wait(60)
        assert wait_until(lambda: reader.distinct() == 3000, 60), (
            reader.distinct(),
            runner.counters,
            runner.feed.connected,
        )
        time.sleep(0.5)
    finally:
        runner.stop()
        reader.stop()
    assert store.stats().total_events == 3000
    assert not reader.inexact_repeats()
    print(f"repeats after the district broker was killed: {reader.repeats()}")


def test_the_cursor_stays_behind_what_the_broker_refused(tmp_path, district, unique_name):
    """A PUBACK with a failure reason (not authorised) is not an acknowledgement: nothing moves."""
    from broker.control import DynsecControl

    with district.broker.provisioning.snapshot() as snapshot:
        admin = snapshot.admin.password
    with DynsecControl(district.broker.host, district.broker.port, admin) as control:
        control.execute(
            [{"command": "removeClientRole", "username": district.feed.username, "rolename": "district-feed"}]
        )
    store = EventStore(tmp_path / "events.db")
    reader = DistrictSubscriber(district.broker.endpoint(district.reader)).start()
    store.commit(events(unique_name, "north", range(1, 101)))
    runner = runner_for(store, district, replay_s=0).start()
    try:
        assert wait_until(lambda: runner.counters.failures >= 1 and runner.feed.refused >= 1, 30)
        assert Cursor(store.db, "mqtt").load()[0] == 0 and reader.distinct() == 0
        district._grant()
        assert wait_until(lambda: reader.distinct() == 100, 60), (reader.distinct(), runner.counters)
    finally:
        runner.stop()
        reader.stop()
    assert Cursor(store.db, "mqtt").load()[0] == max(r["cursor"] for r in reader.records)
