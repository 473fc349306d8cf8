"""Store backups: a round trip while ingest keeps writing, restore's refusal, retention, the command line.

The round trip runs the real ingest (console.ingest.Ingestor) over a real mosquitto with a
gate publishing the whole time; the backup is taken in the middle of it.  The restored
store must hold every event committed before the backup began, and be consistent: the
integrity check passes and its events are one unbroken run of sequence numbers (a backup
is one snapshot, so it never holds half a batch).
"""

from __future__ import annotations

import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from broker.launcher import Broker
from console.ingest import Ingestor
from console.store import EventStore, LinkKind, LinkState
from console.store_backup import (
    BackupError,
    BackupTimer,
    backup_store,
    backups,
    check_sqlite,
    prune_backups,
    restore_store,
    running_console,
    take_run_lock,
)
from gatepost.cli import main
from protocol import Event, encode
from protocol.topics import GateTopics
from tests.conftest import ClientFactory
from tests.waiting import wait_until

pytestmark = pytest.mark.timeout(120)

T0 = datetime(2026, 12, 1, 8, 0, tzinfo=UTC)


def _events(site: str, gate: str, seqs: range) -> list[Event]:
    boot = uuid.uuid4().hex
    return [
        Event(
            id=uuid.uuid4().hex,
            site=site,
            gate=gate,
            boot=boot,
            seq=seq,
            time=T0 + timedelta(seconds=seq),
            clock_trusted=True,
            type="access.scan",
            data={"granted": True, "reader": "front"},
        )
        for seq in seqs
    ]


def _seqs(target: str | Path) -> list[int]:
    with EventStore(target, readonly=True) as store:
        return [int(row[0]) for row in store.db.query("SELECT seq FROM events ORDER BY seq")]


def test_a_backup_taken_while_ingest_writes_restores_every_event_committed_before_it(
    tmp_path: Path, broker: Broker, mqtt_client_factory: ClientFactory, unique_name: str
):
    site = unique_name
    db = tmp_path / "console" / "events.db"
    gate = mqtt_client_factory(broker.add_gate(site, "north"))
    topic = GateTopics(site, "north").event
    events = _events(site, "north", range(1, 6001))
    stop = threading.Event()

    def publish() -> None:  # the gate keeps sending while the backup runs
        for event in events:
            if stop.is_set():
                return
            gate.client.publish(topic, encode(event), qos=1)
            if event.seq % 200 == 0:
                time.sleep(0.02)

    with (
        EventStore(db) as store,
        Ingestor(broker.endpoint(broker.add_console("main")), store, name="main") as ingest,
    ):
        assert ingest.wait_connected(10)
        sender = threading.Thread(target=publish, daemon=True)
        sender.start()
        assert wait_until(lambda: ingest.counters.committed >= 1000, timeout=60)
        before = ingest.counters.committed  # every one of these is committed before the backup begins
        result = backup_store(db, tmp_path / "backups")
        after = ingest.counters.committed
        assert wait_until(
            lambda: not sender.is_alive() or ingest.counters.committed > after + 200, timeout=60
        )
        stop.set()
        sender.join(10)
    assert result.path.name.startswith("events-") and result.path.suffix == ".db"
    assert not list((tmp_path / "backups").glob(".*.tmp")), "no temporary file is left behind"
    assert check_sqlite(result.path) == result.events

    restored = tmp_path / "restored" / "events.db"
    print(restore_store(result.path, restored))
    seqs = _seqs(restored)
    assert len(seqs) >= before, f"{before} committed before the backup, {len(seqs)} restored"
    assert seqs == list(range(1, len(seqs) + 1)), "one snapshot: an unbroken run, no half batch"
    assert len(seqs) < len(_seqs(db)), "ingest went on writing after the backup (it ran concurrently)"
    assert check_sqlite(restored) == len(seqs)


def test_restore_refuses_a_running_consoles_store_and_says_why(tmp_path: Path):
    db = tmp_path / "events.db"
    with EventStore(db) as store:
        store.commit(_events("s", "g", range(1, 11)))
    result = backup_store(db, tmp_path / "b")
    with EventStore(db) as store:
        store.commit(_events("s", "g", range(11, 21)))

    lock = take_run_lock(db)  # what `console run` holds for its whole life
    try:
        with pytest.raises(BackupError, match="while a console runs on it: a console process holds"):
            restore_store(result.path, db)
        assert len(_seqs(db)) == 20, "the store is untouched"
        assert main(["console", "restore", "--config", str(_config(tmp_path, db)), str(result.path)]) == 1
    finally:
        assert lock is not None
        lock.close()
    assert running_console(db) is None

    # A console on another host (or PostgreSQL) shows by its heartbeat in the store.
    now = datetime.now(UTC).isoformat().replace("+00:00", "Z")
    with EventStore(db) as store:
        store.commit(link=LinkState("main", LinkKind.CONNECTED, now, now))
    assert "console main said it was connected" in (running_console(db) or "")
    with pytest.raises(BackupError, match="console_link"):
        restore_store(result.path, db)
    message = restore_store(result.path, db, force=True)
    assert "the store it replaced is" in message
    assert _seqs(db) == list(range(1, 11))
    assert len(list(tmp_path.glob("events.db.before-restore-*"))) == 1, "the replaced store is kept"


