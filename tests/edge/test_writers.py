"""Many outboxes on a few writer threads (edge/writers.py): passes run, in order, and retry on time."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

from edge.outbox import Outbox
from edge.writers import WriterPool

pytestmark = pytest.mark.timeout(30)


def test_a_kick_runs_the_pass_and_a_returned_time_runs_it_again():
    pool = WriterPool(2)
    runs: list[float] = []
    done = threading.Event()
    owner = object()

    def run_pass() -> float | None:
        runs.append(time.monotonic())
        if len(runs) == 2:
            done.set()
            return None
        return time.monotonic() + 0.2  # a disk retry, as a degraded outbox asks

    pool.register(owner, run_pass)
    pool.kick(owner)
    assert done.wait(5)
    assert runs[1] - runs[0] >= 0.15
    pool.close()


def test_outboxes_on_a_pool_commit_submits_and_acks(tmp_path: Path):
    pool = WriterPool(2)
    boxes = [Outbox(tmp_path / f"{i}.db", site="s", gate=f"g{i}", writers=pool) for i in range(20)]
    assert threading.active_count() < 20, "no writer thread per outbox"
    futures = [
        box.submit("access.scan", {"n": i}, time=datetime.now(UTC), clock_trusted=True)
        for i, box in enumerate(boxes)
    ]
    assert all(f.result(5) is not None for f in futures), "submit is committed by the pool"
    assert all(box.backlog == 1 for box in boxes)
    assert all(box.ack_async([(1, 1)]).result(5) == 1 for box in boxes)
    assert all(box.backlog == 0 for box in boxes)
    for box in boxes:
        box.close()
    pool.close()
