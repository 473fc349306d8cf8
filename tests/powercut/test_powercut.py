"""Power cuts at random moments, many times over: after each reboot, what was promised is there.

Each component — the gate's outbox, card store and pass memory, the console's SQLite
store — works in a process on a LazyFS mount (tests/powercut/lazyfs.py) and reports
every promise as it makes it.  At a random moment the process is SIGKILLed and the power
is cut: whatever was not synced is gone, and half of the cuts tear the last write.  Every
tenth cut is followed by a full remount from the durable image.  Then, as after a reboot:

* every file passes ``PRAGMA integrity_check`` and opens;
* outbox: every event ``append`` returned is still there with the same id, unless the
  console had acknowledged it, and numbering never goes back;
* console store: every event id ``commit`` returned for (what the console acknowledges
  after) is stored;
* card store: the list is the one its version names, whole, at least as new as the last
  ``apply`` that returned;
* pass memory (``synchronous=NORMAL`` by design, see edge/pass_memory.py): the grants it
  keeps are a prefix of those recorded, with no hole, and the file opens.

The same harness run on an outbox with ``synchronous=OFF`` (and ``NORMAL``) finds events
that ``append`` had returned missing — proof that it can see a loss at all.
``GATEPOST_POWERCUT_SEED`` repeats a run; ``-m slow`` runs many more cuts.
"""

from __future__ import annotations

import multiprocessing
import os
import random
import signal
import sqlite3
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from console.store import EventStore
from edge.credentials import CardStore
from edge.outbox import Outbox
from edge.pass_memory import PassMemory
from protocol import decode_event
from protocol.credentials import list_hash
from tests.powercut import workloads
from tests.powercut.lazyfs import LazyFS

CUTS = 50
SLOW_CUTS = 400
WINDOW_S = 0.12
"""The cut falls at a random moment within this long after the workload's first promise."""

pytestmark = pytest.mark.timeout(600)


def _context() -> Any:
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(["tests.powercut.workloads"])
    return ctx


def integrity(path: Path) -> str | None:
    """``None`` when the file opens and SQLite finds it whole, else what is wrong."""
    try:
        db = sqlite3.connect(path)
        try:
            result = db.execute("PRAGMA integrity_check").fetchall()
        finally:
            db.close()
    except sqlite3.Error as exc:
        return f"{path.name} does not open: {exc}"
    return None if result == [("ok",)] else f"{path.name}: {result[:3]}"


class Case:
    """One component: how to set it up, run it, and check it after a cut."""

    name = ""

    def __init__(self, root: Path) -> None:
        self.root = root

    def setup(self) -> None: ...

    def target(self) -> tuple[Callable[..., None], tuple[Any, ...]]:
        raise NotImplementedError

    def absorb(self, message: tuple) -> None: ...

    def check(self) -> list[str]:
        raise NotImplementedError

    def summary(self) -> str:
        return ""


class OutboxCase(Case):
    name = "outbox"

    def __init__(self, root: Path, sync: str = "full") -> None:
        super().__init__(root)
        self.path = root / "outbox.db"
        self.sync = sync
        self.owed: dict[int, str] = {}  # taken and not acknowledged: must survive
        self.highest = 0

    def setup(self) -> None:
        Outbox(self.path, site=workloads.SITE, gate=workloads.GATE).close()

    def target(self) -> tuple[Callable[..., None], tuple[Any, ...]]:
        return workloads.outbox, (self.sync,)

    def absorb(self, message: tuple) -> None:
        if message[0] == "taken":
            self.owed[message[1]] = message[2]
            self.highest = max(self.highest, message[1])
        elif message[0] == "acked":
            for seq in range(message[1], message[2] + 1):
                self.owed.pop(seq, None)

    def check(self) -> list[str]:
        problems = [p for p in [integrity(self.path)] if p]
        box = Outbox(self.path, site=workloads.SITE, gate=workloads.GATE)
        try:
            held = {row.seq: decode_event(row.body).id for row in box.pending(limit=1_000_000)}
            missing = [seq for seq, id_ in self.owed.items() if held.get(seq) != id_]
            if missing:
                problems.append(f"{len(missing)} taken event(s) gone, e.g. seq {sorted(missing)[:5]}")
            if box.last_seq < self.highest:
                problems.append(f"numbering went back from {self.highest} to {box.last_seq}")
        finally:
            box.close()
        return problems


class ConsoleStoreCase(Case):
    name = "console_store"

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.path = root / "events.db"
        self.acked: set[str] = set()

    def setup(self) -> None:
        EventStore(self.path).close()

    def target(self) -> tuple[Callable[..., None], tuple[Any, ...]]:
        return workloads.console_store, ()

    def absorb(self, message: tuple) -> None:
        self.acked.update(message[1])

    def check(self) -> list[str]:
        problems = [p for p in [integrity(self.path)] if p]
        store = EventStore(self.path)
        try:
            stored = {row[0] for row in store.db.query("SELECT id FROM events")}
        finally:
            store.close()
        missing = self.acked - stored
        if missing:
            problems.append(f"{len(missing)} acknowledged event(s) not in the store")
        return problems


