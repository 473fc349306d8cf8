"""Console benchmark: a district's store, asked the way the web console asks, and scale-out ingest.

Measured in one run, each next to its comparison:

1. building the store: events/s through ``EventStore.commit`` (the ingest path, with
   its rollups), 5,000-event batches;
2. the web console's pages through uvicorn, logged in, on one keep-alive connection:
   ``GET /`` (the gates overview of 1,000 gates) p95 → ``overview_p95_ms``; ``GET /events``
   over seven filter mixes p95 → ``search_p95_ms``; ``GET /flow`` for all posts and for one
   post, after the console has worked out every post's staffing at start (timed too);
3. the same questions at store level (``console/store.py``), to show what the page adds:
   ``store_overview_p95_ms``, ``store_search_p95_ms``; a month of flow for the whole
   district per hour from ``flow_hourly`` → ``flow_month_ms``, against the same numbers
   computed from the raw events with GROUP BY → ``flow_month_naive_ms``;
4. ingest through a real mosquitto with two worker processes against one (``$share``),
   draining a backlog the broker holds → ``ingest_scaling_2_workers`` (PostgreSQL's
   when a server is reachable — scale-out is for PostgreSQL sites — with SQLite's as
   ``sqlite_ingest_scaling_2_workers``).

Usage: ``python bench/console.py [--quick] [--postgres URL | --no-postgres]``.  ``--quick``:
150,000 events, SQLite store, PostgreSQL for ingest only, under a minute; full:
1,000,000 events on both.  Prints a table, then one JSON line.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import random
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

ROOT = Path(__file__).resolve().parents[1]
# This file is named like the ``console`` package; its own folder must not shadow it.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.cpu import TICK_S, CpuCap, Ticks, pids_named  # noqa: E402
from broker.launcher import Broker  # noqa: E402
from console.store import EventStore, format_time  # noqa: E402
from protocol import Event, GateState, GateStatus  # noqa: E402

SITES = 10
GATES_PER_SITE = 100
DAYS = 60
NOW = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
REASONS = ["ok", "ok", "ok", "ok", "ok", "ok", "ok", "expired", "revoked", "unknown", "bad_signature"]
SURNAMES = [
    "Wang",
    "Li",
    "Zhang",
    "Liu",
    "Chen",
    "Yang",
    "Zhao",
    "Huang",
    "Zhou",
    "Wu",
    "Xu",
    "Sun",
    "Hu",
    "Zhu",
    "Gao",
    "Lin",
    "He",
    "Guo",
    "Ma",
    "Luo",
]


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


def gate_names() -> list[tuple[str, str]]:
    return [(f"site{s:02d}", f"gate{g:03d}") for s in range(SITES) for g in range(GATES_PER_SITE)]


def holders() -> list[str]:
    return [f"{SURNAMES[i % len(SURNAMES)]} {i:04d}" for i in range(5000)]


def synthetic_events(n: int, seed: int = 6) -> list[Event]:
    """``n`` events over ``DAYS`` days across every gate: mostly access decisions, some door and agent events.

    Built with ``model_construct`` (no validation): these are our own well-formed
    events, and validating a million of them would measure pydantic, not the store.
    """
    rng = random.Random(seed)
    gates = gate_names()
    names = holders()
    seqs: dict[tuple[str, str], int] = {}
    boots = {gate: uuid.uuid4().hex for gate in gates}
    span_s = DAYS * 86_400
    start = NOW - timedelta(seconds=span_s)
    offsets = sorted(rng.randrange(span_s * 1000) for _ in range(n))
    events = []
    for offset in offsets:
        site, gate = gates[rng.randrange(len(gates))]
        seq = seqs[site, gate] = seqs.get((site, gate), 0) + 1
        roll = rng.random()
        if roll < 0.85:
            reason = rng.choice(REASONS)
            granted = reason == "ok"
            kind, data = (
                "access.scan",
                {
                    "credential": "pass" if rng.random() < 0.7 else "card",
                    "code": None,
                    "granted": granted,
                    "reason": reason,
                    "reader": "front",
                    "holder": rng.choice(names),
                    "unit": f"{rng.randrange(1, 30)}-{rng.randrange(1, 7)}-{rng.randrange(101, 2000)}",
                    "serial": rng.randrange(1, 10**6),
                    "direction": "out" if rng.random() < 0.45 else "in",
                },
            )
        elif roll < 0.95:
            kind, data = rng.choice(["door.unlocked", "door.held_open", "door.forced"]), {"door": "main"}
        else:
            kind, data = "agent.started", {"version": "0.1.0"}
        events.append(
            Event.model_construct(
                id=uuid.uuid4().hex,
                site=site,
                gate=gate,
                boot=boots[site, gate],
                seq=seq,
                time=start + timedelta(milliseconds=offset),
                clock_trusted=True,
                type=kind,
                data=data,
            )
        )
    return events


def build(target: str | Path, n: int) -> tuple[EventStore, float]:
    store = EventStore(target)
    events = synthetic_events(n)
    began = time.perf_counter()
    for i in range(0, n, 5000):
        store.commit(events[i : i + 5000])
    rate = n / (time.perf_counter() - began)
    statuses = [
        GateStatus(state=GateState.ONLINE, site=site, gate=gate, boot=uuid.uuid4().hex, time=NOW, backlog=0)
        for site, gate in gate_names()
    ]
    store.commit(statuses=statuses)
    store.optimize()
    return store, rate


def timed(fn: Callable[[], Any], repeat: int) -> list[float]:
    fn()  # warm the cache: the console queries a hot store
    samples = []
    for _ in range(repeat):
        began = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - began) * 1000)
    return samples


def bench_queries(store: EventStore, repeat: int) -> dict[str, Any]:
    day = NOW - timedelta(days=1)
    month = NOW - timedelta(days=30)
    rows = store.search(limit=100)
    deep = store.search(limit=1, before_row_id=store.search(limit=2000)[-1].row_id)
    mixes: dict[str, Callable[[], Any]] = {
        "newest": lambda: store.search(limit=100),
        "gate": lambda: store.search(gate="site03/gate042", limit=100),
        "type door.*": lambda: store.search(type="door.*", limit=100),
        "reason": lambda: store.search(reason="revoked", limit=100),
        "holder": lambda: store.search(holder="Li 0001", limit=100),
        "gate+day": lambda: store.search(gate="site05/gate007", start=day, end=NOW, limit=100),
        "text+day": lambda: store.search(text="-3-1", start=day, limit=100),
        "denied+month": lambda: store.search(granted=False, start=month, limit=100),
        "page 21": lambda: store.search(before_row_id=deep[0].row_id if deep else None, limit=100),
    }
    per_mix = {name: timed(fn, repeat) for name, fn in mixes.items()}
    search_all = [v for samples in per_mix.values() for v in samples]
    overview = timed(store.gate_overview, repeat)
    flow = timed(lambda: store.flow(None, None, month, NOW, per_gate=False), repeat)
    flow_gates = timed(lambda: store.flow("site01", None, month, NOW), repeat)
    naive_sql = """
        SELECT substr(time, 1, 13),
               SUM(CASE WHEN granted = 1 AND (direction IS NULL OR direction <> 'out') THEN 1 ELSE 0 END),
               SUM(CASE WHEN granted = 1 AND direction = 'out' THEN 1 ELSE 0 END),
               SUM(CASE WHEN granted = 0 THEN 1 ELSE 0 END)
        FROM events
        WHERE type IN ('access.scan', 'door.access_granted', 'door.access_denied') AND time >= ? AND time < ?
        GROUP BY substr(time, 1, 13) ORDER BY 1"""
    params = (format_time(month), format_time(NOW))
    naive = timed(lambda: store.db.query(naive_sql, params), max(3, repeat // 4))
    fast_rows = store.flow(None, None, month, NOW, per_gate=False)
    naive_rows = store.db.query(naive_sql, params)
    if [(r.entries, r.exits, r.denied) for r in fast_rows] != [
        tuple(int(x) for x in r[1:]) for r in naive_rows
    ]:
        raise SystemExit("flow_hourly disagrees with the raw events")
    return {
        "rows_sample": len(rows),
        "search_by_mix_p95_ms": {name: round(pct(s, 95), 2) for name, s in per_mix.items()},
        "search_p95_ms": pct(search_all, 95),
        "search_p50_ms": statistics.median(search_all),
        "overview_p95_ms": pct(overview, 95),
        "flow_month_ms": statistics.median(flow),
        "flow_month_per_gate_ms": statistics.median(flow_gates),
        "flow_month_naive_ms": statistics.median(naive),
        "flow_hours": len(fast_rows),
    }


# -- the web console over HTTP ----------------------------------------------------------


class _Browser:
    """A logged-in operator on one keep-alive connection: what a console page costs end to end.

    ``http.client`` rather than a client library, so the figure is the server's plus a
    socket round trip, and the bench needs nothing beyond the console's own dependencies.
    """

    _CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')

    def __init__(self, host: str, port: int) -> None:
        self.conn = http.client.HTTPConnection(host, port, timeout=60)
        self.cookies: dict[str, str] = {}

    def request(self, method: str, path: str, body: str | None = None) -> tuple[int, str]:
        headers = {"accept": "text/html", "cookie": "; ".join(f"{k}={v}" for k, v in self.cookies.items())}
        if body is not None:
            headers["content-type"] = "application/x-www-form-urlencoded"
        self.conn.request(method, path, body=body, headers=headers)
        response = self.conn.getresponse()
        text = response.read().decode("utf-8", "replace")
        for header in response.headers.get_all("set-cookie") or []:
            name, _, rest = header.partition("=")
            self.cookies[name.strip()] = rest.split(";", 1)[0]
        return response.status, text

    def get(self, path: str) -> str:
        status, text = self.request("GET", path)
        if status != 200:
            raise SystemExit(f"GET {path} answered {status}")
        return text

    def login(self, name: str, password: str) -> None:
        match = self._CSRF.search(self.get("/login"))
        if match is None:
            raise SystemExit("the login page has no CSRF field")
        form = urlencode({"name": name, "password": password, "csrf_token": match.group(1), "next": "/"})
        status, _ = self.request("POST", "/login", form)
        if status != 303:
            raise SystemExit(f"login answered {status}")


def bench_http(target: str | Path, repeat: int) -> dict[str, Any]:
    """The same questions asked of the web console as pages, through uvicorn, logged in."""
    from console.config import ConsoleConfig
    from console.flow import FlowSettings
    from console.web.app import build_context
    from console.web.serve import WebServer

    store_section = {"url": str(target)} if str(target).startswith("postgresql") else {"path": str(target)}
    config = ConsoleConfig.model_validate({"store": store_section})
    store = EventStore(target)
    ctx = build_context(config, store)
    password = uuid.uuid4().hex
    ctx.users.add("bench", password, "operator")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = int(probe.getsockname()[1])
    server = WebServer(ctx, "127.0.0.1", port)
    began = time.perf_counter()
    if not server.start():
        raise SystemExit("the web console did not start")
    try:
        # The console works out today's staffing for every post when it starts (weeks of
        # events); timed here, and waited for, so it does not share the CPU with the pages.
        cache = server.app.state.plan_cache
        while not cache._plans and time.perf_counter() - began < 300:
            time.sleep(0.05)
        staffing_s = time.perf_counter() - began
        browser = _Browser("127.0.0.1", port)
        browser.login("bench", password)
        page = browser.get("/")
        if page.count("gate0") < SITES * GATES_PER_SITE:
            raise SystemExit("the gates overview does not list every gate")
        day = (NOW - timedelta(days=1)).date().isoformat()
        month = (NOW - timedelta(days=30)).date().isoformat()
        mixes = {
            "newest": "/events",
            "gate": "/events?site=site03&gate=gate042",
            "type": "/events?type=door.forced",
            "reason": "/events?reason=revoked",
            "holder": "/events?holder=Li+0001",
            "gate+day": f"/events?site=site05&gate=gate007&start={day}",
            "denied+month": f"/events?reason=expired&start={month}",
        }
        per_mix = {name: timed(lambda path=path: browser.get(path), repeat) for name, path in mixes.items()}
        search_all = [v for samples in per_mix.values() for v in samples]
        overview = timed(lambda: browser.get("/"), repeat)
        today = datetime.now(FlowSettings.from_config(config.flow).zone).date()
        flow_path = f"/flow?date={today.isoformat()}"
        flow = timed(lambda: browser.get(flow_path), max(3, repeat // 2))
        flow_post = timed(lambda: browser.get(flow_path + "&post=site01/gate003"), max(3, repeat // 2))
        return {
            "overview_p95_ms": pct(overview, 95),
            "overview_bytes": len(page.encode()),
            "search_p95_ms": pct(search_all, 95),
            "search_p50_ms": statistics.median(search_all),
            "search_by_mix_p95_ms": {name: round(pct(s, 95), 2) for name, s in per_mix.items()},
            "flow_page_p95_ms": pct(flow, 95),
            "flow_staffing_at_start_s": staffing_s,
            "flow_page_post_p95_ms": pct(flow_post, 95),
        }
    finally:
        server.stop()
        store.close()


# -- ingest scaling ----------------------------------------------------------------------


def _publish_backlog(broker: Broker, workdir: Path, site: str, n: int, count: int) -> None:
    """``count`` gate processes publish ``n`` events between them; return once the broker has them all.

    The publishers are bench/pipeline.py's (``--publisher``): the same events, one QoS 1
    publish each, from a process of their own.
    """
    children = []
    for i in range(count):
        gate = f"g{i}"
        creds = broker.add_gate(site, gate)
        secret = workdir / f"{site}-{gate}.secret"
        secret.write_text(creds.password)
        children.append(
            subprocess.Popen(
                [
                    sys.executable,
                    str(Path(__file__).with_name("pipeline.py")),
                    "--publisher",
                    *("--host", broker.host, "--port", str(broker.port), "--username", creds.username),
                    *("--secret", str(secret), "--site", site, "--gate", gate, "--n", str(n // count)),
                ],
                stdout=subprocess.DEVNULL,
                env={**os.environ, "PYTHONPATH": str(ROOT)},
            )
        )
    for child in children:
        if child.wait(300) != 0:
            raise SystemExit("a publisher failed")


@dataclass(frozen=True)
class IngestRun:
    """One backlog drain: its rate, and the CPU spent meanwhile per event and per process group."""

    per_s: float
    busy_cores: float
    us_per_event: dict[str, float]  # workers, broker, database (a local PostgreSQL), other, machine


def bench_ingest(
    broker: Broker, workdir: Path, target: str | Path, n: int, workers: int, cap: float | None = None
) -> IngestRun:
    """Events/s while ``workers`` processes drain a backlog of ``n`` events the broker queued for them,
    and where the machine's CPU went meanwhile (workers, broker, database, the rest).

    This is the moment ingest speed matters: the console comes back from an upgrade
    or an outage and every gate's held events arrive at once.  The workers subscribe
    once (so the broker knows the group and queues a share for each session), stop,
    the gates publish, and the clock runs from the moment every worker is subscribed
    again until the store holds all ``n``: the console's side alone, without the
    publishers' CPU — on two cores, publishing at the same time would measure them.

    ``cap`` limits each worker to that many cores (:class:`bench.cpu.CpuCap`).

    Progress is watched through the highest ``row_id``, one index probe, and counted
    exactly only once that says all may be in (ids are not gapless on PostgreSQL: a
    duplicate takes one).  Counting every 10 ms, as this did first, cost the PostgreSQL
    server 30 µs of CPU per ingested event, more than its inserts, on the same cores.
    """
    from console.ingest import IngestWorkers, WorkerSpec

    run = uuid.uuid4().hex[:6]
    site = f"b{run}"
    creds = broker.add_console(f"c{run}")
    store = EventStore(target)
    spec = WorkerSpec(broker.endpoint(creds), str(target), name=f"c{run}", site=site, log_level="WARNING")
    postgres = isinstance(target, str)

    def stored() -> int:
        return int(store.db.query("SELECT COUNT(*) FROM events WHERE site = ?", (site,))[0][0])

    def top() -> int:
        return int(store.db.query("SELECT COALESCE(MAX(row_id), 0) FROM events")[0][0])

    limit = CpuCap(cap) if cap is not None else None
    try:
        pool = IngestWorkers(spec, workers).start()
        subscribed = pool.wait_ready(60)
        pool.stop()
        if not subscribed:
            raise SystemExit("ingest workers did not connect")
        _publish_backlog(broker, workdir, site, n, 2)
        floor = top()
        pool = IngestWorkers(spec, workers).start()
        try:
            pids = [pid for pid in pool.pids() if pid is not None]
            if limit is not None:
                for pid in pids:
                    limit.add(pid)
            if not pool.wait_ready(60):
                raise SystemExit("ingest workers did not reconnect")
            groups = {
                "workers": pids,
                "broker": [broker.pid] if broker.pid else [],
                "database": pids_named("postgres") if postgres else [],
            }
            began, before, ticks = time.perf_counter(), stored(), Ticks(groups).start()
            deadline = time.monotonic() + 300
            count = before
            while count < n and time.monotonic() < deadline:
                time.sleep(0.01)
                if top() - floor >= n:
                    count = stored()
            elapsed = time.perf_counter() - began
            used = ticks.stop()
        finally:
            pool.stop()
        if count != n:
            raise SystemExit(f"ingest stored {count} of {n} events")
    finally:
        store.close()
        if limit is not None:
            limit.close()
    drained = n - before
    return IngestRun(
        per_s=drained / elapsed,
        busy_cores=used["machine"] * TICK_S / elapsed,
        us_per_event={name: round(t * TICK_S / drained * 1e6, 1) for name, t in used.items()},
    )


def _postgres_database(server: str) -> tuple[str, Callable[[], None]]:
    from urllib.parse import urlsplit, urlunsplit

    import psycopg

    name = f"gp_bench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(server, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')

    def drop() -> None:
        with psycopg.connect(server, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    return urlunsplit(urlsplit(server)._replace(path=f"/{name}")), drop


DEFAULT_POSTGRES = "postgresql://postgres@127.0.0.1:5432/postgres"
WORKER_CAP = 0.5
"""Cores each worker may use in the capped ingest run: with the broker's and the database's
share for two such workers (about 0.2 core each, measured) the machine keeps cores idle, as
a site whose workers have cores of their own does."""


def _reachable(url: str) -> bool:
    try:
        import psycopg

        with psycopg.connect(url, connect_timeout=2):
            return True
    except Exception:  # no driver, no server, no access: the bench says so and goes on
        return False


def _ingest_rounds(
    broker: Broker, workdir: Path, target: str | Path, n: int, rounds: int, cap: float | None = None
) -> tuple[IngestRun, IngestRun]:
    """The median run (by rate) with one worker and with two, interleaved so drift hits both."""
    ones, twos = [], []
    for _ in range(rounds):
        ones.append(bench_ingest(broker, workdir, target, n, 1, cap))
        twos.append(bench_ingest(broker, workdir, target, n, 2, cap))

    def median(runs: list[IngestRun]) -> IngestRun:
        return sorted(runs, key=lambda r: r.per_s)[len(runs) // 2]

    return median(ones), median(twos)


def _cpu_row(run: IngestRun) -> str:
    return ", ".join(f"{name} {us:.0f} µs" for name, us in run.us_per_event.items() if name != "machine")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="150,000 events; finishes in under a minute")
    parser.add_argument(
        "--postgres",
        metavar="URL",
        default=DEFAULT_POSTGRES,
        help=f"PostgreSQL server to bench too (default {DEFAULT_POSTGRES}; skipped if unreachable)",
    )
    parser.add_argument("--no-postgres", action="store_true", help="SQLite only")
    parser.add_argument("--events", type=int, help="stored events (default 1,000,000; --quick 150,000)")
    args = parser.parse_args()
    n = args.events or (150_000 if args.quick else 1_000_000)
    repeat = 10 if args.quick else 30
    ingest_n, rounds = (20_000, 1) if args.quick else (60_000, 3)
    postgres = None if args.no_postgres or not _reachable(args.postgres) else args.postgres
    result: dict[str, Any] = {
        "bench": "console",
        "quick": args.quick,
        "events": n,
        "gates": SITES * GATES_PER_SITE,
        "days": DAYS,
        "cpus": os.cpu_count(),
        "postgres": postgres is not None,
        "load_before": round(os.getloadavg()[0], 2),
    }
    # Several workers are for PostgreSQL sites (docs/storage.md): SQLite has one writer.
    headline = "pg_" if postgres is not None else ""
    cpus = os.cpu_count() or 1
    table: list[tuple[str, str, str]] = []
    drops: list[Callable[[], None]] = []
    with tempfile.TemporaryDirectory(prefix="gp-bench-console-") as tmp:
        workdir = Path(tmp)
        # (kind, store, key prefix, whether to build and query it): --quick builds only the
        # SQLite store, to stay under a minute, and measures PostgreSQL's ingest alone.
        backends: list[tuple[str, str | Path, str, bool]] = [("sqlite", workdir / "store.db", "", True)]
        try:
            if postgres is not None:
                url, drop = _postgres_database(postgres)
                drops.append(drop)
                backends.append(("postgresql", url, "pg_", not args.quick))
            for kind, target, prefix, full in backends:
                if not full:
                    continue
                store, rate = build(target, n)
                figures = bench_queries(store, repeat)
                store.close()
                pages = bench_http(target, repeat)
                result[f"{prefix}build_events_per_s"] = round(rate)
                for key in ("overview_p95_ms", "search_p95_ms", "search_p50_ms", "flow_page_p95_ms"):
                    result[prefix + key] = round(pages[key], 2)
                result[prefix + "overview_page_bytes"] = pages["overview_bytes"]
                result[prefix + "search_by_mix_p95_ms"] = pages["search_by_mix_p95_ms"]
                result[prefix + "flow_page_post_p95_ms"] = round(pages["flow_page_post_p95_ms"], 2)
                result[prefix + "flow_staffing_at_start_s"] = round(pages["flow_staffing_at_start_s"], 2)
                result[prefix + "flow_month_ms"] = round(figures["flow_month_ms"], 2)
                for key in ("overview_p95_ms", "search_p95_ms", "search_p50_ms"):
                    result[f"{prefix}store_{key}"] = round(figures[key], 2)
                result[prefix + "store_search_by_mix_p95_ms"] = figures["search_by_mix_p95_ms"]
                result[prefix + "flow_month_per_gate_ms"] = round(figures["flow_month_per_gate_ms"], 2)
                result[prefix + "flow_month_naive_ms"] = round(figures["flow_month_naive_ms"], 2)
                table += [
                    (kind, "build (commit path, 5,000/batch)", f"{rate:,.0f} events/s"),
                    (
                        kind,
                        "GET / (gates overview page, 1,000 gates) p95",
                        f"{pages['overview_p95_ms']:.1f} ms",
                    ),
                    (
                        kind,
                        "GET /events p95 / p50, 7 filter mixes",
                        f"{pages['search_p95_ms']:.1f} / {pages['search_p50_ms']:.1f} ms",
                    ),
                    *(
                        (kind, f"  /events {name} p95", f"{v:.1f} ms")
                        for name, v in pages["search_by_mix_p95_ms"].items()
                    ),
                    (
                        kind,
                        "staffing of every post worked out at start",
                        f"{pages['flow_staffing_at_start_s']:.1f} s",
                    ),
                    (kind, "GET /flow all posts p95", f"{pages['flow_page_p95_ms']:.1f} ms"),
                    (kind, "GET /flow one post p95", f"{pages['flow_page_post_p95_ms']:.1f} ms"),
                    (kind, "store: gate_overview() p95", f"{figures['overview_p95_ms']:.1f} ms"),
                    (
                        kind,
                        "store: search() p95 / p50, 9 filter mixes",
                        f"{figures['search_p95_ms']:.1f} / {figures['search_p50_ms']:.1f} ms",
                    ),
                    (kind, "store: flow month, district per hour", f"{figures['flow_month_ms']:.1f} ms"),
                    (
                        kind,
                        "store: flow month, 100 gates per hour",
                        f"{figures['flow_month_per_gate_ms']:.1f} ms",
                    ),
                    (
                        kind,
                        "store: flow month, naive GROUP BY on events",
                        f"{figures['flow_month_naive_ms']:.1f} ms",
                    ),
                ]
            broker = Broker(workdir / "broker", max_queued_messages=ingest_n + 10_000)
            broker.start()
            try:
                for kind, target, prefix, _ in backends:
                    # A fresh store for ingest, the same for both kinds and both modes.  Into
                    # the built million-event PostgreSQL database two workers gave 1.72x in
                    # one full run: its server, on the same two cores, works harder per row.
                    ingest_target: str | Path = workdir / "ingest.db"
                    if kind == "postgresql":
                        assert postgres is not None
                        if args.quick:  # the quick run built nothing in it
                            ingest_target = target
                        else:
                            ingest_target, drop = _postgres_database(postgres)
                            drops.append(drop)
                    one, two = _ingest_rounds(broker, workdir, ingest_target, ingest_n, rounds)
                    scaling = two.per_s / one.per_s
                    # What the machine's cores allowed: every core busy at the two-worker
                    # run's CPU per event, over the one-worker rate.
                    ceiling = (cpus / two.busy_cores * two.per_s) / one.per_s
                    result[prefix + "ingest_1_worker_per_s"] = round(one.per_s)
                    result[prefix + "ingest_2_workers_per_s"] = round(two.per_s)
                    result[prefix + "ingest_scaling_2_workers"] = round(scaling, 2)
                    result[prefix + "ingest_scaling_ceiling"] = round(ceiling, 2)
                    result[prefix + "ingest_cores_busy_1_2"] = [
                        round(one.busy_cores, 2),
                        round(two.busy_cores, 2),
                    ]
                    result[prefix + "ingest_cpu_us_per_event_1"] = one.us_per_event
                    result[prefix + "ingest_cpu_us_per_event_2"] = two.us_per_event
                    table += [
                        (
                            kind,
                            f"ingest backlog of {ingest_n:,}, 1 worker",
                            f"{one.per_s:,.0f} events/s, {one.busy_cores:.2f} of {cpus} cores busy",
                        ),
                        (
                            kind,
                            "ingest backlog, 2 workers ($share)",
                            f"{two.per_s:,.0f} events/s ({scaling:.2f}x), {two.busy_cores:.2f} cores busy",
                        ),
                        (kind, "  CPU per event, 1 worker", _cpu_row(one)),
                        (kind, "  CPU per event, 2 workers", _cpu_row(two)),
                        (kind, f"  CPU-bound ceiling on {cpus} cores, 2 workers", f"{ceiling:.2f}x"),
                    ]
                    if prefix != headline:
                        continue
                    why_not = CpuCap.unavailable()
                    result["ingest_worker_cap_cores"] = WORKER_CAP
                    if why_not is not None:
                        result["ingest_scaling_2_workers_capped"] = None
                        table.append((kind, f"ingest, each worker capped at {WORKER_CAP} core", why_not))
                        continue
                    # A capped worker is slow; --quick drains half the backlog to stay under a minute.
                    capped_n = ingest_n // 2 if args.quick else ingest_n
                    one, two = _ingest_rounds(broker, workdir, ingest_target, capped_n, rounds, WORKER_CAP)
                    result["ingest_scaling_2_workers_capped"] = round(two.per_s / one.per_s, 2)
                    result["ingest_capped_cores_busy_1_2"] = [
                        round(one.busy_cores, 2),
                        round(two.busy_cores, 2),
                    ]
                    table += [
                        (
                            kind,
                            f"ingest, each worker capped at {WORKER_CAP} core, 1 worker",
                            f"{one.per_s:,.0f} events/s, {one.busy_cores:.2f} cores busy",
                        ),
                        (
                            kind,
                            f"ingest, each worker capped at {WORKER_CAP} core, 2 workers",
                            f"{two.per_s:,.0f} events/s ({two.per_s / one.per_s:.2f}x), "
                            f"{two.busy_cores:.2f} cores busy",
                        ),
                    ]
            finally:
                broker.stop()
        finally:
            for drop in drops:
                drop()
    result["sqlite_ingest_scaling_2_workers"] = result["ingest_scaling_2_workers"]
    result["ingest_scaling_2_workers"] = result[headline + "ingest_scaling_2_workers"]
    result["ingest_scaling_backend"] = "postgresql" if postgres is not None else "sqlite"
    result["load_after"] = round(os.getloadavg()[0], 2)
    width = max(len(row[1]) for row in table)
    print(f"{'store':<11} {'measure':<{width}}  result")
    for kind, measure, value in table:
        print(f"{kind:<11} {measure:<{width}}  {value}")
    if postgres is None:
        print("(PostgreSQL not reachable or --no-postgres: SQLite only)")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
