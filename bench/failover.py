"""Failover benchmark: a gate's broker SIGKILLed mid-stream, with a second broker and without.

Each trial starts real mosquittos from broker/'s configuration (TLS, client
certificates, the second one a twin of the first: broker/twin.py), a console reading
every broker into one SQLite store (console/brokers.py), and one gate link streaming
scans from its outbox at a steady rate.  Mid-stream the active broker is SIGKILLed.

1. **failover**: two brokers; the gate moves to the second (edge/failover.py).
2. **restart** (the plain alternative): one broker, restarted at once on the same port, as
   ``systemd`` with ``Restart=always`` would; the gate reconnects to the same address.  This
   is the best a single broker can do, and only when its process died, not its host.

For each: ``failover_s`` = kill until the gate is connected again (to any broker);
``recovered_s`` = kill until the first event taken after the kill is in the store;
``lost`` = events taken but never stored; ``duplicated`` = stored rows beyond one per seq.

Usage: ``python bench/failover.py [--quick]``.  Prints a table, then one JSON line.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from broker.launcher import Broker  # noqa: E402
from broker.twin import copy_identity  # noqa: E402
from console.brokers import BrokerIngest  # noqa: E402
from console.ingest import Ingestor  # noqa: E402
from console.store import EventStore  # noqa: E402
from edge.link import Link  # noqa: E402
from edge.outbox import Outbox  # noqa: E402
from protocol import GateTopics  # noqa: E402

SITE, GATE = "bench", "north"


def _wait(predicate: object, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return True
        time.sleep(0.005)
    return bool(predicate())  # type: ignore[operator]


def _counts(store: EventStore) -> tuple[int, int, int]:
    rows, distinct, high = store.db.query(
        "SELECT COUNT(*), COUNT(DISTINCT seq), COALESCE(MAX(seq), 0) FROM events WHERE site = ? AND gate = ?",
        (SITE, GATE),
    )[0]
    return int(rows), int(distinct), int(high)


def trial(work: Path, *, twin: bool, rate: float, before_s: float, after_s: float) -> dict[str, float]:
    """One kill under load; returns the trial's figures."""
    first = Broker(work / "a")
    first.start()
    console_creds = first.add_console("bench")
    gate_creds = first.add_gate(SITE, GATE)
    second: Broker | None = None
    if twin:
        copy_identity(first.state_dir, work / "b")
        second = Broker(work / "b")
        second.start()
    try:
        with (
            EventStore(work / "events.db") as store,
            Outbox(work / "outbox.db", site=SITE, gate=GATE) as outbox,
        ):
            ingest: BrokerIngest | Ingestor
            if second is not None:
                ingest = BrokerIngest(
                    [first.endpoint(console_creds), second.endpoint(console_creds)], store, site=SITE
                )
            else:
                ingest = Ingestor(first.endpoint(console_creds), store, site=SITE)
            ingest.start()
            link = Link(
                first.endpoint(gate_creds),
                GateTopics(SITE, GATE),
                outbox,
                resend_after_s=5.0,
                resend_overtaken_s=1.0,
                failover=[second.endpoint(gate_creds)] if second is not None else [],
            )
            try:
                if not ingest.wait_connected(20):
                    raise RuntimeError("console did not subscribe")
                link.start()
                if not link.wait_connected(20):
                    raise RuntimeError("gate did not connect")
                stop = threading.Event()
                taken: list[int] = []
                killed = threading.Event()
                first_after: list[int] = []

                def scan() -> None:
                    interval = 1.0 / rate
                    next_at = time.monotonic()
                    while not stop.is_set():
                        event = outbox.append(
                            "access.scan",
                            {"code": "104729000001"},
                            time=datetime.now(UTC),
                            clock_trusted=True,
                        )
                        if event is not None:  # None: held in memory by a failing disk, not the case here
                            taken.append(event.seq)
                            if killed.is_set() and not first_after:
                                first_after.append(event.seq)
                        next_at += interval
                        time.sleep(max(0.0, next_at - time.monotonic()))

                scanner = threading.Thread(target=scan, daemon=True)
                scanner.start()
                time.sleep(before_s)
                connects = link.connects
                killed_at = time.monotonic()
                first.kill()
                killed.set()
                if second is None:
                    first.start()  # Restart=always, RestartSec=0: same port, same state on disk
                _wait(lambda: link.connected and link.connects > connects, 60)
                failover_s = time.monotonic() - killed_at
                _wait(
                    lambda: (
                        first_after
                        and store.db.query(
                            "SELECT 1 FROM events WHERE site = ? AND gate = ? AND seq = ?",
                            (SITE, GATE, first_after[0]),
                        )
                    ),
                    60,
                )
                recovered_s = time.monotonic() - killed_at
                time.sleep(after_s)
                stop.set()
                scanner.join(10)
                _wait(lambda: _counts(store)[1] >= len(taken) and outbox.backlog == 0, 60)
                rows, distinct, _high = _counts(store)
                return {
                    "failover_s": failover_s,
                    "recovered_s": recovered_s,
                    "taken": len(taken),
                    "lost": len(set(taken)) - distinct,
                    "duplicated": rows - distinct,
                }
            finally:
                link.stop()
                ingest.stop()
    finally:
        first.stop()
        if second is not None:
            second.stop()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="3 trials each, under a minute")
    parser.add_argument("--trials", type=int, default=None)
    parser.add_argument("--rate", type=float, default=50.0, help="scans per second during the kill")
    args = parser.parse_args()
    trials = args.trials or (3 if args.quick else 10)
    before_s, after_s = (1.0, 1.0) if args.quick else (3.0, 3.0)
    results: dict[str, list[dict[str, float]]] = {"failover": [], "restart": []}
    for i in range(trials):
        for name in results:
            with tempfile.TemporaryDirectory(prefix="gatepost-failover-") as tmp:
                results[name].append(
                    trial(
                        Path(tmp), twin=name == "failover", rate=args.rate, before_s=before_s, after_s=after_s
                    )
                )
        print(f"trial {i + 1}/{trials} done", file=sys.stderr)

    def median(name: str, key: str) -> float:
        return statistics.median(r[key] for r in results[name])

    def total(name: str, key: str) -> int:
        return int(sum(r[key] for r in results[name]))

    print(f"{trials} trials, {args.rate:.0f} scans/s, SIGKILL of the active broker mid-stream")
    print(f"{'':34} {'back connected':>15} {'first new event':>16} {'taken':>7} {'lost':>5} {'dup':>5}")
    for name, label in (
        ("failover", "second broker (edge/failover.py)"),
        ("restart", "one broker, restarted at once"),
    ):
        print(
            f"{label:34} {median(name, 'failover_s'):>13.3f} s {median(name, 'recovered_s'):>14.3f} s"
            f" {total(name, 'taken'):>7} {total(name, 'lost'):>5} {total(name, 'duplicated'):>5}"
        )
    print("medians; lost/dup are totals over all trials")
    print(
        json.dumps(
            {
                "failover_s": round(median("failover", "failover_s"), 3),
                "failover_recovered_s": round(median("failover", "recovered_s"), 3),
                "failover_lost": total("failover", "lost"),
                "failover_duplicated": total("failover", "duplicated"),
                "restart_s": round(median("restart", "failover_s"), 3),
                "restart_recovered_s": round(median("restart", "recovered_s"), 3),
                "restart_lost": total("restart", "lost"),
                "restart_duplicated": total("restart", "duplicated"),
                "trials": trials,
                "rate_per_s": args.rate,
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
