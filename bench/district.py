"""District export benchmark: does the feed keep up with ingest, how late is it, how fast is a pull page.

Measured in one run, each next to its comparison:

1. a backlog of gate events drained through a real site mosquitto by the console's ingestor
   while the district feed (console/district/) publishes to a second real mosquitto and a
   district subscriber counts records by id: the ingest rate, and the feed's rate over the
   same run → ``export_ratio_vs_ingest`` (target >= 0.9).  Then the same stored backlog fed
   again from cursor 0 by the batched feed → ``feed_only_per_s``, against the plain
   alternative, one PUBLISH waiting for its PUBACK before the next and the cursor written
   after each → ``naive_feed_per_s``;
2. the demo's evening-peak load (its three gates, a door and a camera at the peak of
   simulator.day.CompressedDay's profile for ``gatepost demo --rate 40``), events taken at
   that rate through the site broker and the console: from the console storing an event to
   the district subscriber holding it → ``export_lag_p99_s`` (target <= 2);
3. ``GET /api/v1/events?after=…&limit=1000`` through the web console's ASGI app (Starlette's
   TestClient: the middleware, token check, query and JSON, no TCP) at random cursors over
   1,000,000 stored events → ``api_page_p95_ms`` (target <= 200), against the same page by
   ``LIMIT 1000 OFFSET k`` at the same depths → ``offset_page_p95_ms``.

Usage: ``python bench/district.py [--quick] [--stored N]``.  ``--quick``: an 8,000-event backlog,
10 s of evening peak and 200,000 stored events (a page is read by the primary key, so its cost
grows with log n; the full run measures the 1,000,000 the target names); full: 100,000 events,
60 s, 1,000,000 stored.  SQLite store.
Prints a table, then one JSON line.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import random
import statistics
import sys
import tempfile
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import paho.mqtt.client as paho  # noqa: E402

from broker.control import DynsecControl  # noqa: E402
from broker.launcher import Broker  # noqa: E402
from console.district.config import DistrictConfig  # noqa: E402
from console.district.cursor import Cursor  # noqa: E402
from console.district.mqtt_feed import MqttFeed  # noqa: E402
from console.district.records import Privacy, encode  # noqa: E402
from console.district.runner import DistrictRunner  # noqa: E402
from console.store import EventStore  # noqa: E402
from protocol import Event, GateTopics  # noqa: E402
from protocol import encode as encode_event  # noqa: E402
from protocol.mqtt import QOS, BrokerEndpoint, connect_async, make_client  # noqa: E402

DEMO_POSTS = 5  # gatepost demo: gates north, east, south, door building-3, camera west


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q / 100 * len(ordered)))]


def district_broker(workdir: Path) -> tuple[Broker, BrokerEndpoint, BrokerEndpoint]:
    """The district's mosquitto, a feed account allowed ``district/#`` and a reader of it."""
    broker = Broker(workdir / "district")
    broker.start()
    feed = broker.add_console("benchfeed", workers=1)
    reader = broker.add_console("benchreader", workers=1)
    with broker.provisioning.snapshot() as snapshot:
        admin = snapshot.admin.password
    assert admin is not None
    with DynsecControl(broker.host, broker.port, admin) as control:
        control.execute(
            [
                {"command": "createRole", "rolename": "feed"},
                {
                    "command": "addRoleACL",
                    "rolename": "feed",
                    "acltype": "publishClientSend",
                    "topic": "district/#",
                    "allow": True,
                },
                {"command": "createRole", "rolename": "reader"},
                {
                    "command": "addRoleACL",
                    "rolename": "reader",
                    "acltype": "subscribePattern",
                    "topic": "district/#",
                    "allow": True,
                },
                {
                    "command": "addRoleACL",
                    "rolename": "reader",
                    "acltype": "publishClientReceive",
                    "topic": "district/#",
                    "allow": True,
                },
                {"command": "addClientRole", "username": feed.username, "rolename": "feed"},
                {"command": "addClientRole", "username": reader.username, "rolename": "reader"},
            ]
        )
    return broker, broker.endpoint(feed), broker.endpoint(reader)


class Counter:
    """The district: distinct ids and, per record, how long after the console stored it it arrived.

    In a process of its own, as the district's platform is: parsing every record in the
    console's process would take the console's CPU (and GIL) and slow the feed it measures.
    """

    def __init__(self, endpoint: BrokerEndpoint) -> None:
        context = multiprocessing.get_context("spawn")
        self._count = context.Value("i", 0)
        self._conn, child = context.Pipe()
        self._proc = context.Process(target=_count_records, args=(endpoint, child, self._count), daemon=True)
        self._proc.start()
        if not self._conn.poll(30) or self._conn.recv() != "ready":
            raise SystemExit("the district subscriber could not subscribe")

    def count(self) -> int:
        return int(self._count.value)

    def _ask(self, command: str) -> Any:
        self._conn.send(command)
        return self._conn.recv()

    def reset(self) -> None:
        self._ask("reset")

    @property
    def lags(self) -> list[float]:
        return list(self._ask("lags"))

    def close(self) -> None:
        self._ask("stop")
        self._proc.join(10)


