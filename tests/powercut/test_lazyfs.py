"""The power-cut filesystem itself: what is not synced vanishes, what is synced survives."""

from __future__ import annotations

import multiprocessing
import os
import sqlite3
from pathlib import Path

import pytest

from tests.powercut.lazyfs import SECTOR, LazyFS


def fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def test_writes_vanish_without_fsync(lazyfs: LazyFS):
    root = lazyfs.mountpoint
    (root / "kept").write_bytes(b"old")
    fsync(root / "kept")
    fsync(root)
    (root / "kept").write_bytes(b"new and longer")
    (root / "new").write_bytes(b"never synced")
    lazyfs.cut()
    assert (root / "kept").read_bytes() == b"old"
    assert not (root / "new").exists()


def test_writes_survive_with_fsync(lazyfs: LazyFS):
    root = lazyfs.mountpoint
    (root / "a").write_bytes(b"first")
    fsync(root / "a")  # data, and (ext4's rule) the new file's name in its directory
    with (root / "a").open("r+b") as f:
        f.seek(2)
        f.write(b"RST")
        f.flush()
        os.fdatasync(f.fileno())
    lazyfs.cut()
    assert (root / "a").read_bytes() == b"fiRST"


def test_names_change_durably_only_when_the_directory_is_synced(lazyfs: LazyFS):
    root = lazyfs.mountpoint
    for name in ("gone", "moved"):
        (root / name).write_bytes(name.encode())
        fsync(root / name)
    (root / "gone").unlink()
    (root / "moved").rename(root / "there")
    lazyfs.cut()
    assert sorted(p.name for p in root.iterdir()) == ["gone", "moved"]
    (root / "gone").unlink()
    (root / "moved").rename(root / "there")
    fsync(root)
    lazyfs.cut()
    assert sorted(p.name for p in root.iterdir()) == ["there"]


def test_a_torn_write_keeps_whole_sectors_of_it(lazyfs: LazyFS):
    root = lazyfs.mountpoint
    (root / "f").write_bytes(b"\0" * (8 * SECTOR))
    fsync(root / "f")
    torn = 0
    for _ in range(10):  # the prefix is random: at least one tear in ten keeps part of the write
        with (root / "f").open("r+b") as f:
            f.write(b"\xff" * (8 * SECTOR))
        torn = lazyfs.cut(tear=True)["torn"]
        data = (root / "f").read_bytes()
        assert data == b"\xff" * torn + b"\0" * (8 * SECTOR - torn)
        assert torn % SECTOR == 0 and torn < 8 * SECTOR
        if torn:
            break
    assert torn > 0


def test_a_remount_starts_from_the_durable_image(lazyfs: LazyFS):
    root = lazyfs.mountpoint
    (root / "synced").write_bytes(b"yes")
    fsync(root / "synced")
    (root / "volatile").write_bytes(b"no")
    lazyfs.remount()
    assert [p.name for p in root.iterdir()] == ["synced"]
    assert (root / "synced").read_bytes() == b"yes"


def _write_after_cut(path: str, ready: object, go: object) -> None:
    with open(path, "r+b") as f:
        ready.set()  # type: ignore[attr-defined]
        go.wait(10)  # type: ignore[attr-defined]
        try:
            f.write(b"late")
            f.flush()
        except OSError:
            os._exit(3)
    os._exit(0)


def test_nothing_a_killed_process_had_in_flight_lands_after_the_cut(lazyfs: LazyFS):
    path = lazyfs.mountpoint / "f"
    path.write_bytes(b"durable")
    fsync(path)
    ctx = multiprocessing.get_context("fork")
    ready, go = ctx.Event(), ctx.Event()
    proc = ctx.Process(target=_write_after_cut, args=(str(path), ready, go))
    proc.start()
    assert ready.wait(10)
    lazyfs.cut([proc.pid] if proc.pid else [])  # as if it died now, its request still on the way
    go.set()
    proc.join(10)
    assert proc.exitcode == 3, "its write was refused"
    assert path.read_bytes() == b"durable"


@pytest.mark.parametrize(("sync", "survives"), [("FULL", True), ("OFF", False)])
def test_sqlite_commits_survive_a_cut_only_when_synced(lazyfs: LazyFS, sync: str, survives: bool):
    path = lazyfs.mountpoint / "t.db"
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("CREATE TABLE t (x)")
    db.close()
    lazyfs.sync_all()
    db = sqlite3.connect(path, isolation_level=None)
    db.execute(f"PRAGMA synchronous={sync}")
    for i in range(50):
        db.execute("INSERT INTO t VALUES (?)", (i,))
    db.close()  # a clean close still does not sync with OFF: the cut decides
    lazyfs.cut()
    db = sqlite3.connect(path)
    try:
        assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        assert db.execute("SELECT COUNT(*) FROM t").fetchone()[0] == (50 if survives else 0)
    finally:
        db.close()
