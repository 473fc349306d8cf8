"""A gate whose disk fails: it keeps deciding, says ``degraded``, and loses nothing unsaid.

Real filesystems, real failures: the outbox lives on a size-limited tmpfs that a filler
file fills up, on an ext4 image that the kernel remounts read-only itself (the
``errors=remount-ro`` an SD card's I/O error triggers, started here through ext4's
``trigger_fs_error``), and on a tmpfs remounted read-only with ``mount -o remount,ro``
before the agent starts (while files are open for writing the kernel refuses that
remount: "mount point is busy").  A real broker and console carry the events.

The count that matters: every scan the gate decided is stored at the console, or is
counted as dropped in an ``outbox.overflow`` event the console stored; the console holds
each sequence number once, without gaps; and the gate's retained status went
``degraded`` and came back to ``online``.  Mounting needs root; without it these tests
skip, saying so.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import shutil
import subprocess
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from broker.launcher import Broker
from console.alarms import AlarmBook, AlarmKind
from console.ingest import Ingestor
from console.store import EventStore
from edge.agent import GateAgent
from edge.config import EdgeConfig
from protocol import GateTopics, decode_status
from protocol.events import OUTBOX_DEGRADED, OUTBOX_LOST, OUTBOX_OVERFLOW, OUTBOX_RECOVERED
from protocol.identity import ConsoleConnection
from protocol.mqtt import make_client
from simulator.scanner import VirtualScanner
from tests.waiting import wait_until

pytestmark = pytest.mark.timeout(180)

SITE = "site1"


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, capture_output=True, text=True, timeout=60)


def _mount(*args: str) -> None:
    result = _run("mount", *args)
    if result.returncode != 0:
        raise OSError(f"mount {' '.join(args)}: {result.stderr.strip()}")


def _umount(target: Path) -> None:
    if _run("umount", str(target)).returncode != 0:
        _run("umount", "-l", str(target))


@pytest.fixture
def small_tmpfs(tmp_path: Path) -> Iterator[Path]:
    """A 1 MiB tmpfs at ``tmp_path/disk``, unmounted afterwards."""
    target = tmp_path / "disk"
    target.mkdir()
    try:
        _mount("-t", "tmpfs", "-o", "size=1m,mode=0700", "tmpfs", str(target))
    except OSError as exc:
        pytest.skip(f"cannot mount a tmpfs here (needs root): {exc}")
    try:
        yield target
    finally:
        _umount(target)


@pytest.fixture
def ext4_image(tmp_path: Path) -> Iterator[tuple[Path, Path]]:
    """A 16 MiB ext4 image loop-mounted at ``tmp_path/disk`` with ``errors=remount-ro``: (image, mount point)."""
    if shutil.which("mkfs.ext4") is None:
        pytest.skip("mkfs.ext4 is not installed (e2fsprogs)")
    image, target = tmp_path / "card.img", tmp_path / "disk"
    target.mkdir()
    with image.open("wb") as f:
        f.truncate(16 << 20)
    if (made := _run("mkfs.ext4", "-q", "-F", str(image))).returncode != 0:
        pytest.skip(f"mkfs.ext4 failed: {made.stderr.strip()}")
    try:
        _mount("-o", "loop,errors=remount-ro", str(image), str(target))
    except OSError as exc:
        pytest.skip(f"cannot loop-mount an ext4 image here (needs root and loop devices): {exc}")
    try:
        yield image, target
    finally:
        _umount(target)


def fill(directory: Path) -> Path:
    """Fill the filesystem of ``directory`` to the last byte with one file."""
    filler = directory / "filler"
    with filler.open("wb", buffering=0) as f:
        with contextlib.suppress(OSError):
            while True:
                f.write(b"\0" * 4096)
        with contextlib.suppress(OSError):
            while True:
                f.write(b"\0")
    return filler


def kernel_remounts_read_only(target: Path) -> None:
    """Make ext4 report an error, as a failing card would: the kernel remounts it read-only."""
    device = Path(_run("findmnt", "-no", "SOURCE", str(target)).stdout.strip()).name
    Path(f"/sys/fs/ext4/{device}/trigger_fs_error").write_text("gatepost test: card failing\n")
    # Newer kernels mark such a filesystem "emergency_ro" rather than flipping its mount flag.
    assert wait_until(
        lambda: (
            {"ro", "emergency_ro"}
            & set(_run("findmnt", "-no", "OPTIONS", str(target)).stdout.strip().split(","))
        )
    )


class Console:
    """The console's ingest on a store of its own, and a watcher of the gate's retained status."""

    def __init__(self, tmp_path: Path, broker: Broker, gate: str) -> None:
        self.creds = broker.add_console("console")
        self.broker = broker
        self.store = EventStore(tmp_path / "console.db")
        self.ingestor = Ingestor(broker.endpoint(self.creds), self.store)
        self.states: queue.Queue[str] = queue.Queue()
        self.seen_states: list[str] = []
        watch = broker.endpoint(self.creds).for_connection(ConsoleConnection.WATCH)
        self._watch = make_client(watch)
        topic = GateTopics(SITE, gate).status
        self._watch.on_connect = lambda client, *_: client.subscribe(topic, qos=1)
        self._watch.on_message = lambda _c, _u, message: self.states.put(decode_status(message.payload).state)
        self._watch.connect(watch.host, watch.port)
        self._watch.loop_start()

    def start(self) -> Console:
        self.ingestor.start()
        assert self.ingestor.wait_connected(10)
        return self

    def stop(self) -> None:
        self.ingestor.stop()

    def close(self) -> None:
        self.ingestor.stop()
        self._watch.disconnect()
        self._watch.loop_stop()
        self.store.close()

    def saw_states(self, *states: str, timeout: float = 15.0) -> bool:
        """The retained status took ``states`` in this order (others may come between)."""

        def look() -> bool:
            with contextlib.suppress(queue.Empty):
                while True:
                    self.seen_states.append(str(self.states.get_nowait()))
            wanted = iter(self.seen_states)
            return all(state in wanted for state in states)

        return wait_until(look, timeout)

    def events(self, gate: str) -> list[tuple[int, str, str, dict[str, Any]]]:
        rows = self.store.db.query(
            "SELECT seq, id, type, data FROM events WHERE gate = ? ORDER BY seq, id", (gate,)
        )
        return [(seq, id_, type_, json.loads(data)) for seq, id_, type_, data in rows]


class Gate:
    """A gate agent with one virtual scanner; ``decided`` is every scan it answered."""

    def __init__(self, tmp_path: Path, broker: Broker, gate: str, outbox: Path, **outbox_opts: Any) -> None:
        creds = broker.add_gate(SITE, gate)
        secret = tmp_path / f"{gate}.secret"
        secret.write_text(creds.password)
        self.scanner = VirtualScanner(tmp_path / f"tty-{gate}", baudrate=115200, pace=False)
        self.config = EdgeConfig.model_validate(
            {
                "site": SITE,
                "gate": gate,
                "mqtt": {
                    "host": broker.host,
                    "port": broker.port,
                    "username": creds.username,
                    "password_file": str(secret),
                    "resend_after_s": 1.0,
                },
                "scanners": [{"url": str(self.scanner.link_path), "baudrate": 115200}],
                "outbox": {"path": str(outbox), "retry_min_s": 0.1, "retry_max_s": 0.5, **outbox_opts},
                "access": {"allow": [code(i) for i in range(0, 10_000, 2)]},
                "clock": {"trust": "trusted"},
            }
        )
        self.decided: list[str] = []
        self._lock = threading.Lock()
        self.agent: GateAgent | None = None
        self.typed = 0

    def start(self) -> GateAgent:
        self.agent = GateAgent(self.config, on_taken=self._taken)
        self.agent.start()
        assert wait_until(lambda: self.agent.reader_states.get("scanner") == "connected")  # type: ignore[union-attr]
        assert self.agent.link.wait_connected(10)
        return self.agent

    def _taken(self, shown: Any, _decision: Any, _event: Any, _ns: int) -> None:
        with self._lock:
            self.decided.append(shown.code)

    def scan(self, n: int) -> None:
        """Type ``n`` fresh codes and wait until the gate has answered every one."""
        for _ in range(n):
            self.scanner.type(code(self.typed))
            self.typed += 1
        assert wait_until(lambda: len(self.decided) == self.typed, timeout=20), (
            len(self.decided),
            self.typed,
        )

    def stop(self) -> None:
        if self.agent is not None:
            self.agent.stop(drain_s=5)
            self.agent = None

    def close(self) -> None:
        self.stop()
        self.scanner.close()


def code(i: int) -> str:
    return f"{i:012d}"


def assert_nothing_lost_unsaid(console: Console, gate: Gate, name: str) -> dict[str, int]:
    """Every decided scan is stored at the console or counted as dropped; each seq once, no gaps."""
    events = console.events(name)
    seqs = [seq for seq, *_ in events]
    assert len(seqs) == len(set(seqs)), "no sequence number stored twice"
    assert seqs == list(range(1, len(seqs) + 1)), "no gaps"
    stored = [data["code"] for _seq, _id, kind, data in events if kind == "access.scan"]
    assert len(stored) == len(set(stored)), "no scan stored twice"
    dropped = sum(
        data["by_type"].get("access.scan", 0) for _s, _i, kind, data in events if kind == OUTBOX_OVERFLOW
    )
    assert set(stored) <= set(gate.decided)
    assert len(stored) + dropped == len(gate.decided), (len(stored), dropped, len(gate.decided))
    types: dict[str, int] = {}
    for _seq, _id, kind, _data in events:
        types[kind] = types.get(kind, 0) + 1
    return {"stored": len(stored), "dropped": dropped, **types}


@pytest.fixture
def world(tmp_path: Path, broker: Broker, unique_name: str) -> Iterator[tuple[Console, str]]:
    console = Console(tmp_path, broker, unique_name).start()
    try:
        yield console, unique_name
    finally:
        console.close()


def test_a_full_disk_degrades_the_gate_which_keeps_deciding_and_loses_nothing_unsaid(
    tmp_path: Path, broker: Broker, small_tmpfs: Path, world: tuple[Console, str]
):
    console, name = world
    gate = Gate(tmp_path, broker, name, small_tmpfs / "outbox.db", journal_capacity=40)
    try:
        agent = gate.start()
        assert console.saw_states("online")
        gate.scan(20)
        filler = fill(small_tmpfs)
        gate.scan(30)  # the disk refuses these: the door answers all the same
        assert agent.outbox.degraded is not None and "full" in agent.outbox.degraded
        assert console.saw_states("online", "degraded"), console.seen_states
        # Held events go straight to the console, which acknowledges them out of memory.
        assert wait_until(lambda: agent.outbox.held == 0, timeout=20), agent.outbox.held
        assert wait_until(lambda: len([e for e in console.events(name) if e[2] == "access.scan"]) == 50, 20)

        console.stop()  # no console: the memory journal fills, and then the gate counts what it drops
        gate.scan(60)
        assert agent.outbox.held == 40 and agent.outbox.journal_dropped >= 20
        dropped = agent.outbox.journal_dropped

        console.start()
        filler.unlink()  # room again: the journal drains to the file, the gate is whole
        assert wait_until(lambda: agent.outbox.degraded is None, timeout=20)
        assert console.saw_states("online", "degraded", "online"), console.seen_states
        gate.scan(10)
        assert wait_until(lambda: agent.outbox.backlog == 0, timeout=30), agent.outbox.backlog
        counts = assert_nothing_lost_unsaid(console, gate, name)
        assert counts["dropped"] == dropped
        assert counts[OUTBOX_DEGRADED] == 1 and counts[OUTBOX_RECOVERED] == 1 and counts[OUTBOX_OVERFLOW] == 1
        # The console raises an alarm for the failing disk.
        stored = console.store.events_after(0, 10_000)
        kinds = {alarm.kind for alarm in AlarmBook(console.store.db).observe_events(stored)}
        assert {AlarmKind.OUTBOX_DEGRADED, AlarmKind.OUTBOX_OVERFLOW} <= kinds
    finally:
        gate.close()


def test_a_card_the_kernel_remounts_read_only_mid_stream_loses_nothing_across_a_repair(
    tmp_path: Path, broker: Broker, ext4_image: tuple[Path, Path], world: tuple[Console, str]
):
    console, name = world
    image, disk = ext4_image
    run = tmp_path / "run"  # the RAM filesystem a restart keeps: where the held record's copy survives
    gate = Gate(tmp_path, broker, name, disk / "outbox.db", held_records=[str(run / "outbox.held")])
    try:
        agent = gate.start()
        gate.scan(20)
        kernel_remounts_read_only(disk)
        gate.scan(30)
        assert agent.outbox.degraded is not None
        assert console.saw_states("online", "degraded"), console.seen_states
        assert wait_until(lambda: len([e for e in console.events(name) if e[2] == "access.scan"]) == 50, 20)
        assert wait_until(lambda: agent.outbox.held == 0, timeout=20)
        held_high = agent.outbox.last_seq
        gate.stop()  # the operator stops the gate to repair the card: nothing can be written

        _umount(disk)
        repaired = _run("e2fsck", "-fy", str(image))
        assert repaired.returncode in (0, 1, 2), repaired.stdout + repaired.stderr
        _mount("-o", "loop,errors=remount-ro", str(image), str(disk))

        agent = gate.start()
        assert agent.outbox.degraded is None
        assert console.saw_states("online", "degraded", "stopped", "online"), console.seen_states
        gate.scan(10)
        assert wait_until(lambda: agent.outbox.backlog == 0, timeout=30), agent.outbox.backlog
        counts = assert_nothing_lost_unsaid(console, gate, name)
        assert counts["dropped"] == 0 and counts[OUTBOX_LOST] == 1
        lost = next(data for _s, _i, kind, data in console.events(name) if kind == OUTBOX_LOST)
        assert lost["last_seq"] >= held_high - 1 and lost["lost"] == 0, lost  # the console had them all
    finally:
        gate.close()


def test_a_gate_started_on_a_read_only_remount_decides_and_recovers_when_it_is_writable(
    tmp_path: Path, broker: Broker, small_tmpfs: Path, world: tuple[Console, str]
):
    console, name = world
    gate = Gate(
        tmp_path, broker, name, small_tmpfs / "outbox.db", held_records=[str(tmp_path / "run" / "held")]
    )
    try:
        gate.start()
        gate.scan(10)
        assert wait_until(lambda: gate.agent.outbox.backlog == 0, timeout=20)  # type: ignore[union-attr]
        gate.stop()
        _mount("-o", "remount,ro", str(small_tmpfs))

        agent = gate.start()  # the door works before the disk does
        assert agent.outbox.degraded is not None
        gate.scan(15)
        assert console.saw_states("online", "stopped", "degraded"), console.seen_states
        assert wait_until(lambda: len([e for e in console.events(name) if e[2] == "access.scan"]) == 25, 20)

        _mount("-o", "remount,rw", str(small_tmpfs))
        assert wait_until(lambda: agent.outbox.degraded is None, timeout=20)
        assert console.saw_states("stopped", "degraded", "online"), console.seen_states
        gate.scan(5)
        assert wait_until(lambda: agent.outbox.backlog == 0, timeout=30), agent.outbox.backlog
        counts = assert_nothing_lost_unsaid(console, gate, name)
        assert counts["dropped"] == 0 and counts[OUTBOX_RECOVERED] == 1
    finally:
        gate.close()


def test_remounting_read_only_under_an_open_outbox_is_refused_by_the_kernel(small_tmpfs: Path):
    """Why the read-only tests above use the kernel's own remount, or remount before the agent starts."""
    with (small_tmpfs / "held-open").open("w"):
        result = _run("mount", "-o", "remount,ro", str(small_tmpfs))
    assert result.returncode != 0 and "busy" in result.stderr
    assert os.access(small_tmpfs, os.W_OK)