def test_a_damaged_backup_is_refused_and_the_store_kept(tmp_path: Path):
    db = tmp_path / "events.db"
    with EventStore(db) as store:
        store.commit(_events("s", "g", range(1, 2001)))
    result = backup_store(db, tmp_path / "b")
    data = bytearray(result.path.read_bytes())
    data[len(data) // 2 : len(data) // 2 + 4096] = b"\xff" * 4096
    result.path.write_bytes(bytes(data))
    with pytest.raises(BackupError, match=r"integrity check failed|not a readable"):
        restore_store(result.path, db, force=True)
    assert len(_seqs(db)) == 2000


def test_scheduled_backups_keep_the_newest_n(tmp_path: Path):
    db = tmp_path / "events.db"
    with EventStore(db) as store:
        store.commit(_events("s", "g", range(1, 11)))
    folder = tmp_path / "b"
    timer = BackupTimer(db, folder, interval_s=0.2, keep=2).start()
    try:
        assert wait_until(lambda: timer.taken >= 3 and len(backups(folder)) == 2, timeout=20)
    finally:
        timer.stop()
    assert timer.failures == 0
    assert len(backups(folder)) == 2
    for _ in range(3):
        backup_store(db, folder)
    assert len(prune_backups(folder, 1)) == 4 and len(backups(folder)) == 1


def _config(tmp_path: Path, store: str | Path, backup: Path | None = None) -> Path:
    path = tmp_path / f"console-{uuid.uuid4().hex[:6]}.toml"
    text = f'[store]\n{"url" if isinstance(store, str) else "path"} = "{store}"\n'
    if backup is not None:
        text += f'[backup]\ndirectory = "{backup}"\nkeep = 2\n'
    path.write_text(text)
    return path


def test_the_command_line_backs_up_and_restores(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    db = tmp_path / "events.db"
    with EventStore(db) as store:
        store.commit(_events("s", "g", range(1, 51)))
    config = _config(tmp_path, db, tmp_path / "nightly")
    for _ in range(3):
        assert main(["console", "backup", "--config", str(config)]) == 0
    assert len(backups(tmp_path / "nightly")) == 2, "[backup] keep applies"
    assert main(["console", "backup", "--config", str(config), "--to", str(tmp_path / "once")]) == 0
    (file,) = backups(tmp_path / "once")
    assert "50 events" in capsys.readouterr().out
    with EventStore(db) as store:
        store.commit(_events("s", "g", range(51, 61)))
    assert main(["console", "restore", "--config", str(config), str(file)]) == 0
    assert len(_seqs(db)) == 50
    bad = tmp_path / "bad.toml"
    bad.write_text("[backup]\nkeep = 0\n")
    assert main(["console", "backup", "--config", str(bad)]) != 0
    assert "keep" in capsys.readouterr().err


def test_postgresql_round_trip_with_pg_dump_while_writing(tmp_path: Path, postgres_url: str):
    with EventStore(postgres_url) as store:
        store.commit(_events("s", "g", range(1, 501)))
        stop = threading.Event()
        written: list[int] = [500]

        def write() -> None:
            seq = 501
            while not stop.is_set():
                store.commit(_events("s", "g", range(seq, seq + 50)))
                seq += 50
                written.append(seq - 1)

        writer = threading.Thread(target=write, daemon=True)
        writer.start()
        time.sleep(0.2)
        before = written[-1]
        result = backup_store(postgres_url, tmp_path / "backups")
        time.sleep(0.2)
        stop.set()
        writer.join(10)
    assert result.path.suffix == ".pgdump"
    total = len(_seqs(postgres_url))
    assert "restored" in restore_store(result.path, postgres_url)
    seqs = _seqs(postgres_url)
    assert len(seqs) >= before and seqs == list(range(1, len(seqs) + 1))
    assert len(seqs) < total, "the writer went on after the snapshot, and the restore undid that"