def _count_records(endpoint: BrokerEndpoint, conn: Any, count: Any) -> None:
    ids: set[str] = set()
    lags: list[float] = []
    lock = threading.Lock()
    ready = threading.Event()

    def on_message(_c: paho.Client, _u: object, message: paho.MQTTMessage) -> None:
        now = time.time()
        for line in message.payload.split(b"\n"):
            record = json.loads(line)
            stored = datetime.fromisoformat(record["received_at"].replace("Z", "+00:00")).timestamp()
            with lock:
                ids.add(record["id"])
                lags.append(now - stored)
        count.value = len(ids)

    client = make_client(endpoint)
    client.on_connect = lambda c, *_a: c.subscribe("district/#", qos=QOS)
    client.on_subscribe = lambda *_a: ready.set()
    client.on_message = on_message
    connect_async(client, endpoint, clean_start=True, session_expiry_s=0)
    client.loop_start()
    ready.wait(20)
    conn.send("ready")
    while True:
        command = conn.recv()
        with lock:
            if command == "reset":
                ids.clear()
                lags.clear()
                count.value = 0
                conn.send(True)
            elif command == "lags":
                conn.send(list(lags))
            else:
                break
    client.disconnect()
    client.loop_stop()
    conn.send(True)


def events_for(site: str, gate: str, n: int, start: datetime) -> list[Event]:
    boot = uuid.uuid4().hex
    return [
        Event(
            id=uuid.uuid4().hex,
            site=site,
            gate=gate,
            boot=boot,
            seq=i + 1,
            time=start + timedelta(milliseconds=i),
            clock_trusted=True,
            type="access.scan",
            data={
                "holder": "Zhang Wei",
                "unit": "7-1102",
                "credential": "qr",
                "code": f"{i:06d}",
                "granted": True,
            },
        )
        for i in range(n)
    ]


def start_ingest(endpoint: BrokerEndpoint, store: EventStore, name: str, site: str) -> Any:
    from console.ingest import Ingestor

    ingestor = Ingestor(endpoint, store, name=name, site=site)
    ingestor.start()
    if not ingestor.wait_connected(60):
        raise SystemExit("the console's ingestor did not subscribe")
    return ingestor


def publish(
    site_broker: Broker, site: str, gates: int, events: list[list[Event]], per_s: float | None
) -> None:
    """Each gate's events at QoS 1 from its own client; ``per_s`` paces them (None: as fast as possible)."""
    clients = []
    for i in range(gates):
        creds = site_broker.add_gate(site, f"g{i}")
        endpoint = site_broker.endpoint(creds)
        client = make_client(endpoint)
        client.connect(endpoint.host, endpoint.port)
        client.loop_start()
        clients.append(client)
    began = time.perf_counter()
    total = 0
    infos = []
    for round_ in zip(*events, strict=True):
        for client, event in zip(clients, round_, strict=True):
            infos.append(
                client.publish(GateTopics(event.site, event.gate).event, encode_event(event), qos=QOS)
            )
            total += 1
            if per_s is not None:
                delay = began + total / per_s - time.perf_counter()
                if delay > 0:
                    time.sleep(delay)
    for info in infos:
        info.wait_for_publish(60)
    for client in clients:
        client.disconnect()
        client.loop_stop()


def wait(predicate: Any, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.01)
    return predicate()


