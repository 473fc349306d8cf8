"""Fleet benchmark: hundreds to a thousand real gates on one broker and one console.

All in one run, PostgreSQL store, the gates of :mod:`simulator.fleet` (real outbox with
fsync, real link with its own TLS session and certificate, real decision) in this
process, mosquitto and the console's ingest workers in theirs, the web console's
watcher (alarms) in a thread here:

1. **steady load**, one scan per second per gate (Poisson arrivals): lost, duplicated,
   scan-to-console p50/p99 (the gate's decision time to the console's receipt stamp);
   console CPU per stored event (workers, broker, database: :mod:`bench.cpu`);
2. **broker restart** under the same load: seconds until every gate is online again and
   every event taken up to then is acknowledged; alarms raised (target: one
   ``broker.outage``, no ``gate.offline``);
3. **console outage**, the ingest workers stopped while the gates keep scanning, then
   started: drain rate against the arrival rate, timed from the restarted console's broker
   connection until every event of the outage is acknowledged (the start-up before it is
   reported apart, and the ratio counting it too); the same with two workers, with the
   cores that were busy (the ratio is a fact about the machine, not the software);
4. **failover**: every gate lists a twin broker (``[mqtt] failover``), the console reads
   both (console/brokers.py, in its own process), the gates' broker is SIGKILLed under
   load: seconds until every gate is on the twin (``failover_s``), and until everything
   taken before the kill is acknowledged;
5. **cost**: broker memory per connected gate, harness memory per gate, threads and
   file descriptors per gate — and the same gates with today's threads (paho's loop
   thread, a sender, an outbox writer per gate), the comparison, at ``--compare`` gates.

Lost and duplicated are counted at the end, per gate against its own last sequence
number, over all the phases.

``--quick``: 200 gates, 5 s of steady load, the broker down 3 s, console outages of 8 s
and 4 s (the issue's 10 minutes), a 10 s alarm grace (the console's is 60 s), the threads
comparison at 25 gates; the brokers' state in ``/dev/shm``.  Full: 1,000 gates, 60 s
phases, the 10-minute outage; ``--rate`` lowers the scans per gate where the machine
cannot take a thousand a second.  ``phase_s`` in the JSON says where the time went.

The gates run ``--gates-per-process`` (400) to a process (:class:`simulator.fleet.FleetProcesses`
beyond that): at 1 scan/s a thousand gates' own code needs more than the one core an
interpreter lock lets one process use.  Their CPU per scan is reported
(``harness_cpu_us_per_scan``) beside the console's, with the cores that were busy: on a
machine the gates share with the console, the two together are what it must carry.
``--steady-only`` stops after the steady phase: what rate a machine carries.

Usage: ``python bench/fleet.py [--quick] [--gates N] [--postgres URL]``.  Prints a
table, then one JSON line.
"""

from __future__ import annotations

import argparse
import atexit
import json
import logging
import os
import shutil
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.cpu import TICK_S, Ticks, pids_named  # noqa: E402
from broker.config import QueueSizing  # noqa: E402
from broker.launcher import Broker  # noqa: E402
from broker.twin import copy_identity  # noqa: E402
from simulator.fleet import Fleet, FleetProcesses, open_fds, raise_open_files, rss_kb  # noqa: E402

AnyFleet = Fleet | FleetProcesses
from simulator.scenario import resident_codes  # noqa: E402

DEFAULT_POSTGRES = "postgresql://postgres@127.0.0.1:5432/postgres"
SITE = "fleet"


