"""Outbox benchmark: what a failing disk costs the gate, next to a working one.

Measured in one run, on the same disk:

1. durable appends per second, one producer (each waits for its fsync), the disk working;
2. appends per second while the disk refuses writes (SQLite's own "database or disk is
   full", from a page limit), each event held in memory and its number recorded in the
   held-events record (edge/held.py) before it may be sent;
3. how long the held events take to reach the file once the disk takes writes again;
4. the process's peak resident memory with the journal full.

Usage: ``python bench/outbox_disk.py [--quick]``.  Prints a table, then one JSON line.
"""

from __future__ import annotations

import argparse
import json
import resource
import sqlite3
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from edge.outbox import Outbox  # noqa: E402

DATA = {
    "credential": "pass",
    "code": "104729000001",
    "granted": True,
    "reason": "granted",
    "reader": "scanner",
}


class LimitedOutbox(Outbox):
    """An outbox whose "disk" can be full: SQLite's own SQLITE_FULL from a page limit on every connection."""

    full = False

    def _connect(self, target: str | Path, *, uri: bool = False) -> sqlite3.Connection:
        db = super()._connect(target, uri=uri)
        if self.full and not uri:
            db.execute(f"PRAGMA max_page_count={db.execute('PRAGMA page_count').fetchone()[0]}")
        return db

    def fill(self, full: bool) -> None:
        self.full = full
        with self._commit_lock:
            if self._writer_db is not None:
                pages = self._writer_db.execute("PRAGMA page_count").fetchone()[0]
                self._writer_db.execute(f"PRAGMA max_page_count={pages if full else 1 << 30}")


def append(box: Outbox) -> None:
    box.append("access.scan", DATA, time=datetime.now(UTC), clock_trusted=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="smaller counts; finishes in under a minute")
    args = parser.parse_args()
    held_n = 2000 if args.quick else 10_000
    healthy_n = 200 if args.quick else 1000
    import logging

    logging.basicConfig(level=logging.ERROR)
    with tempfile.TemporaryDirectory() as tmp:
        box = LimitedOutbox(Path(tmp) / "outbox.db", site="bench", gate="g", journal_capacity=held_n)
        began = time.perf_counter()
        for _ in range(healthy_n):
            append(box)
        healthy_rate = healthy_n / (time.perf_counter() - began)

        box.fill(True)  # from now on the file may not grow: SQLITE_FULL
        began = time.perf_counter()
        taken = 0
        while box.held < held_n:
            append(box)
            taken += 1
        degraded_rate = taken / (time.perf_counter() - began)
        rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

        box.fill(False)
        began = time.perf_counter()
        box._retry_at = 0  # the disk is back now, not at the next back-off
        box.ack([])
        while box.degraded is not None or box.held:
            time.sleep(0.001)
        drain_s = time.perf_counter() - began
        assert box.durable_seq == box.last_seq
        box.close()

    rows = [
        (
            "durable appends/s, disk working (one producer)",
            f"{healthy_rate:,.0f}",
            "comparison: each waits for its fsync",
        ),
        (
            "appends/s while the disk refuses writes",
            f"{degraded_rate:,.0f}",
            "held in memory, number recorded first",
        ),
        (f"{held_n:,} held events to the file when the disk is back, s", f"{drain_s:.3f}", "chunks of 1000"),
        (f"peak resident memory with {held_n:,} held, MB", f"{rss_mb:.0f}", "whole process"),
    ]
    print(f"{'measure':<62}{'value':>10}  note")
    for name, value, note in rows:
        print(f"{name:<62}{value:>10}  {note}")
    print(
        json.dumps(
            {
                "healthy_appends_per_s": round(healthy_rate),
                "degraded_appends_per_s": round(degraded_rate),
                "held": held_n,
                "drain_s": round(drain_s, 3),
                "peak_rss_mb": round(rss_mb),
                "quick": args.quick,
            }
        )
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