def bench_ratio(
    workdir: Path, site_broker: Broker, feed_ep: BrokerEndpoint, counter: Counter, n: int
) -> dict[str, Any]:
    site = f"r{uuid.uuid4().hex[:6]}"
    store = EventStore(workdir / f"{site}.db")
    gates = 4
    start = datetime.now(UTC)
    backlog = [events_for(site, f"g{i}", n // gates, start) for i in range(gates)]
    console = site_broker.endpoint(site_broker.add_console(f"c{site}"))
    ingestor = start_ingest(console, store, f"c{site}", site)  # subscribed: the broker queues for it
    ingestor.stop()
    publish(site_broker, site, gates, backlog, None)
    config = DistrictConfig.model_validate({"name": "bench", "batch": 500, "replay_s": 0})
    runner = DistrictRunner(store, config, MqttFeed(feed_ep))
    counter.reset()
    runner.start()
    began = time.perf_counter()
    ingestor = start_ingest(console, store, f"c{site}", site)
    runner_poke = runner.poke
    ingestor.on_commit = lambda *_a: runner_poke()
    ingested_at = None
    while time.perf_counter() - began < 600:
        if ingested_at is None and store.stats().total_events >= n:
            ingested_at = time.perf_counter() - began
        if counter.count() >= n:
            break
        time.sleep(0.02)
    exported_at = time.perf_counter() - began
    ingestor.stop()
    runner.stop()
    if ingested_at is None or counter.count() < n:
        raise SystemExit(f"stored {store.stats().total_events}, exported {counter.count()} of {n}")
    # the feed alone, from cursor 0 over the stored backlog: batched, then one at a time
    Cursor(store.db, "mqtt").rewind(0)
    counter.reset()
    runner = DistrictRunner(store, config, MqttFeed(feed_ep)).start()
    t0 = time.perf_counter()
    wait(lambda: counter.count() >= n, 300)
    feed_only = n / (time.perf_counter() - t0)
    runner.stop()
    naive_n = min(n, 1500)
    privacy = Privacy(config.privacy)
    naive = make_client(feed_ep)
    naive.connect(feed_ep.host, feed_ep.port)
    naive.loop_start()
    cursor = Cursor(store.db, "naive")
    t0 = time.perf_counter()
    for event in store.events_after(0, naive_n):
        info = naive.publish(
            f"district/v1/naive/{event.site}/event", encode(privacy.record(event, "bench")), qos=QOS
        )
        info.wait_for_publish(30)
        cursor.save(event.row_id, event.row_id, 0)
    naive_rate = naive_n / (time.perf_counter() - t0)
    naive.disconnect()
    naive.loop_stop()
    store.close()
    return {
        "backlog": n,
        "ingest_per_s": round(n / ingested_at, 1),
        "export_per_s": round(n / exported_at, 1),
        "export_ratio_vs_ingest": round(ingested_at / exported_at, 3),
        "feed_only_per_s": round(feed_only, 1),
        "naive_feed_per_s": round(naive_rate, 1),
    }


def bench_lag(
    workdir: Path, site_broker: Broker, feed_ep: BrokerEndpoint, counter: Counter, seconds: float
) -> dict[str, Any]:
    from simulator.day import CompressedDay

    per_gate_per_min = CompressedDay(60.0, 40.0).peak_per_min()
    per_s = DEMO_POSTS * per_gate_per_min / 60
    site = f"l{uuid.uuid4().hex[:6]}"
    store = EventStore(workdir / f"{site}.db")
    n_each = int(per_s * seconds / DEMO_POSTS)
    console = site_broker.endpoint(site_broker.add_console(f"c{site}"))
    ingestor = start_ingest(console, store, f"c{site}", site)
    config = DistrictConfig.model_validate({"name": "bench", "replay_s": 0})
    runner = DistrictRunner(store, config, MqttFeed(feed_ep)).start()
    ingestor.on_commit = lambda *_a: runner.poke()
    time.sleep(1.0)
    counter.reset()
    publish(
        site_broker,
        site,
        DEMO_POSTS,
        [events_for(site, f"g{i}", n_each, datetime.now(UTC)) for i in range(DEMO_POSTS)],
        per_s,
    )
    total = n_each * DEMO_POSTS
    wait(lambda: counter.count() >= total, 60)
    ingestor.stop()
    runner.stop()
    store.close()
    lags = list(counter.lags)
    if counter.count() < total:
        raise SystemExit(f"evening peak: the district has {counter.count()} of {total}")
    return {
        "peak_per_s": round(per_s, 2),
        "peak_events": total,
        "export_lag_p50_s": round(statistics.median(lags), 3),
        "export_lag_p99_s": round(pct(lags, 99), 3),
        "export_lag_max_s": round(max(lags), 3),
    }


_FILL = """
INSERT INTO events (id, site, gate, boot, seq, time, clock_trusted, type, data, holder, credential, granted,
                    direction, received_at)
WITH RECURSIVE n(i) AS (SELECT ? UNION ALL SELECT i + 1 FROM n WHERE i < ?)
SELECT printf('%08x', i) || lower(hex(randomblob(12))), 's' || (i % 10), 'g' || (i % 7), 'b', i + 1,
       strftime('%Y-%m-%dT%H:%M:%S', 1767225600 + i, 'unixepoch') || '.000000Z', 1, 'access.scan',
       '{"holder":"Zhang Wei","unit":"7-1102","credential":"qr","granted":true,"direction":"in"}',
       'Zhang Wei', 'qr', 1, 'in', strftime('%Y-%m-%dT%H:%M:%S', 1767225600 + i, 'unixepoch') || '.500000Z'
FROM n
"""
"""A year-scale store written by SQLite itself: the API reads ``events`` alone, and building a
million rows through ``EventStore.commit`` (with its rollups) took four minutes here."""


def build_store(path: Path, n: int) -> EventStore:
    store = EventStore(path)
    step = 100_000
    for first in range(0, n, step):
        with store.db.transaction():
            store.db.execute(_FILL, (first, min(n, first + step) - 1))
    return store


def bench_api(workdir: Path, n: int, repeat: int) -> dict[str, Any]:
    from starlette.testclient import TestClient

    from console.config import ConsoleConfig
    from console.district.tokens import TokenStore
    from console.web.app import build_context, create_app

    path = workdir / "big.db"
    t0 = time.perf_counter()
    store = build_store(path, n)
    built_s = time.perf_counter() - t0
    config = ConsoleConfig.model_validate({"store": {"path": str(path)}, "metrics": {"listen": ""}})
    ctx = build_context(config, store)
    app = create_app(ctx, watch=False)
    _, plain = TokenStore(ctx.db).create("bench", "*", by="bench")
    headers = {"authorization": f"Bearer {plain}"}
    rng = random.Random(15)
    cursors = [rng.randrange(0, n - 1000) for _ in range(repeat)]
    pages: list[float] = []
    offsets: list[float] = []
    with TestClient(app) as client:
        client.get("/api/v1/events", params={"limit": 1000}, headers=headers)  # warm
        for after in cursors:
            t = time.perf_counter()
            answer = client.get("/api/v1/events", params={"after": after, "limit": 1000}, headers=headers)
            pages.append((time.perf_counter() - t) * 1000)
            if answer.status_code != 200 or len(answer.json()["records"]) != 1000:
                raise SystemExit(f"a page failed: {answer.status_code}")
    privacy = Privacy(config.district.privacy if config.district else DistrictConfig(name="x").privacy)
    from console.store import EVENT_COLUMNS, stored_event

    for after in cursors:  # the plain alternative: OFFSET paging, the same records and JSON
        t = time.perf_counter()
        rows = store.db.query(
            f"SELECT {EVENT_COLUMNS} FROM events ORDER BY time, id LIMIT 1000 OFFSET ?", (after,)
        )
        json.dumps([privacy.record(stored_event(r), "bench") for r in rows])
        offsets.append((time.perf_counter() - t) * 1000)
    ctx.db.close()
    store.close()
    return {
        "stored_events": n,
        "build_s": round(built_s, 1),
        "api_page_p50_ms": round(statistics.median(pages), 1),
        "api_page_p95_ms": round(pct(pages, 95), 1),
        "offset_page_p95_ms": round(pct(offsets, 95), 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--quick", action="store_true", help="a smaller backlog and a shorter peak; under a minute"
    )
    parser.add_argument(
        "--stored", type=int, help="events stored for the API pages (1,000,000; --quick 200,000)"
    )
    args = parser.parse_args()
    backlog = 8_000 if args.quick else 100_000
    seconds = 10.0 if args.quick else 60.0
    repeat = 40 if args.quick else 200
    result: dict[str, Any] = {"quick": args.quick}
    with tempfile.TemporaryDirectory(prefix="gp-district-") as tmp:
        workdir = Path(tmp)
        site_broker = Broker(workdir / "site")
        site_broker.start()
        district, feed_ep, reader_ep = district_broker(workdir)
        counter = Counter(reader_ep)
        try:
            result.update(bench_ratio(workdir, site_broker, feed_ep, counter, backlog))
            result.update(bench_lag(workdir, site_broker, feed_ep, counter, seconds))
        finally:
            counter.close()
            district.stop()
            site_broker.stop()
        stored = args.stored or (200_000 if args.quick else 1_000_000)
        result.update(bench_api(workdir, stored, repeat))
    rows = [
        ("ingest (site broker -> store), events/s", result["ingest_per_s"], ""),
        ("district feed, same run, events/s", result["export_per_s"], ""),
        ("export_ratio_vs_ingest", result["export_ratio_vs_ingest"], ">= 0.9"),
        ("feed alone, batched QoS 1, events/s", result["feed_only_per_s"], ""),
        ("feed alone, one PUBACK at a time, events/s", result["naive_feed_per_s"], "(plain alternative)"),
        (f"evening peak {result['peak_per_s']}/s: export lag p50, s", result["export_lag_p50_s"], ""),
        ("export_lag_p99_s", result["export_lag_p99_s"], "<= 2"),
        (
            f"API page of 1,000 at {result['stored_events']:,} events p95, ms",
            result["api_page_p95_ms"],
            "<= 200",
        ),
        ("same page by OFFSET p95, ms", result["offset_page_p95_ms"], "(plain alternative)"),
    ]
    width = max(len(r[0]) for r in rows)
    for name, value, target in rows:
        print(f"{name:<{width}}  {value:>10}  {target}")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
