"""The console's /metrics after real ingest, scraped over HTTP.

Gates publish through a real mosquitto to a real ingestor and store; the numbers are read
the way Prometheus reads them and compared with what was sent: events stored per gate,
the ingest lag from the gate's clock, the store's size, open alarms and gates by state.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from broker.launcher import Broker
from console.alarms import AlarmBook
from console.health import HealthBoard
from console.ingest import Ingestor
from console.metrics import ConsoleMetrics
from console.store import EventStore
from protocol import Event, GateHealth, GateState, GateStatus, GateTopics, encode
from tests.conftest import ClientFactory
from tests.edge.test_metrics import scrape, value
from tests.waiting import wait_until

LAG_S = 2.0


def event(
    site: str, gate: str, seq: int, at: datetime, *, trusted: bool = True, type_: str = "access.scan"
) -> Event:
    return Event(
        id=uuid.uuid4().hex, site=site, gate=gate, boot="b" * 32, seq=seq, time=at,
        clock_trusted=trusted, type=type_, data={"granted": True, "reason": "granted"},
    )  # fmt: skip


@pytest.fixture
def console(tmp_path: Path, broker: Broker) -> Iterator[tuple[EventStore, Ingestor, ConsoleMetrics]]:
    creds = broker.add_console("console")
    store = EventStore(tmp_path / "events.db")
    ingestor = Ingestor(broker.endpoint(creds), store).start()
    board = HealthBoard()
    metrics = ConsoleMetrics(store, ingestor=ingestor, health=board)
    assert metrics.serve("127.0.0.1:0")
    try:
        assert ingestor.wait_connected(10)
        metrics.fresh(5)  # counting starts from here
        yield store, ingestor, metrics
    finally:
        metrics.close()
        ingestor.stop()
        store.close()


def test_every_console_metric_family_reads_what_was_ingested(
    broker: Broker, console: tuple[EventStore, Ingestor, ConsoleMetrics], mqtt_client_factory: ClientFactory,
    unique_name: str,
):  # fmt: skip
    store, ingestor, metrics = console
    north, south = f"{unique_name}n", f"{unique_name}s"
    published = {north: 0, south: 0}
    for gate, state in ((north, GateState.ONLINE), (south, GateState.DEGRADED)):
        client = mqtt_client_factory(broker.add_gate("site1", gate))
        topics = GateTopics("site1", gate)
        status = GateStatus(state=state, site="site1", gate=gate, boot="b" * 32, time=datetime.now(UTC))
        client.publish(topics.status, encode(status), retain=True)
        now = datetime.now(UTC)
        batch = [event("site1", gate, seq, now - timedelta(seconds=LAG_S)) for seq in range(1, 21)]
        batch.append(event("site1", gate, 21, now - timedelta(hours=5), trusted=False))  # no lag from a guess
        batch.append(event("site1", gate, 22, now - timedelta(seconds=LAG_S), type_="door.forced"))
        for item in batch:
            client.publish(topics.event, encode(item))
        published[gate] = len(batch)
    total = sum(published.values())
    assert wait_until(lambda: ingestor.counters.committed == total, timeout=20)
    assert wait_until(lambda: ingestor.counters.statuses == 2, timeout=10)
    alarms = AlarmBook(store.db)
    assert len(alarms.observe_events(store.events_after(0, 1000))) == 2  # door.forced at each gate
    alarms.acknowledge(alarms.list()[0].row_id, "ana", "checked")

    samples = scrape(metrics.port)  # type: ignore[arg-type]
    for gate, count in published.items():
        assert value(samples, "gatepost_console_events_stored_total", site="site1", gate=gate) == count
    trusted = total - 2
    assert value(samples, "gatepost_console_ingest_lag_seconds_count") == trusted
    lag_sum = value(samples, "gatepost_console_ingest_lag_seconds_sum")
    assert lag_sum is not None and LAG_S * trusted <= lag_sum < (LAG_S + 5) * trusted
    assert value(samples, "gatepost_console_ingest_lag_seconds_bucket", le="1.0") == 0
    assert value(samples, "gatepost_console_ingest_lag_seconds_bucket", le="10.0") == trusted
    assert value(samples, "gatepost_console_ingest_committed_total") == total
    assert value(samples, "gatepost_console_ingest_received_total") == total + 2
    assert value(samples, "gatepost_console_ingest_duplicates_total") == 0
    assert value(samples, "gatepost_console_ingest_connected") == 1
    assert value(samples, "gatepost_console_gates", state="online") == 1
    assert value(samples, "gatepost_console_gates", state="degraded") == 1
    assert value(samples, "gatepost_console_gates", state="offline") == 0
    assert value(samples, "gatepost_console_open_alarms") == 1
    path = Path(str(store.db.path))
    on_disk = sum(
        p.stat().st_size for p in path.parent.glob(path.name + "*") if p.name != path.name + ".held"
    )
    assert value(samples, "gatepost_console_store_bytes") == pytest.approx(on_disk, rel=0.5)

    # A duplicate (a gate resending) is stored once and counted as such, not as ingest.
    client = mqtt_client_factory(broker.add_gate("site1", north))
    duplicate = store.events_after(0, 1)[0]
    again = event("site1", duplicate.gate, duplicate.seq, datetime.now(UTC))
    client.publish(
        GateTopics("site1", duplicate.gate).event, encode(again.model_copy(update={"id": duplicate.id}))
    )
    assert wait_until(lambda: ingestor.counters.duplicates == 1, timeout=10)
    samples = scrape(metrics.port)  # type: ignore[arg-type]
    assert (
        value(samples, "gatepost_console_events_stored_total", site="site1", gate=duplicate.gate)
        == published[duplicate.gate]
    )


def test_health_reports_appear_in_console_metrics(console: tuple[EventStore, Ingestor, ConsoleMetrics]):
    _store, _ingestor, metrics = console
    assert metrics.health is not None
    metrics.health.update(
        GateHealth(
            site="site1", gate="north", boot="b" * 32, time=datetime.now(UTC), state=GateState.DEGRADED,
            backlog=3, resends=0, clock_trusted=True, degraded=True, held=3,
        )
    )  # fmt: skip
    samples = scrape(metrics.port)  # type: ignore[arg-type]
    assert value(samples, "gatepost_console_gate_degraded", site="site1", gate="north") == 1
    age = value(samples, "gatepost_console_gate_health_age_seconds", site="site1", gate="north")
    assert age is not None and 0 <= age < 5