def pct(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


def _database(server: str) -> tuple[str, Callable[[], None]]:
    from urllib.parse import urlsplit, urlunsplit

    import psycopg

    name = f"gp_fleet_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(server, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')

    def drop() -> None:
        with psycopg.connect(server, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    return urlunsplit(urlsplit(server)._replace(path=f"/{name}")), drop


def _time(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


class Console:
    """The console's ingest workers (processes) and the web console's watcher (a thread here)."""

    def __init__(self, broker: Broker, url: str, grace_s: float) -> None:
        from console.alarms import AlarmBook
        from console.ingest import WorkerSpec
        from console.store import EventStore
        from console.web.hub import GateBoard, Hub, Watcher

        creds = broker.add_console("fleet")
        self.creds = creds
        self.spec = WorkerSpec(broker.endpoint(creds), url, name="fleet", site=SITE, log_level="WARNING")
        self.store = EventStore(url)
        self.alarms = AlarmBook(self.store.db)
        self.watcher = Watcher(self.store, self.store.db, self.alarms, Hub(), GateBoard())
        self.watcher.outages.grace_s = grace_s
        self.workers: Any = None

    def start(self, workers: int = 1, *, wait: bool = True) -> None:
        from console.ingest import IngestWorkers

        self.workers = IngestWorkers(self.spec, workers).start()
        if wait and not self.workers.wait_ready(120):
            raise SystemExit("the console's ingest workers did not subscribe")
        if not self.watcher._thread:
            self.watcher.start()

    def connected_since(self) -> float | None:
        """When the ingest (worker 0) last connected to the broker, by its own stamp (``console_link``)."""
        rows = self.store.db.query("SELECT state, since FROM console_link WHERE name = ?", (self.spec.name,))
        return _time(rows[0][1]) if rows and rows[0][0] == "connected" else None

    def stop(self) -> None:
        if self.workers is not None:
            self.workers.stop()
            self.workers = None

    def pids(self) -> list[int]:
        return [pid for pid in self.workers.pids() if pid is not None] if self.workers else []

    def stored(self) -> int:
        return int(self.store.db.query("SELECT COUNT(*) FROM events WHERE site = ?", (SITE,))[0][0])

    def integrity(self, owed: dict[str, int]) -> tuple[int, int]:
        """(lost, duplicated): per gate, numbers 1..owed not stored, and numbers stored twice."""
        rows = self.store.db.query(
            "SELECT gate, seq, COUNT(*) FROM events WHERE site = ? GROUP BY gate, seq", (SITE,)
        )
        seqs: dict[str, set[int]] = {}
        dup = 0
        for gate, seq, count in rows:
            seqs.setdefault(gate, set()).add(int(seq))
            dup += int(count) - 1
        lost = sum(last - sum(1 for seq in seqs.get(gate, ()) if seq <= last) for gate, last in owed.items())
        return lost, dup

    def latencies_ms(self, since: str) -> list[float]:
        rows = self.store.db.query(
            "SELECT time, received_at FROM events WHERE site = ? AND type = 'access.scan' AND received_at >= ?",
            (SITE, since),
        )
        return [(_time(received) - _time(at)) * 1000 for at, received in rows]

    def batches_since(self, since: str) -> int:
        """Ingest batches committed since ``since``: each stamps all its events with one ``received_at``."""
        rows = self.store.db.query(
            "SELECT COUNT(DISTINCT received_at) FROM events WHERE site = ? AND received_at >= ?",
            (SITE, since),
        )
        return int(rows[0][0])

    def alarms_since(self, row_id: int) -> dict[str, int]:
        counts: dict[str, int] = {}
        for alarm in self.alarms.list(limit=100_000):
            if alarm.row_id > row_id:
                counts[alarm.kind] = counts.get(alarm.kind, 0) + 1
        return counts

    def last_alarm(self) -> int:
        return max((alarm.row_id for alarm in self.alarms.list(limit=1)), default=0)

    def close(self) -> None:
        self.stop()
        self.watcher.stop()
        self.store.close()


def _stamp() -> str:
    from console.db import now_text

    return now_text()


def _under_load(
    fleet: AnyFleet, seconds: float, rate: float
) -> tuple[threading.Thread, threading.Event, dict[str, Any]]:
    stop = threading.Event()
    result: dict[str, Any] = {}

    def run() -> None:
        result.update(fleet.run_load(seconds, per_gate_per_s=rate, stop=stop))

    thread = threading.Thread(target=run, name="fleet-load", daemon=True)
    thread.start()
    return thread, stop, result


def compare_threads(
    scratch: Path, workdir: Path, gates: int, load_s: float = 2.0
) -> dict[str, dict[str, float]]:
    """Threads, descriptors and memory per gate: shared loop and pool against a thread per client."""
    out: dict[str, dict[str, float]] = {}
    for shared in (True, False):
        broker = Broker(scratch / f"cmp-{shared}", gates=gates)
        creds = broker.add_gates(SITE, [f"c{i:04d}" for i in range(gates)])
        broker.start()
        try:
            rss0, fds0, threads0 = rss_kb(), open_fds(), threading.active_count()
            fleet = Fleet(
                workdir / f"cmp-{shared}" / "gates",
                SITE,
                creds,
                broker.endpoint,
                codes=resident_codes(50),
                shared=shared,
            )
            began = time.perf_counter()
            fleet.start()
            # A thread per client connecting at once on a busy machine may not all get through
            # their TLS handshakes in time: that is a finding, not a reason to lose the run.
            connected = fleet.wait(lambda f=fleet: f.connected() == gates, 60)
            connect_s = time.perf_counter() - began
            fleet.run_load(load_s)
            out["shared" if shared else "threads"] = {
                "kb_per_gate": round((rss_kb() - rss0) / gates, 1),
                "fds_per_gate": round((open_fds() - fds0) / gates, 2),
                "threads_per_gate": round((threading.active_count() - threads0) / gates, 2),
                "connected": fleet.connected(),
                "connect_s": round(connect_s, 2) if connected else None,
            }
            fleet.stop()
        finally:
            broker.stop()
    return out


def _scratch_dir() -> Path:
    """Where the brokers' state goes: memory (``/dev/shm``) when there is one.

    Provisioning writes each gate's key and certificate with two fsyncs each (broker/files.py,
    as it must for a real site): 1,200 fsyncs for 200 gates, 5 of the 9 s it took on disk.
    That is setting up the bench, not a figure of it.  The gates' outboxes stay on the disk.
    """
    shm = Path("/dev/shm")
    return Path(tempfile.mkdtemp(prefix="gatepost-fleet-brokers-", dir=shm if shm.is_dir() else None))


def _drain(
    console: Console,
    fleet: AnyFleet,
    broker: Broker,
    workers: int,
    seconds: float,
    rate: float,
    timeout: float,
) -> dict[str, Any]:
    """Stop the console for ``seconds`` under load, start it, and time the catching up while the
    gates keep scanning: from the moment the restarted console is connected to the broker (its
    own ``console_link`` stamp; the start-up before it, spawning the workers, importing, opening
    the store, is reported apart as ``start_s``) until every event taken during the outage is
    acknowledged.  The rate counts all it stored meanwhile: the backlog, and the events that
    kept arriving."""
    console.stop()
    resends0 = fleet.resends()
    thread, stop, _ = _under_load(fleet, 3600, rate)
    time.sleep(seconds)
    backlog = fleet.backlog()
    marks = fleet.marks()
    stored0 = console.stored()
    groups = {"workers": [], "broker": [broker.pid or 0], "database": pids_named("postgres")}
    ticks = Ticks(groups).start()
    started, taken0 = time.time(), fleet.taken()
    console.start(workers, wait=False)
    caught_up = fleet.wait(lambda m=marks: fleet.acked_through(m), timeout, 0.02)
    ended = time.time()
    used = ticks.stop()
    stored, taken = console.stored(), fleet.taken()
    resends = fleet.resends() - resends0
    stop.set()
    thread.join()
    connected = console.connected_since()
    began = connected if connected is not None and started <= connected <= ended else started
    drain_s = ended - began
    whole_s = ended - started
    return {
        "outage_s": seconds,
        "backlog": backlog,
        "start_s": round(began - started, 2),
        "drain_s": round(drain_s, 2),
        "stored_per_s": round((stored - stored0) / drain_s, 1),
        "arrival_per_s": round((taken - taken0) / whole_s, 1),
        "nominal_arrival_per_s": round(len(fleet) * rate, 1),
        "stored_per_s_incl_start": round((stored - stored0) / whole_s, 1),
        "busy_cores": round(used["machine"] * TICK_S / whole_s, 2),
        "resends_during_outage_and_drain": resends,
        "caught_up": caught_up,
    }


def _failover_console(endpoints: list[Any], url: str, ready: Any, stop: Any) -> None:
    """The console of the failover phase, in a process of its own as ``console run`` is:
    console/brokers.py's one ingestor per broker, one store.  (In the bench's process, with a
    thousand gate sockets open, paho's ``select`` loop could not take a descriptor above 1,023.)"""
    from console.brokers import BrokerIngest
    from console.ingest import share_group_name, sweep_worker_sessions
    from console.store import EventStore

    logging.basicConfig(level=logging.WARNING)
    store = EventStore(url)
    # As ``console run`` does: end the sessions of the workers of before, which would hold a
    # share of the events, and leave their $share group (console/cli.py).
    sweep_worker_sessions(endpoints[0], keep=1)
    ingest = BrokerIngest(
        endpoints,
        store,
        name="fleet",
        site=SITE,
        share_group=share_group_name("fleet", endpoints[0].password),
    )
    try:
        ingest.start()
        ready.put(ingest.wait_connected(60))
        stop.wait()
    finally:
        ingest.stop()
        store.close()


def _failover(
    fleet: AnyFleet,
    url: str,
    first: Broker,
    second: Broker,
    console_creds: Any,
    rate: float,
    before_s: float,
    timeout: float,
) -> dict[str, Any]:
    """Kill the gates' broker (SIGKILL) under load while a twin runs beside it: seconds until every
    gate is connected to the twin, and until every event taken before the kill is acknowledged.

    The console reads both brokers as ``[mqtt] failover`` makes it (console/brokers.py).
    """
    import multiprocessing

    fleet.add_broker(second.endpoint)
    mp = multiprocessing.get_context("spawn")
    ready, stop_console = mp.Queue(), mp.Event()
    endpoints = [first.endpoint(console_creds), second.endpoint(console_creds)]
    proc = mp.Process(target=_failover_console, args=(endpoints, url, ready, stop_console), daemon=True)
    proc.start()
    try:
        if not ready.get(timeout=120):
            raise SystemExit("the console did not subscribe on both brokers")
        thread, stop, _ = _under_load(fleet, 3600, rate)
        time.sleep(before_s)
        n = len(fleet)
        killed = time.perf_counter()
        first.kill()
        moved = fleet.wait(lambda: fleet.on_broker(1) == n, timeout, 0.02)
        moved_s = time.perf_counter() - killed
        marks = fleet.marks()
        caught_up = fleet.wait(lambda: fleet.acked_through(marks), timeout, 0.05)
        caught_up_s = time.perf_counter() - killed
        stop.set()
        thread.join()
        fleet.wait(lambda: fleet.backlog() == 0, timeout)
        return {
            "all_moved_s": round(moved_s, 2) if moved else None,
            "caught_up_s": round(caught_up_s, 2) if caught_up else None,
            "on_second": fleet.on_broker(1),
        }
    finally:
        stop_console.set()
        proc.join(15)
        if proc.is_alive():
            proc.kill()


def run(args: argparse.Namespace) -> dict[str, Any]:
    wall = time.perf_counter()
    quick = args.quick
    n = args.gates or (200 if quick else 1000)
    steady_s = args.steady_s or (5.0 if quick else 60.0)
    outage_s = args.outage_s or (8.0 if quick else 600.0)
    grace_s = 10.0 if quick else 60.0
    soft, _hard = raise_open_files()  # mosquitto, started from here, inherits it
    workdir = Path(tempfile.mkdtemp(prefix="gatepost-fleet-"))
    scratch = _scratch_dir()
    for folder in (scratch, workdir):  # also when a phase ends the run
        atexit.register(shutil.rmtree, folder, True)
    url, drop = _database(args.postgres)
    result: dict[str, Any] = {
        "gates": n,
        "quick": quick,
        "rate_per_gate": args.rate,
        "open_files_limit": soft,
    }
    sizing = QueueSizing(
        gates=n, peak_events_per_s=max(args.rate, 0.1), outage_s=int(outage_s * 1.5), headroom=2.0
    )
    broker = Broker(scratch / "broker", max_queued_messages=sizing.messages, gates=n)
    twin: Broker | None = None
    console: Console | None = None
    fleet: AnyFleet | None = None
    try:
        began = time.perf_counter()
        creds = broker.add_gates(SITE, [f"g{i:04d}" for i in range(n)])
        result["provision_s"] = round(time.perf_counter() - began, 2)
        broker.start()
        broker_kb0 = rss_kb(broker.pid)
        console = Console(broker, url, grace_s)
        # The failover phase's second broker: a twin of the first (broker/twin.py), same accounts.
        copy_identity(broker.state_dir, scratch / "twin")
        twin = Broker(scratch / "twin", max_queued_messages=sizing.messages, gates=n)
        twin.start()
        console.start(1, wait=False)  # the worker starts while the gates connect
        harness_kb0 = rss_kb()
        processes = -(-n // args.gates_per_process)
        result["harness_processes"] = processes
        fleet = (
            FleetProcesses(
                workdir / "gates",
                SITE,
                creds,
                broker.endpoint,
                codes=resident_codes(500),
                processes=processes,
            )
            if processes > 1
            else Fleet(workdir / "gates", SITE, creds, broker.endpoint, codes=resident_codes(500))
        )
        began = time.perf_counter()
        fleet.start()
        if not fleet.wait(lambda: fleet.connected() == n, 120):
            raise SystemExit(f"only {fleet.connected()} of {n} gates connected")
        result["connect_all_s"] = round(time.perf_counter() - began, 2)
        if not console.workers.wait_ready(120):
            raise SystemExit("the console's ingest workers did not subscribe")
        fleet.wait(lambda: fleet.backlog() == 0, 30)
        time.sleep(0.5)
        result["broker_kb_per_gate"] = round((rss_kb(broker.pid) - broker_kb0) / n, 1)

        phases: dict[str, float] = {}
        mark = [wall]

        def phase(name: str) -> None:
            now = time.perf_counter()
            phases[name] = round(now - mark[0], 1)
            mark[0] = now

        result["phase_s"] = phases
        phase("setup")

        # 1. steady load
        since = _stamp()
        groups = {
            "workers": console.pids(),
            "broker": [broker.pid or 0],
            "database": pids_named("postgres"),
            "harness": sorted({os.getpid(), *fleet.pids}),  # the gates, and the console's watcher thread
        }
        stored0, ticks = console.stored(), Ticks(groups).start()
        load = fleet.run_load(steady_s, per_gate_per_s=args.rate)
        drained = fleet.wait(lambda: fleet.backlog() == 0, 60, 0.02)
        used = ticks.stop()
        steady_wall_s = load["elapsed_s"]
        stored = console.stored() - stored0
        latencies = console.latencies_ms(since)
        result["steady"] = {
            "due": load["due"],
            "taken": load["taken"],
            "stored": stored,
            "drained": drained,
            "scans_per_s": round(load["taken"] / load["elapsed_s"], 1),
            "p50_ms": round(pct(latencies, 50) or 0, 1),
            "p99_ms": round(pct(latencies, 99) or 0, 1),
            "reader_lag_p99_ms": load["start_lag_p99_ms"],
            "events_per_batch": round(stored / max(1, console.batches_since(since)), 2),
            "busy_cores": round(used["machine"] * TICK_S / steady_wall_s, 2),
        }
        result["scan_to_console_p99_ms"] = result["steady"]["p99_ms"]
        result["console_cpu_us_per_event"] = round(
            sum(used[g] for g in ("workers", "broker", "database")) * TICK_S / max(1, stored) * 1e6, 1
        )
        result["console_cpu_split_us"] = {
            g: round(used[g] * TICK_S / max(1, stored) * 1e6, 1)
            for g in ("workers", "broker", "database", "other")
        }
        # What the simulated gates cost this machine besides: the same real gate code that
        # runs on each Pi, here in this process or the fleet's processes (FleetProcesses).
        result["harness_cpu_us_per_scan"] = round(used["harness"] * TICK_S / max(1, load["taken"]) * 1e6, 1)
        # This process's growth since before the gates, and every fleet process whole
        # (an interpreter each: counted, not subtracted).
        harness_kb = rss_kb() - harness_kb0 + sum(rss_kb(pid) for pid in fleet.pids if pid != os.getpid())
        result["harness_mb_per_gate"] = round(harness_kb / n / 1024, 3)

        phase("steady")
        if not args.steady_only:  # a capacity run stops here
            # 2. broker restart under load
            alarm_mark = console.last_alarm()
            thread, stop, _ = _under_load(fleet, 3600, args.rate)
            time.sleep(1.0)
            began = time.perf_counter()
            broker.stop()
            time.sleep(args.broker_down_s)  # an upgrade or a reboot, not only a process restart
            broker.start()
            online = fleet.wait(lambda: fleet.connected() == n, 120, 0.02)
            online_s = time.perf_counter() - began
            marks = fleet.marks()
            caught_up = fleet.wait(lambda: fleet.acked_through(marks), args.drain_timeout, 0.02)
            recovery_s = time.perf_counter() - began
            stop.set()
            thread.join()
            fleet.wait(lambda: fleet.backlog() == 0, 60)
            # Held offlines raise (if they do) once the grace after the console's reconnect has
            # passed; the console outages below run meanwhile and are counted after it.
            alarms_due = time.monotonic() + grace_s + console.watcher.outages.hold_s + 3
            time.sleep(1.0)  # the watcher has read the gates' ``online`` before the console stops
            result["restart"] = {"all_online_s": round(online_s, 2), "recovered": online and caught_up}
            result["broker_restart_recovery_s"] = round(recovery_s, 2)

            phase("broker_restart")

            # 3. console outage, then the drain, with one worker and then two
            for workers, seconds in ((1, outage_s), (2, outage_s / 2)):
                result[f"drain_{workers}w"] = _drain(
                    console, fleet, broker, workers, seconds, args.rate, args.drain_timeout
                )
                fleet.wait(lambda: fleet.backlog() == 0, args.drain_timeout)
            # The console's rate while catching up, against the rate at which events kept arriving.
            first = result["drain_1w"]
            result["console_outage_drain_ratio"] = round(
                first["stored_per_s"] / max(1.0, first["arrival_per_s"]), 2
            )
            result["console_outage_drain_ratio_incl_start"] = round(
                first["stored_per_s_incl_start"] / max(1.0, first["arrival_per_s"]), 2
            )
            result["ingest_2w_over_1w"] = round(
                result["drain_2w"]["stored_per_s"] / result["drain_1w"]["stored_per_s"], 2
            )

            phase("console_outages")
            time.sleep(max(0.0, alarms_due - time.monotonic()))
            phase("alarm_wait")
            alarms = console.alarms_since(alarm_mark)
            result["restart"]["alarms"] = alarms
            result["restart"]["suppressed_offline"] = console.watcher.outages.suppressed
            result["offline_alarms_on_restart"] = alarms.get("broker.outage", 0) + alarms.get(
                "gate.offline", 0
            )

            # 4. failover: the gates' broker killed, a twin beside it
            console.stop()
            result["failover"] = _failover(
                fleet, url, broker, twin, console.creds, args.rate, 1.0, args.drain_timeout
            )
            result["failover_s"] = result["failover"]["all_moved_s"]
            phase("failover")

        result["backlog_at_end"] = fleet.backlog()  # still in the gates' outboxes: not lost, not counted
        lost, duplicates = console.integrity(fleet.pending_excluded())
        result["lost"] = lost
        result["duplicates"] = duplicates
        result["taken"] = fleet.taken()
        result["resends"] = fleet.resends()
    finally:
        if fleet is not None:
            fleet.stop()
        if console is not None:
            console.close()
        broker.stop()
        if twin is not None:
            twin.stop()
        drop()
    try:
        if args.compare:
            began = time.perf_counter()
            result["per_gate"] = compare_threads(scratch, workdir, args.compare)
            result.setdefault("phase_s", {})["compare"] = round(time.perf_counter() - began, 1)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
        shutil.rmtree(workdir, ignore_errors=True)
    result["broker_queue_messages"] = sizing.messages
    result["run_s"] = round(time.perf_counter() - wall, 1)
    return result


def table(result: dict[str, Any]) -> str:
    steady = result["steady"]
    lines = [
        f"fleet: {result['gates']} gates, PostgreSQL store ({'quick' if result['quick'] else 'full'})",
        f"  provision {result['provision_s']} s, all connected in {result['connect_all_s']} s",
        f"  steady {result['rate_per_gate']:g}/s/gate: {steady['taken']} taken, {steady['stored']} stored, "
        f"{steady['scans_per_s']}/s, scan-to-console p50 {steady['p50_ms']} ms p99 {steady['p99_ms']} ms "
        f"(readers late {steady['reader_lag_p99_ms']} ms at p99; {steady['busy_cores']} cores busy)",
        f"  console {result['console_cpu_us_per_event']} us CPU/event {result['console_cpu_split_us']}; "
        f"harness {result['harness_cpu_us_per_scan']} us CPU/scan, {result['harness_mb_per_gate']} MB/gate",
    ]
    if "restart" in result:
        restart = result["restart"]
        lines.append(
            f"  broker restart: all online in {restart['all_online_s']} s, caught up in "
            f"{result['broker_restart_recovery_s']} s; alarms {restart['alarms']}"
        )
        for workers in (1, 2):
            d = result[f"drain_{workers}w"]
            lines.append(
                f"  console outage {d['outage_s']:g} s, {workers} worker(s): backlog {d['backlog']}, started in "
                f"{d['start_s']} s, drained in {d['drain_s']} s at {d['stored_per_s']}/s vs "
                f"{d['arrival_per_s']}/s arriving ({d['busy_cores']} cores busy; "
                f"{d['resends_during_outage_and_drain']} resends)"
            )
        lines.append(
            f"  drain / arrival: {result['console_outage_drain_ratio']} "
            f"(counting the start-up: {result['console_outage_drain_ratio_incl_start']})"
        )
        fo = result["failover"]
        lines.append(
            f"  failover (broker SIGKILLed, twin beside it): all {fo['on_second']} gates moved in "
            f"{fo['all_moved_s']} s, caught up in {fo['caught_up_s']} s"
        )
    lines += [
        f"  lost {result['lost']}, duplicates {result['duplicates']} of {result['taken']} taken "
        f"({result['resends']} resends in all); run {result['run_s']} s",
        f"  broker {result['broker_kb_per_gate']} KB/gate",
    ]
    for mode, cost in result.get("per_gate", {}).items():
        lines.append(f"  per gate ({mode}): {cost}")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--gates", type=int, default=None)
    parser.add_argument("--steady-s", type=float, default=None)
    parser.add_argument("--outage-s", type=float, default=None)
    parser.add_argument(
        "--compare", type=int, default=None, help="gates for the threads comparison (quick: 25)"
    )
    parser.add_argument("--rate", type=float, default=1.0, help="scans per second per gate")
    parser.add_argument(
        "--drain-timeout", type=float, default=900.0, help="longest wait for a backlog to drain, seconds"
    )
    parser.add_argument("--broker-down-s", type=float, default=3.0, help="how long the broker stays down")
    parser.add_argument("--postgres", default=DEFAULT_POSTGRES)
    parser.add_argument(
        "--gates-per-process",
        type=int,
        default=400,
        help="gates per harness process (one interpreter lock cannot carry 1,000 gates at 1 scan/s)",
    )
    parser.add_argument(
        "--steady-only",
        action="store_true",
        help="only the steady load and its costs: what rate this machine can carry for --gates",
    )
    parser.add_argument(
        "--log-level", default="ERROR", help="this process's log level (the gates, the watcher)"
    )
    args = parser.parse_args()
    if args.compare is None:
        args.compare = 25 if args.quick else 200
    logging.basicConfig(level=args.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    result = run(args)
    print(table(result))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
