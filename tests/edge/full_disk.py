"""SQLite's own "database or disk is full", on demand, for every connection an outbox opens.

A page limit (``PRAGMA max_page_count`` at the file's current size) makes SQLite refuse
the next write that needs a new page with ``SQLITE_FULL`` — the real error, on the real
code path, without filling a real disk (tests/edge/test_disk_failure.py does that).  The
outbox reopens its writing connection after a failure, so the limit is set on every
connection it opens while the "disk" is full, not only on the one it has.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from edge.outbox import Outbox

_UNLIMITED = 1 << 30


class FullDisk:
    def __init__(self) -> None:
        self.full = False

    def set(self, outbox: Outbox, full: bool = True) -> None:
        """Fill (or free) the "disk" of ``outbox``: its open writer and any it opens later."""
        self.full = full
        with outbox._commit_lock:
            if outbox._writer_db is not None:
                _limit(outbox._writer_db, full)


def _limit(db: Any, full: bool) -> None:
    pages = db.execute("PRAGMA page_count").fetchone()[0]
    db.execute(f"PRAGMA max_page_count={pages if full else _UNLIMITED}")


@pytest.fixture
def full_disk(monkeypatch: pytest.MonkeyPatch) -> Iterator[FullDisk]:
    disk = FullDisk()
    connect = Outbox._connect

    def limited(self: Outbox, target: str | Path, *, uri: bool = False) -> Any:
        db = connect(self, target, uri=uri)
        if disk.full and not uri:
            _limit(db, True)
        return db

    monkeypatch.setattr(Outbox, "_connect", limited)
    yield disk
