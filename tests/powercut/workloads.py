"""What runs until the power is cut: one process per component, reporting what it was promised.

Each workload loops for ever on the files it is given, and after each operation that
*returned* — the promise the component makes — sends on ``conn`` what it promised, so
the test knows, after the cut, what must still be there.  They run in processes forked
from a clean server (``forkserver``) that has these modules loaded, so a cut every
fraction of a second costs a fork, not an interpreter start.
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from multiprocessing.connection import Connection
from pathlib import Path

from console.store import EventStore
from edge.credentials import CardStore
from edge.outbox import Outbox
from edge.pass_memory import PassMemory
from protocol import Event
from protocol.credentials import encode_snapshot_lines

SITE, GATE = "cut", "gate"
T0 = datetime(2026, 11, 29, 8, 0, tzinfo=UTC)


def outbox(path: Path, conn: Connection, seed: int, sync: str) -> None:
    """Take events; now and then acknowledge a range of them, as the console would.

    ``("taken", seq, id)`` after ``append`` returned; ``("acked", first, last)`` *before*
    the ack is applied, since from then on those rows may go.
    """
    rng = random.Random(seed)
    box = Outbox(path, site=SITE, gate=GATE, sync=sync)
    mine: list[int] = []
    while True:
        event = box.append(
            "access.scan", {"code": f"{rng.getrandbits(40):012d}", "pad": "x" * rng.randrange(400)},
            time=datetime.now(UTC), clock_trusted=True,
        )  # fmt: skip
        assert event is not None
        mine.append(event.seq)
        conn.send(("taken", event.seq, event.id))
        if len(mine) > 4 and rng.random() < 0.15:
            first = mine[0]
            last = mine[rng.randrange(len(mine) // 2)]
            conn.send(("acked", first, last))
            box.ack([(first, last)])
            mine = [seq for seq in mine if seq > last]


def console_store(path: Path, conn: Connection, seed: int) -> None:
    """Commit batches of events, as the ingestor does before it acknowledges them."""
    rng = random.Random(seed)
    store = EventStore(path)
    boot = uuid.uuid4().hex
    seq = rng.randrange(1, 10**9)
    while True:
        batch = []
        for _ in range(rng.randrange(1, 30)):
            seq += 1
            batch.append(
                Event(
                    id=uuid.uuid4().hex, site=SITE, gate=GATE, boot=boot, seq=seq,
                    time=T0 + timedelta(seconds=seq % 86_400), clock_trusted=True, type="access.scan",
                    data={"credential": "pass", "code": f"{seq:012d}", "granted": seq % 3 > 0},
                )
            )  # fmt: skip
        store.commit(batch)
        conn.send(("acked", [event.id for event in batch]))


def card_lists(count: int = 3) -> list[list[bytes]]:
    """Three small, different card lists (canonical lines, sorted), built the same in every process."""
    from protocol.credentials import CardEntry

    lists = []
    for n in range(count):
        entries = [
            CardEntry(
                credential=f"wiegand26:{n}:{i}",
                holder=f"Holder {n}-{i}",
                unit=f"B{i % 40}",
                valid_from=T0,
                valid_until=T0 + timedelta(days=365),
                zones=1 + i % 255,
            )
            for i in range(40 + 60 * n)
        ]
        lists.append(sorted((e.line() for e in entries), key=lambda line: line))
    return lists


def card_store(path: Path, conn: Connection, seed: int) -> None:
    """Apply snapshot after snapshot; report each version once ``apply`` returned."""
    lists = card_lists()
    with CardStore(path) as store:
        version = store.version
        while True:
            version += 1
            store.apply_snapshot_chunks(encode_snapshot_lines(version, lists[version % len(lists)]))
            conn.send(("applied", version))


def pass_memory(path: Path, conn: Connection, seed: int, start: int) -> None:
    """Record grants with increasing serials; report each once ``record`` returned."""
    memory = PassMemory(path, horizon=timedelta(days=1))
    serial = start
    now = datetime.now(UTC)
    while True:
        serial += 1
        memory.record(serial, serial % 7, now + timedelta(milliseconds=serial), "in")
        conn.send(("recorded", serial))


def drain(conn: Connection) -> list[tuple]:
    """Everything the killed process sent before it died."""
    messages = []
    while conn.poll():
        try:
            messages.append(conn.recv())
        except (EOFError, OSError):
            break
    return messages


def names(rows: Sequence[tuple]) -> list[str]:
    return [row[0] for row in rows]
