"""The console's Prometheus metrics: how fast events come in, how late, and what state the site is in.

Ingest may run as several processes (``console run --workers N``), so the rate and the
lag are read where every worker's commits meet — the store — not from one process's
counters: a thread follows the events as they are stored (through the same
:class:`~console.follow.EventFollower` the web console uses, so PostgreSQL's out-of-order
commits are not missed), counts them per gate and observes each one's lag, from the
gate's clock (``time``, trusted clocks only) to the store's receipt (``received_at``,
stamped in the committing transaction).  The same thread reads the store's size, the
open alarms and the gates by state; a scrape asks it for a fresh pass and waits for it
(a second at most), so one thread and one database connection serve every scrape.

Served on a listener of its own (``[metrics] listen``, loopback by default), so scraping
needs no web login and the web console's authentication does not change.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from datetime import datetime
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, Counter, Histogram, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from console.follow import EventFollower

if TYPE_CHECKING:
    from wsgiref.simple_server import WSGIServer

    from console.health import HealthBoard
    from console.store import EventStore

log = logging.getLogger("gatepost.console.metrics")

LAG_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 3600.0)
GATE_STATES = ("online", "degraded", "stopped", "offline")
FOLLOW_S = 1.0
BATCH = 2000
SCRAPE_WAIT_S = 1.0


class ConsoleMetrics:
    """The console's registry, its store-following thread and (after :meth:`serve`) its listener."""

    def __init__(self, store: EventStore, *, ingestor: Any = None, health: HealthBoard | None = None) -> None:
        self.store = store
        self.ingestor = ingestor
        self.health = health
        self.registry = CollectorRegistry(auto_describe=True)
        self.stored = Counter(
            "gatepost_console_events_stored",
            "Events stored (each event id once), by site and gate, counted as the store takes them",
            ["site", "gate"],
            registry=None,  # collected after the scrape's fresh pass (see _StateCollector)
        )
        self.lag = Histogram(
            "gatepost_console_ingest_lag_seconds",
            "From an event's time at the gate (trusted clocks only) to its commit at the console",
            buckets=LAG_BUCKETS,
            registry=None,
        )
        self.registry.register(_StateCollector(self))
        self._follower: EventFollower | None = None
        self._state: dict[str, Any] = {}
        self._passes = 0
        self._pass_done = threading.Condition()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="console-metrics", daemon=True)
        self._server: WSGIServer | None = None
        self.port: int | None = None

    def start(self) -> ConsoleMetrics:
        self._thread.start()
        return self

    def serve(self, listen: str) -> int | None:
        """Listen on ``host:port`` (0: any free port) and start following; the port, or ``None`` on failure."""
        if not self._thread.is_alive():
            self.start()
        host, _, port = listen.rpartition(":")
        try:
            server, _thread = start_http_server(int(port), host.strip("[]"), registry=self.registry)
        except OSError as exc:
            log.error("console metrics cannot listen on %s (%s); /metrics is off", listen, exc)
            return None
        self._server = server
        self.port = server.server_port
        log.info("console metrics on http://%s:%d/metrics", host, self.port)
        return self.port

    def close(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread.is_alive():
            self._thread.join(5)

    def fresh(self, timeout: float = SCRAPE_WAIT_S) -> dict[str, Any]:
        """Ask the thread for a pass and wait (bounded) for it; the state it read."""
        with self._pass_done:
            wanted = self._passes + 1
            self._wake.set()
            self._pass_done.wait_for(lambda: self._passes >= wanted or self._stop.is_set(), timeout)
            return dict(self._state)

    # -- the following thread ------------------------------------------------------------

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self._pass()
            except Exception:  # a database hiccup: the next pass tries again
                log.exception("console metrics pass failed")
            with self._pass_done:
                self._passes += 1
                self._pass_done.notify_all()
            self._wake.wait(FOLLOW_S)
            self._wake.clear()

    def _pass(self) -> None:
        store = self.store
        if self._follower is None:  # counting starts now: history is not "ingest"
            newest = store.last_events(1)
            self._follower = EventFollower(store, newest[-1].row_id if newest else 0)
        more = True
        while more and not self._stop.is_set():
            events, more = self._follower.read(BATCH)
            for event in events:
                self.stored.labels(event.site, event.gate).inc()
                if event.clock_trusted:
                    lag = _seconds_between(event.time, event.received_at)
                    if lag is not None:
                        self.lag.observe(max(0.0, lag))
        db = store.db
        state: dict[str, Any] = {"gates": dict.fromkeys(GATE_STATES, 0)}
        for gate_state, count in db.query("SELECT state, COUNT(*) FROM gate_status GROUP BY state"):
            state["gates"][gate_state] = int(count)
        try:
            state["open_alarms"] = int(db.query("SELECT COUNT(*) FROM alarms WHERE acked_at IS NULL")[0][0])
        except Exception:  # no alarms table: the web console (which keeps it) never ran on this store
            state["open_alarms"] = None
        state["store_bytes"] = _store_bytes(store)
        self._state = state


class _StateCollector(Collector):
    def __init__(self, metrics: ConsoleMetrics) -> None:
        self.metrics = metrics

    def describe(self) -> list[Any]:
        return []

    def collect(self) -> Iterator[Any]:
        metrics = self.metrics
        state = metrics.fresh()  # first: the counters below then include what it just read
        yield from metrics.stored.collect()
        yield from metrics.lag.collect()
        gates = GaugeMetricFamily(
            "gatepost_console_gates", "Gates by their retained status", labels=["state"]
        )
        for gate_state, count in sorted(state.get("gates", {}).items()):
            gates.add_metric([gate_state], count)
        yield gates
        if state.get("open_alarms") is not None:
            yield GaugeMetricFamily(
                "gatepost_console_open_alarms", "Alarms not yet acknowledged", value=state["open_alarms"]
            )
        if state.get("store_bytes") is not None:
            yield GaugeMetricFamily(
                "gatepost_console_store_bytes",
                "Size of the event store (SQLite files, or the PostgreSQL database)",
                value=state["store_bytes"],
            )
        ingestor = metrics.ingestor
        counters = getattr(ingestor, "counters", None)
        if counters is not None and hasattr(counters, "committed"):  # one in-process ingestor
            for name, doc in (
                ("received", "Messages received from gates (events, statuses and junk)"),
                ("committed", "New events committed by this process"),
                ("duplicates", "Events received again and dropped by id"),
                ("rejected", "Messages refused (typed rejections)"),
                ("commit_failures", "Store commits that failed and were retried"),
                ("batches", "Transactions committed"),
            ):
                yield CounterMetricFamily(
                    f"gatepost_console_ingest_{name}", doc, value=float(getattr(counters, name))
                )
            yield GaugeMetricFamily(
                "gatepost_console_ingest_connected",
                "1 while ingest is subscribed",
                value=float(ingestor.connected),
            )
        elif counters is not None and hasattr(counters, "alive"):  # ingest worker processes
            yield GaugeMetricFamily(
                "gatepost_console_ingest_workers_alive",
                "Ingest worker processes running",
                value=counters.alive,
            )
            yield CounterMetricFamily(
                "gatepost_console_ingest_worker_restarts", "Ingest workers restarted", value=counters.restarts
            )
        if metrics.health is not None:
            reports = metrics.health.all()
            age = GaugeMetricFamily(
                "gatepost_console_gate_health_age_seconds",
                "Seconds since each gate's last health message",
                labels=["site", "gate"],
            )
            degraded = GaugeMetricFamily(
                "gatepost_console_gate_degraded",
                "1 while a gate reports that its disk refuses writes",
                labels=["site", "gate"],
            )
            for report in reports:
                labels = [report.health.site, report.health.gate]
                age.add_metric(labels, report.age_s)
                degraded.add_metric(labels, float(report.health.degraded))
            yield age
            yield degraded


def _seconds_between(start: str, end: str) -> float | None:
    try:
        return (_parse(end) - _parse(start)).total_seconds()
    except ValueError:
        return None


def _parse(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def _store_bytes(store: EventStore) -> int | None:
    db = store.db
    if db.dialect == "sqlite":
        path = db.path
        if path is None:
            return None
        total = 0
        for suffix in ("", "-wal", "-shm"):
            try:
                total += path.with_name(path.name + suffix).stat().st_size
            except OSError:
                continue
        return total
    try:
        return int(db.query("SELECT pg_database_size(current_database())")[0][0])
    except Exception:
        return None
