"""Store backup benchmark: backing an SQLite console store up while ingest commits, three ways.

In one run, on one store, with a writer committing batches of events the whole time
(as the ingest writer does, through ``EventStore.commit``):

1. ``backup_store`` (console/store_backup.py): SQLite's online backup API in one step, then
   the integrity check, event count, fsync and rename;
2. ``VACUUM INTO``, the strongest plain alternative: also one consistent snapshot, but
   rebuilds every table and index;
3. the online backup API in small steps (``pages=64``), the way its documentation's
   example runs it: it starts over whenever another connection writes.

For each: how long it took (or that it gave up), how many events the copy holds, and the
writer's commit latency meanwhile (p50/p99/max), next to the writer alone.

Usage: ``python bench/store_backup.py [--quick]``.  Prints a table, then one JSON line.
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import statistics
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from console.store import EventStore  # noqa: E402
from console.store_backup import backup_store, check_sqlite  # noqa: E402
from protocol import Event  # noqa: E402

T0 = datetime(2026, 12, 1, tzinfo=UTC)


def events(start: int, count: int, boot: str) -> list[Event]:
    return [
        Event(
            id=uuid.uuid4().hex,
            site="bench",
            gate="north",
            boot=boot,
            seq=seq,
            time=T0 + timedelta(seconds=seq),
            clock_trusted=True,
            type="access.scan",
            data={"credential": "pass", "code": f"{seq:012d}", "granted": True, "reader": "front"},
        )
        for seq in range(start, start + count)
    ]


class Writer:
    """Commits batches of 100 events until stopped, timing each commit."""

    def __init__(self, store: EventStore, start: int, boot: str) -> None:
        self.store, self.next, self.boot = store, start, boot
        self.latencies: list[float] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)

    def run(self) -> None:
        while not self.stop.is_set():
            batch = events(self.next, 100, self.boot)
            began = time.perf_counter()
            self.store.commit(batch)
            self.latencies.append(time.perf_counter() - began)
            self.next += 100
            time.sleep(0.005)

    def window(self) -> int:
        return len(self.latencies)


def summary(latencies: list[float]) -> dict[str, float]:
    if not latencies:
        return {"commits": 0, "p50_ms": 0.0, "p99_ms": 0.0, "max_ms": 0.0}
    ordered = sorted(latencies)
    return {
        "commits": len(ordered),
        "p50_ms": round(statistics.median(ordered) * 1000, 2),
        "p99_ms": round(ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] * 1000, 2),
        "max_ms": round(ordered[-1] * 1000, 2),
    }


def vacuum_into(source: Path, target: Path) -> int:
    conn = sqlite3.connect(f"file:{source}?mode=ro", uri=True, timeout=30)
    try:
        conn.execute("VACUUM INTO ?", (str(target),))
    finally:
        conn.close()
    return check_sqlite(target)


def stepwise(source: Path, target: Path, give_up_s: float) -> int | None:
    """The backup API in steps; None if it did not finish within ``give_up_s``."""
    src = sqlite3.connect(f"file:{source}?mode=ro", uri=True, timeout=30)
    dst = sqlite3.connect(target)
    deadline = time.monotonic() + give_up_s

    def progress(_status: int, _remaining: int, _total: int) -> None:
        if time.monotonic() > deadline:
            raise TimeoutError

    try:
        src.backup(dst, pages=64, progress=progress, sleep=0.001)
    except TimeoutError:
        return None
    finally:
        dst.close()
        src.close()
    return check_sqlite(target)


def measure(store: EventStore, name: str, run: Callable[[], int | None]) -> dict:
    writer = Writer(store, measure.next, measure.boot)
    writer.thread.start()
    time.sleep(0.5)
    first = writer.window()
    committed_before = writer.next - 1
    began = time.perf_counter()
    held = run()
    seconds = time.perf_counter() - began
    during = writer.latencies[first : writer.window()]
    writer.stop.set()
    writer.thread.join()
    measure.next = writer.next
    return {
        "method": name,
        "seconds": round(seconds, 3),
        "events_in_copy": held,
        "committed_before": committed_before,
        **{f"writer_{k}": v for k, v in summary(during).items()},
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="smaller store; finishes in under a minute")
    args = parser.parse_args()
    size = 60_000 if args.quick else 400_000
    give_up = 10.0 if args.quick else 60.0
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        db = folder / "events.db"
        boot = uuid.uuid4().hex
        with EventStore(db) as store:
            for start in range(1, size + 1, 1000):
                store.commit(events(start, 1000, boot))
            measure.next, measure.boot = size + 1, boot  # type: ignore[attr-defined]
            baseline = Writer(store, size + 1, boot)
            baseline.thread.start()
            time.sleep(1.5)
            baseline.stop.set()
            baseline.thread.join()
            measure.next = baseline.next  # type: ignore[attr-defined]
            alone = summary(baseline.latencies)
            store_bytes = db.stat().st_size
            rows = [
                measure(store, "backup_store (one step)", lambda: backup_store(db, folder / "b").events),
                measure(store, "VACUUM INTO", lambda: vacuum_into(db, folder / "vacuum.db")),
                measure(
                    store, "backup API, 64-page steps", lambda: stepwise(db, folder / "steps.db", give_up)
                ),
            ]
    print(f"store: {size} events, {store_bytes / 1e6:.1f} MB; writer commits 100 events per batch throughout")
    print(f"writer alone: p50 {alone['p50_ms']} ms, p99 {alone['p99_ms']} ms, max {alone['max_ms']} ms")
    print(
        f"{'method':28} {'seconds':>8} {'events in copy':>15} {'before':>8} {'p50 ms':>7} {'p99 ms':>7} {'max ms':>7}"
    )
    for row in rows:
        held = "gave up" if row["events_in_copy"] is None else str(row["events_in_copy"])
        print(
            f"{row['method']:28} {row['seconds']:8.2f} {held:>15} {row['committed_before']:8} "
            f"{row['writer_p50_ms']:7} {row['writer_p99_ms']:7} {row['writer_max_ms']:7}"
        )
    print(
        json.dumps(
            {
                "bench": "store_backup",
                "quick": args.quick,
                "events": size,
                "store_mb": round(store_bytes / 1e6, 1),
                "writer_alone": alone,
                "methods": rows,
            }
        )
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
