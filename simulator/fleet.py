"""Hundreds of gates in one process, each running the real gate code: the fleet harness.

A district runs thousands of gates; every other figure here comes from a handful.  Each
:class:`FleetGate` is what a gate agent is on the access path and the link — the same
:class:`~edge.decision.GateDecider`, :class:`~edge.agent.RepeatFilter`, durable
:class:`~edge.outbox.Outbox` (its own folder, ``synchronous=FULL`` as shipped) and
:class:`~edge.link.Link` (its own MQTT session, client id, certificate and will) — with a
simulated reader: :meth:`FleetGate.present` is what a reader thread's scan does.  What
a gate agent adds beyond that (the health reporter, metrics, guard screen, door) is
per-board equipment and left out; docs/fleet.md says so.

What makes several hundred fit in one process is sharing threads, not changing the
gate's logic: the links share one network thread per :class:`~edge.netloop.SharedNetwork`
(``loops`` of them) and the outboxes a :class:`~edge.writers.WriterPool`; with
``shared=False`` every gate has the threads a gate agent has today (paho's loop, a
sender, an outbox writer), the comparison :mod:`bench.fleet` measures.

Arrivals: :meth:`Fleet.run_load` drives every gate with Poisson arrivals through
:func:`simulator.day.next_arrival` — a constant rate (the benchmark's one scan per
second per gate) or a compound-day rate function (:class:`simulator.day.CompressedDay`).
"""

from __future__ import annotations

import contextlib
import heapq
import logging
import os
import random
import resource
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from broker.provision import Credentials
from edge.agent import RepeatFilter
from edge.clock import ClockReading
from edge.decision import AllowList, GateDecider
from edge.link import Link
from edge.netloop import SharedNetwork
from edge.outbox import Outbox
from edge.writers import WriterPool
from protocol import GateTopics
from protocol import events as ev
from protocol.mqtt import BrokerEndpoint
from simulator.day import next_arrival

log = logging.getLogger("gatepost.simulator.fleet")


def raise_open_files() -> tuple[int, int]:
    """Soft RLIMIT_NOFILE up to the hard limit: each gate holds a socket and its outbox's files."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)


def rss_kb(pid: int | None = None) -> int:
    """Resident set size of a process (this one by default), from ``/proc``."""
    text = Path(f"/proc/{pid or os.getpid()}/status").read_text()
    for line in text.splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def open_fds(pid: int | None = None) -> int:
    return len(os.listdir(f"/proc/{pid or os.getpid()}/fd"))


@dataclass
class FleetGate:
    """One gate: decision, repeat filter, outbox, link; :meth:`present` is a reader's scan."""

    site: str
    gate: str
    outbox: Outbox
    link: Link
    decider: GateDecider
    repeats: RepeatFilter
    taken: int = 0
    last_seq: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def present(self, code: str) -> float | None:
        """Decide on ``code`` and take the event, as GateAgent._present does; the commit's
        wall time (``None``: a repeat, or refused)."""
        now_ns = time.monotonic_ns()
        if not self.repeats.fresh(code, now_ns):
            return None
        reading = ClockReading(datetime.now(UTC), True, 0.0)
        decision = self.decider.decide(code, reading, "in")
        data: dict[str, Any] = {
            "credential": "pass",
            "code": code,
            "granted": decision.granted,
            "reason": decision.reason.value,
            "reader": "scanner",
            "direction": "in",
            **decision.event_fields(),
        }
        event = self.outbox.append(ev.ACCESS_SCAN, data, time=reading.wall, clock_trusted=True)
        if event is None:
            return None
        with self.lock:
            self.taken += 1
            self.last_seq = max(self.last_seq, event.seq)
        return time.time()