class CardStoreCase(Case):
    name = "card_store"

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.path = root / "cards.db"
        self.applied = 0
        self.hashes = [list_hash(lines) for lines in workloads.card_lists()]

    def setup(self) -> None:
        CardStore(self.path).close()

    def target(self) -> tuple[Callable[..., None], tuple[Any, ...]]:
        return workloads.card_store, ()

    def absorb(self, message: tuple) -> None:
        self.applied = max(self.applied, message[1])

    def check(self) -> list[str]:
        problems = [p for p in [integrity(self.path)] if p]
        with CardStore(self.path) as store:
            state = store.state
            if state.version < self.applied:
                problems.append(f"list went back from version {self.applied} to {state.version}")
            if store.stored_hash() != state.hash:
                problems.append(f"version {state.version} is not whole: its cards do not hash to its hash")
            if state.version and state.hash != self.hashes[state.version % len(self.hashes)]:
                problems.append(f"version {state.version} holds another version's list")
        return problems


class PassMemoryCase(Case):
    name = "pass_memory"

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.path = root / "passes.db"
        self.reported = 0
        self.kept = 0
        self.lost_total = 0

    def setup(self) -> None:
        PassMemory(self.path, horizon=timedelta(days=1)).close()

    def target(self) -> tuple[Callable[..., None], tuple[Any, ...]]:
        return workloads.pass_memory, (self.kept,)

    def absorb(self, message: tuple) -> None:
        self.reported = max(self.reported, message[1])

    def check(self) -> list[str]:
        problems = [p for p in [integrity(self.path)] if p]
        db = sqlite3.connect(self.path)
        try:
            serials = [row[0] for row in db.execute("SELECT serial FROM grants ORDER BY rowid")]
        finally:
            db.close()
        if serials != list(range(1, len(serials) + 1)):
            problems.append("the grants kept are not a prefix of those recorded")
        self.lost_total += max(0, self.reported - len(serials))
        self.kept = self.reported = len(serials)
        PassMemory(self.path, horizon=timedelta(days=1)).close()  # and the agent opens it
        return problems

    def summary(self) -> str:
        return f"{self.lost_total} recorded grant(s) lost in all (synchronous=NORMAL), {self.kept} kept"


CASES: dict[str, Callable[[Path], Case]] = {
    "outbox": OutboxCase,
    "console_store": ConsoleStoreCase,
    "card_store": CardStoreCase,
    "pass_memory": PassMemoryCase,
}


def cut_many(
    fs: LazyFS, case: Case, cuts: int, rng: random.Random, *, stop_at_loss: bool = False
) -> list[str]:
    """Run ``case`` and cut the power ``cuts`` times; return every problem found after a reboot."""
    ctx = _context()
    case.setup()
    fs.sync_all()  # the component was installed and the machine synced long ago
    problems: list[str] = []
    promises = done = 0
    for n in range(cuts):
        done += 1
        parent, child = ctx.Pipe(duplex=False)
        target, extra = case.target()
        proc = ctx.Process(target=target, args=(case.path, child, rng.getrandbits(32), *extra))  # type: ignore[attr-defined]
        proc.start()
        child.close()
        if not parent.poll(30):
            proc.kill()
            raise AssertionError(f"{case.name}: the workload promised nothing in 30 s (exit {proc.exitcode})")
        deadline = time.monotonic() + rng.uniform(0, WINDOW_S)
        messages: list[tuple] = []
        while time.monotonic() < deadline:
            if parent.poll(0.005):
                messages.append(parent.recv())
        os.kill(proc.pid, signal.SIGKILL)  # type: ignore[arg-type]
        proc.join()
        messages += workloads.drain(parent)
        parent.close()
        promises += len(messages)
        for message in messages:
            case.absorb(message)
        fs.cut([proc.pid], tear=rng.random() < 0.5)  # type: ignore[list-item]
        if n % 10 == 9:
            fs.remount()
        found = case.check()
        problems += [f"cut {n + 1}: {problem}" for problem in found]
        if found and stop_at_loss:
            break
    assert promises >= done, f"{case.name}: too little work between cuts to prove anything"
    print(f"{case.name}: {done} cuts, {promises} promises checked; {case.summary()}")
    return problems


def _seed() -> int:
    return int(os.environ.get("GATEPOST_POWERCUT_SEED", "1"))


@pytest.mark.parametrize("component", list(CASES))
def test_power_cuts_lose_nothing_that_was_promised(lazyfs: LazyFS, tmp_path: Path, component: str):
    case = CASES[component](lazyfs.mountpoint)
    problems = cut_many(lazyfs, case, CUTS, random.Random(f"{component}-{_seed()}"))
    assert problems == [], f"seed {_seed()}: {problems[:5]}"
    assert lazyfs.cuts == CUTS


@pytest.mark.parametrize("sync", ["off", "normal"])
def test_the_same_cuts_find_the_loss_of_an_outbox_that_does_not_sync(lazyfs: LazyFS, sync: str):
    """The harness is able to fail: with ``synchronous=OFF`` or ``NORMAL`` taken events vanish."""
    case = OutboxCase(lazyfs.mountpoint, sync=sync)
    problems = cut_many(lazyfs, case, CUTS, random.Random(f"{sync}-{_seed()}"), stop_at_loss=True)
    assert any("taken event(s) gone" in problem for problem in problems), problems


@pytest.mark.slow
@pytest.mark.timeout(1800)
@pytest.mark.parametrize("component", list(CASES))
def test_power_cuts_many_times(lazyfs: LazyFS, component: str):
    case = CASES[component](lazyfs.mountpoint)
    problems = cut_many(lazyfs, case, SLOW_CUTS, random.Random(f"{component}-slow-{_seed()}"))
    assert problems == [], f"seed {_seed()}: {problems[:5]}"