def test_an_outbox_left_by_a_crash_on_a_card_now_read_only_numbers_on_and_recovers(small_tmpfs: Path):
    """SQLite opens such a file read-only (its log and index are there): the outbox must notice and retry."""
    import sys
    import textwrap

    from edge.outbox import Outbox

    path = small_tmpfs / "outbox.db"
    crash = textwrap.dedent(
        f"""
        import os, sys
        sys.path.insert(0, {str(Path(__file__).resolve().parents[2])!r})
        from datetime import UTC, datetime
        from edge.outbox import Outbox
        box = Outbox({str(path)!r}, site="s", gate="g")
        for i in range(5):
            box.append("access.scan", {{"i": i}}, time=datetime.now(UTC), clock_trusted=True)
        os._exit(0)  # no close: the log and its index stay beside the file, as after a crash
        """
    )
    assert subprocess.run([sys.executable, "-c", crash], timeout=60).returncode == 0
    assert path.with_name("outbox.db-wal").exists()
    _mount("-o", "remount,ro", str(small_tmpfs))
    box = Outbox(path, site="s", gate="g", retry_min_s=0.05, retry_max_s=0.2)
    try:
        assert box.degraded is not None and "readonly" in box.degraded
        assert box.durable_seq == 5, "what the read-only file says is still read"
        event = box.append("access.scan", {}, time=datetime.now(UTC), clock_trusted=True)
        assert event is not None and event.seq == 7  # after the degraded note
        _mount("-o", "remount,rw", str(small_tmpfs))
        assert wait_until(lambda: box.degraded is None and box.held == 0, timeout=10)
        assert box.durable_seq == box.last_seq == 8  # and the recovered note
    finally:
        box.close()