class Fleet:
    """``gates`` gates of ``site`` under ``root``, each logging in with its own credentials."""

    def __init__(
        self,
        root: Path,
        site: str,
        credentials: Sequence[Credentials],
        endpoint: Callable[[Credentials], BrokerEndpoint],
        *,
        codes: Sequence[str],
        shared: bool = True,
        loops: int = 2,
        writer_threads: int = 4,
        sync: str = "full",
        resend_after_s: float = 15.0,
        seed: int = 17,
    ) -> None:
        raise_open_files()
        self.root = Path(root)
        self.site = site
        self.shared = shared
        self.codes = list(codes)
        allow = AllowList(frozenset(self.codes))
        self.networks = (
            [SharedNetwork(f"mqtt-shared-{i}", seed=seed + i) for i in range(loops)] if shared else []
        )
        self.writers = WriterPool(writer_threads) if shared else None
        self.gates: list[FleetGate] = []
        self.credentials = list(credentials)
        for index, creds in enumerate(credentials):
            gate = creds.username.split(".", 2)[2]
            folder = self.root / gate
            folder.mkdir(parents=True, exist_ok=True)
            outbox = Outbox(folder / "outbox.db", site=site, gate=gate, sync=sync, writers=self.writers)
            link = Link(
                endpoint(creds),
                GateTopics(site, gate),
                outbox,
                version="fleet",
                resend_after_s=resend_after_s,
                clock_trusted=lambda: True,
                network=self.networks[index % loops] if shared else None,
            )
            self.gates.append(FleetGate(site, gate, outbox, link, GateDecider(allow), RepeatFilter(2.0)))
        self._rng = random.Random(seed)

    # -- lifecycle ---------------------------------------------------------------------

    def start(self) -> None:
        for gate in self.gates:
            gate.link.start()

    def stop(self) -> None:
        def stop_one(gate: FleetGate) -> None:
            gate.link.stop(timeout=2.0)
            gate.outbox.close()

        with ThreadPoolExecutor(16) as pool:
            list(pool.map(stop_one, self.gates))
        for network in self.networks:
            network.close()
        if self.writers is not None:
            self.writers.close()

    def connected(self) -> int:
        return sum(gate.link.connected for gate in self.gates)

    def backlog(self) -> int:
        return sum(gate.outbox.backlog for gate in self.gates)

    def wait(self, condition: Callable[[], bool], timeout: float, interval: float = 0.1) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if condition():
                return True
            time.sleep(interval)
        return condition()

    def taken(self) -> int:
        return sum(gate.taken for gate in self.gates)

    def resends(self) -> int:
        """Events the gates published again before an acknowledgement (edge/resend.py)."""
        return sum(gate.link.resent for gate in self.gates)

    def add_broker(self, endpoint: Callable[[Credentials], BrokerEndpoint]) -> None:
        """List a second broker after each gate's first, as ``[mqtt] failover`` does (edge/failover.py).

        A gate reads its list when its broker fails, so adding to it in place is what a
        restart with the new configuration would give, without losing the sessions; the
        broker restart before it is then still a restart, not a move.
        """
        for gate, creds in zip(self.gates, self.credentials, strict=True):
            gate.link.brokers.endpoints.append(endpoint(creds))

    def on_broker(self, index: int) -> int:
        """Gates connected to their ``index``-th broker."""
        return sum(gate.link.connected and gate.link.brokers.index == index for gate in self.gates)

    def last_seqs(self) -> dict[str, int]:
        return {gate.gate: gate.last_seq for gate in self.gates}

    def marks(self) -> dict[str, int]:
        """Per gate, the last number its outbox gave: what "everything taken so far" means."""
        return {gate.gate: gate.outbox.last_seq for gate in self.gates}

    def acked_through(self, marks: dict[str, int]) -> bool:
        """Whether every gate's console has acknowledged everything up to its ``marks`` entry."""
        for gate in self.gates:
            first = gate.outbox.first_pending_seq()
            if first is not None and first <= marks[gate.gate]:
                return False
        return True

    def __len__(self) -> int:
        return len(self.gates)

    @property
    def pids(self) -> list[int]:
        """The processes the gates run in (their CPU and memory are the harness's)."""
        return [os.getpid()]

    def pending_excluded(self) -> dict[str, int]:
        """Per gate, the last seq the console must have: everything taken and acknowledged.

        An event still in a gate's outbox is owed, not lost; a count taken before every
        backlog drained compares the console with the acknowledged part only.
        """
        out = {}
        for gate in self.gates:
            first = gate.outbox.first_pending_seq()
            out[gate.gate] = gate.last_seq if first is None else min(gate.last_seq, first - 1)
        return out

    # -- load --------------------------------------------------------------------------

    def run_load(
        self,
        duration_s: float,
        *,
        per_gate_per_s: float = 1.0,
        rate: Callable[[float], float] | None = None,
        readers: int = 32,
        stop: threading.Event | None = None,
        lateness: bool = False,
    ) -> dict[str, Any]:
        """Scans at every gate for ``duration_s``: Poisson arrivals of ``rate(t)`` per second per
        gate (default the constant ``per_gate_per_s``), each presented on one of ``readers``
        threads, as a gate's reader thread would.  Returns how many were due, taken, late
        (with ``lateness``, every scan's lateness in seconds too, for merging fleets' figures)."""
        peak = per_gate_per_s
        if rate is None:
            rate = lambda _t: per_gate_per_s  # noqa: E731
        heap: list[tuple[float, int]] = []
        for index in range(len(self.gates)):
            heapq.heappush(heap, (next_arrival(0.0, rate, peak, self._rng), index))
        began = time.monotonic()
        due = taken = 0
        late: list[float] = []
        lock = threading.Lock()

        def scan(index: int, at: float) -> None:
            nonlocal taken
            lag = time.monotonic() - began - at
            if self.gates[index].present(self._rng.choice(self.codes)) is not None:
                with lock:
                    taken += 1
                    late.append(lag)

        with ThreadPoolExecutor(readers, thread_name_prefix="fleet-reader") as pool:
            while heap and not (stop is not None and stop.is_set()):
                at, index = heapq.heappop(heap)
                if at >= duration_s:
                    break
                wait = began + at - time.monotonic()
                if wait > 0:
                    time.sleep(wait)
                pool.submit(scan, index, at)
                due += 1
                heapq.heappush(heap, (next_arrival(at, rate, peak, self._rng), index))
        late.sort()
        result: dict[str, Any] = {
            "due": due,
            "taken": taken,
            "elapsed_s": time.monotonic() - began,
            "start_lag_p99_ms": _p99_ms(late),
        }
        if lateness:
            result["lateness_s"] = late
        return result

    # -- cost --------------------------------------------------------------------------

    def threads(self) -> int:
        return threading.active_count()


