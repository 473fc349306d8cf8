"""How long the console keeps raw events, and the daily prune that enforces it.

A compound's checkpoints produce a few thousand events a day per gate; kept for ever,
a district's store grows without bound and every query that is not indexed gets
slower.  The policy (``[store] retain_days = 400``, ``retain_rejections_days = 30``)
deletes older rows, in batches of ``prune_batch`` rows, each its own short
transaction: the ingest writer waits at most one batch for the write lock, never for
the whole prune.  The hourly flow counts (``flow_hourly``) are not pruned, so a year's
flow charts remain after the raw events are gone.

``console run`` prunes once a minute after start and then daily (:class:`RetentionTimer`);
``gatepost console prune [--dry-run]`` does it on demand.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from console.db import DatabaseError, format_time
from console.store import EventStore

log = logging.getLogger("gatepost.console.retention")

DAY_S = 86_400.0
FIRST_RUN_S = 60.0
"""Delay of the first prune after ``console run`` starts: let the ingest catch up first."""


@dataclass(frozen=True, slots=True)
class RetentionPolicy:
    """Days to keep each table; 0 keeps for ever."""

    retain_days: int = 400
    retain_rejections_days: int = 30
    batch: int = 5000
    pause_s: float = 0.01
    """Sleep between batches, so a busy ingest gets the write lock between them."""

    def cutoffs(self, now: datetime) -> dict[str, datetime]:
        tables = {"events": self.retain_days, "rejections": self.retain_rejections_days}
        return {table: now - timedelta(days=days) for table, days in tables.items() if days > 0}


@dataclass(frozen=True, slots=True)
class PruneResult:
    """What a prune deleted (or, with ``dry_run``, would delete) per table, and how long it took."""

    deleted: dict[str, int]
    cutoffs: dict[str, str]
    dry_run: bool
    seconds: float
    complete: bool = True

    def describe(self) -> str:
        verb = "would delete" if self.dry_run else "deleted"
        parts = [f"{verb} {self.deleted.get(t, 0)} {t} older than {c}" for t, c in self.cutoffs.items()]
        tail = "" if self.complete else " (interrupted; the rest goes next time)"
        return (
            "; ".join(parts) or "retention disabled: nothing to prune"
        ) + f" in {self.seconds:.1f} s{tail}"


def prune(
    store: EventStore,
    policy: RetentionPolicy,
    *,
    now: datetime | None = None,
    dry_run: bool = False,
    stop: threading.Event | None = None,
) -> PruneResult:
    """Delete what the policy no longer keeps, oldest first, one bounded batch at a time.

    ``stop`` ends the prune between batches (the console is shutting down); whatever
    was deleted stays deleted and the rest waits for the next run.
    """
    started = time.monotonic()
    now = now or datetime.now(UTC)
    cutoffs = policy.cutoffs(now)
    deleted: dict[str, int] = {}
    complete = True
    for table, cutoff in cutoffs.items():
        if dry_run:
            deleted[table] = store.count_before(table, cutoff)
            continue
        total = 0
        while True:
            n = store.delete_before(table, cutoff, policy.batch)
            total += n
            if n < policy.batch:
                break
            if stop is not None and stop.wait(policy.pause_s):
                complete = False
                break
            if stop is None and policy.pause_s:
                time.sleep(policy.pause_s)
        deleted[table] = total
        if not complete:
            break
    if not dry_run and any(deleted.values()):
        store.optimize()
    return PruneResult(
        deleted=deleted,
        cutoffs={table: format_time(cutoff) for table, cutoff in cutoffs.items()},
        dry_run=dry_run,
        seconds=time.monotonic() - started,
        complete=complete,
    )


class RetentionTimer:
    """A daemon thread that prunes ``first_s`` after start and every ``interval_s`` after that.

    A failed prune (database unreachable, disk full) is logged and tried again at the
    next interval; it never stops the console.
    """

    def __init__(
        self,
        store: EventStore,
        policy: RetentionPolicy,
        *,
        first_s: float = FIRST_RUN_S,
        interval_s: float = DAY_S,
    ) -> None:
        self.store = store
        self.policy = policy
        self.first_s = first_s
        self.interval_s = interval_s
        self.runs = 0
        self.last: PruneResult | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="console-retention", daemon=True)

    def start(self) -> RetentionTimer:
        self._thread.start()
        return self

    def _loop(self) -> None:
        delay = self.first_s
        while not self._stop.wait(delay):
            delay = self.interval_s
            try:
                self.last = prune(self.store, self.policy, stop=self._stop)
            except DatabaseError as exc:
                log.error("retention prune failed: %s; next try in %.0f s", exc, self.interval_s)
                continue
            self.runs += 1
            log.info("retention: %s", self.last.describe())

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout)