def _p99_ms(ordered: list[float]) -> float | None:
    return round(ordered[int(0.99 * (len(ordered) - 1))] * 1000, 1) if ordered else None


class FleetProcesses:
    """The same gates spread over ``processes`` child processes, each a :class:`Fleet` of its share.

    One interpreter runs Python on one core at a time.  A thousand gates at a scan a
    second each cost about a core of the gate code's own CPU (bench/fleet.py measures
    it), which one process cannot give them: its gates' network threads and outbox
    writers queue behind each other, and the scan-to-console time measured is the
    harness's queue, not the console's.  A few hundred gates per process, as a district's
    gates are each their own board, keeps the harness from being the bottleneck it
    measures.  The methods are :class:`Fleet`'s, answered by every child and summed; each
    child's gates keep their own sessions, outboxes and arrivals.
    """

    def __init__(
        self,
        root: Path,
        site: str,
        credentials: Sequence[Credentials],
        endpoint: Callable[[Credentials], BrokerEndpoint],
        *,
        codes: Sequence[str],
        processes: int = 2,
        seed: int = 17,
        **options: Any,
    ) -> None:
        import multiprocessing

        self.credentials = list(credentials)
        context = multiprocessing.get_context("spawn")  # no threads or sockets of ours inherited
        self._children: list[tuple[Any, Any, threading.Lock]] = []
        share = -(-len(self.credentials) // max(1, processes))
        self._shares = [self.credentials[i : i + share] for i in range(0, len(self.credentials), share)]
        for index, part in enumerate(self._shares):
            spec = {
                "root": Path(root),
                "site": site,
                "credentials": part,
                "endpoints": [endpoint(creds) for creds in part],
                "codes": list(codes),
                "seed": seed + index * share,
                "options": options,
            }
            ours, theirs = context.Pipe()
            child = context.Process(target=_serve, args=(theirs, spec), name=f"fleet-{index}")
            child.start()
            theirs.close()
            self._children.append((child, ours, threading.Lock()))
        ready = sum(self._all("ready"))
        if ready != len(self.credentials):
            raise RuntimeError(f"the fleet processes started {ready} of {len(self.credentials)} gates")

    def _call(self, index: int, method: str, *args: Any) -> Any:
        child, conn, lock = self._children[index]
        with lock:
            conn.send((method, args))
            status, value = conn.recv()
        if status != "ok":
            raise RuntimeError(f"fleet process {child.name}: {method} failed: {value}")
        return value

    def _all(self, method: str, *args: Any) -> list[Any]:
        """Ask every child at once (each answers on its own), then collect."""
        for _child, conn, lock in self._children:
            lock.acquire()
            conn.send((method, args))
        answers = []
        try:
            for child, conn, _lock in self._children:
                status, value = conn.recv()
                if status != "ok":
                    raise RuntimeError(f"fleet process {child.name}: {method} failed: {value}")
                answers.append(value)
        finally:
            for _child, _conn, lock in self._children:
                lock.release()
        return answers

    # -- Fleet's interface ---------------------------------------------------------------

    def start(self) -> None:
        self._all("start")

    def stop(self) -> None:
        try:
            self._all("stop")
        finally:
            for child, conn, _lock in self._children:
                with contextlib.suppress(OSError):
                    conn.send(("exit", ()))
                child.join(30)
                if child.is_alive():
                    child.kill()
                conn.close()

    def connected(self) -> int:
        return sum(self._all("connected"))

    def backlog(self) -> int:
        return sum(self._all("backlog"))

    wait = Fleet.wait

    def taken(self) -> int:
        return sum(self._all("taken"))

    def resends(self) -> int:
        return sum(self._all("resends"))

    def add_broker(self, endpoint: Callable[[Credentials], BrokerEndpoint]) -> None:
        for (child, conn, lock), part in zip(self._children, self._shares, strict=True):
            with lock:
                conn.send(("add_broker", ([endpoint(c) for c in part],)))
                status, value = conn.recv()
            if status != "ok":
                raise RuntimeError(f"fleet process {child.name}: add_broker failed: {value}")

    def on_broker(self, index: int) -> int:
        return sum(self._all("on_broker", index))

    def last_seqs(self) -> dict[str, int]:
        return _merged(self._all("last_seqs"))

    def marks(self) -> dict[str, int]:
        return _merged(self._all("marks"))

    def acked_through(self, marks: dict[str, int]) -> bool:
        return all(self._all("acked_through", marks))

    def pending_excluded(self) -> dict[str, int]:
        return _merged(self._all("pending_excluded"))

    def __len__(self) -> int:
        return len(self.credentials)

    @property
    def pids(self) -> list[int]:
        return [child.pid for child, _conn, _lock in self._children if child.pid is not None]

    def run_load(
        self,
        duration_s: float,
        *,
        per_gate_per_s: float = 1.0,
        stop: threading.Event | None = None,
        **options: Any,
    ) -> dict[str, Any]:
        """Every child drives its own gates for ``duration_s`` (or until ``stop``); figures merged."""
        began = time.monotonic()
        self._all("load_begin", duration_s, per_gate_per_s, options)
        if stop is None:
            time.sleep(duration_s)
        elif stop.wait(duration_s):
            self._all("load_stop")
        parts = self._all("load_end")
        late = sorted(lag for part in parts for lag in part.pop("lateness_s"))
        return {
            "due": sum(part["due"] for part in parts),
            "taken": sum(part["taken"] for part in parts),
            "elapsed_s": max(time.monotonic() - began, *(part["elapsed_s"] for part in parts)),
            "start_lag_p99_ms": _p99_ms(late),
        }


def _merged(parts: list[dict[str, int]]) -> dict[str, int]:
    out: dict[str, int] = {}
    for part in parts:
        out.update(part)
    return out


def _serve(conn: Any, spec: dict[str, Any]) -> None:
    """A fleet process: build its gates, then answer the parent's calls until told to exit."""
    logging.basicConfig(level=logging.ERROR, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    by_user = dict(zip((c.username for c in spec["credentials"]), spec["endpoints"], strict=True))
    fleet = Fleet(
        spec["root"],
        spec["site"],
        spec["credentials"],
        lambda creds: by_user[creds.username],
        codes=spec["codes"],
        seed=spec["seed"],
        **spec["options"],
    )
    load: dict[str, Any] = {}

    def begin(duration_s: float, rate: float, options: dict[str, Any]) -> None:
        stop = threading.Event()

        def run() -> None:
            load["result"] = fleet.run_load(
                duration_s, per_gate_per_s=rate, stop=stop, lateness=True, **options
            )

        load.update(stop=stop, thread=threading.Thread(target=run, name="fleet-load", daemon=True))
        load["thread"].start()

    def end() -> dict[str, Any]:
        load["thread"].join()
        return load.pop("result")

    def add_broker(endpoints: list[BrokerEndpoint]) -> None:
        second = dict(zip(by_user, endpoints, strict=True))
        fleet.add_broker(lambda creds: second[creds.username])

    stopped: list[bool] = []

    def stop() -> None:
        stopped.append(True)
        fleet.stop()

    calls: dict[str, Callable[..., Any]] = {
        "ready": lambda: len(fleet),
        "stop": stop,
        "load_begin": begin,
        "load_stop": lambda: load["stop"].set(),
        "load_end": end,
        "add_broker": add_broker,
    }
    while True:
        try:
            method, args = conn.recv()
        except EOFError:  # the parent is gone
            method, args = "exit", ()
        if method == "exit":
            break
        try:
            call = calls.get(method) or getattr(fleet, method)
            conn.send(("ok", call(*args)))
        except Exception as exc:  # said to the parent, which raises it there
            conn.send(("error", f"{type(exc).__name__}: {exc}"))
    if not stopped:
        fleet.stop()
