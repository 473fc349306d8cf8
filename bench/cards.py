"""Card-list benchmark: how fast a gate gets 100,000 door cards, and what a lookup costs.

Measured in one process, each next to its comparison:

1. ``card_sync_100k_s``: the console registry builds a snapshot (read the rows, hash,
   zlib, cut into <= 64 KiB chunks), the gate decodes every chunk, checks digests and
   the list hash, applies it in one SQLite transaction, and answers a first lookup.
   MQTT transfer is not included (about 4 MB on a LAN).  Target <= 10 s on a Pi.
   Comparisons: one INSERT+COMMIT per card (timed on a sample, scaled to 100k), and one
   JSON message per card (encode + decode + validate, no storage).
2. ``lookup_p99_us``: ``CardStore.lookup`` (SQLite primary key, row parsed) for hits
   and misses, next to a plain dict of the same cards (the floor).
3. ``delta_apply_ms``: the gate applying a delta of 100 changed cards to the 100k list
   (including re-hashing the whole list before commit), and the console building it.

Usage: ``python bench/cards.py [--quick]``.  Prints a table, then one JSON line.
"""

from __future__ import annotations

import argparse
import json
import random
import sqlite3
import sys
import tempfile
import time
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from console.credentials import CardRegistry  # noqa: E402
from edge.credentials import CardStore  # noqa: E402
from protocol.credentials import CardEntry, entry_from_row  # noqa: E402

T0 = datetime(2026, 1, 1, tzinfo=UTC)
N = 100_000


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


def make_cards(n: int, seed: int = 1) -> list[CardEntry]:
    rng = random.Random(seed)
    out = []
    for i in range(n):
        windowed = i % 5 == 0
        out.append(
            CardEntry(
                credential=f"wiegand26:{i % 256}:{i}" if i % 2 else f"em4100:{rng.getrandbits(40):010X}",
                holder=f"Resident {rng.randrange(10**6)}",
                unit=f"{rng.randrange(1, 40)}-{rng.randrange(1, 6)}-{rng.randrange(101, 3001)}",
                valid_from=T0 + timedelta(days=rng.randrange(100)),
                valid_until=T0 + timedelta(days=400 + rng.randrange(300)) if i % 7 else None,
                window_start=360 if windowed else None,
                window_end=1320 if windowed else None,
                zones=rng.randrange(1, 16),
                photo_digest=f"{rng.getrandbits(128):032x}" if i % 3 else None,
            )
        )
    return out


def naive_insert_commit(entries: list[CardEntry], path: Path) -> float:
    """Seconds per card for one INSERT + COMMIT each (synchronous=FULL, as the store uses)."""
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=FULL")
    db.execute("CREATE TABLE cards (credential TEXT PRIMARY KEY, line BLOB) WITHOUT ROWID")
    start = time.perf_counter()
    for e in entries:
        db.execute("BEGIN")
        db.execute("INSERT OR REPLACE INTO cards VALUES (?, ?)", (e.credential, e.line()))
        db.execute("COMMIT")
    elapsed = time.perf_counter() - start
    db.close()
    return elapsed / len(entries)


def naive_json_messages(entries: list[CardEntry]) -> float:
    """Seconds per card for one JSON message per card: encode, decode, validate (no storage)."""
    start = time.perf_counter()
    for e in entries:
        payload = json.dumps({"v": 1, "type": "card.upsert", "card": json.loads(e.row())}).encode()
        entry_from_row(json.loads(payload)["card"])
    return (time.perf_counter() - start) / len(entries)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="one sync run and fewer lookups (< 1 min)")
    args = parser.parse_args()
    runs = 1 if args.quick else 3
    n_lookups = 5_000 if args.quick else 50_000
    sample = 300 if args.quick else 2_000

    entries = make_cards(N)
    with tempfile.TemporaryDirectory(prefix="gatepost-cards-") as tmp:
        tmpdir = Path(tmp)
        registry = CardRegistry(tmpdir / "console.db")
        t = time.perf_counter()
        registry.replace_all(entries)
        registry_load_s = time.perf_counter() - t

        sync_s, build_s, apply_s, chunk_counts, chunk_bytes = [], [], [], [], []
        store = None
        for run in range(runs):
            if store is not None:
                store.close()
            store = CardStore(tmpdir / f"gate{run}.db")
            t0 = time.perf_counter()
            chunks = registry.snapshot()
            t1 = time.perf_counter()
            store.apply_snapshot_chunks(chunks)
            assert store.lookup(entries[0].credential) == entries[0]
            t2 = time.perf_counter()
            sync_s.append(t2 - t0)
            build_s.append(t1 - t0)
            apply_s.append(t2 - t1)
            chunk_counts.append(len(chunks))
            chunk_bytes.append(sum(map(len, chunks)))
        assert store is not None and store.state.count == N

        naive_commit = naive_insert_commit(entries[:sample], tmpdir / "naive.db") * N
        naive_json = naive_json_messages(entries[: sample * 10]) * N

        rng = random.Random(7)
        probes = [rng.choice(entries).credential for _ in range(n_lookups // 2)]
        probes += [f"em4100:FF{rng.getrandbits(32):08X}" for _ in range(n_lookups // 2)]
        rng.shuffle(probes)
        lookup_us = []
        for cred in probes:
            t = time.perf_counter_ns()
            store.lookup(cred)
            lookup_us.append((time.perf_counter_ns() - t) / 1e3)
        as_dict = {e.credential: e for e in entries}
        dict_us = []
        for cred in probes:
            t = time.perf_counter_ns()
            as_dict.get(cred)
            dict_us.append((time.perf_counter_ns() - t) / 1e3)

        delta_apply, delta_build = [], []
        for run in range(runs * 3):
            changed = [replace(e, holder=f"moved {run}") for e in rng.sample(entries, 100)]
            registry.put(changed)
            t = time.perf_counter()
            delta = registry.delta(store.version)
            t1 = time.perf_counter()
            assert delta is not None
            store.apply_delta(delta)
            t2 = time.perf_counter()
            delta_build.append((t1 - t) * 1e3)
            delta_apply.append((t2 - t1) * 1e3)
        assert store.state.hash == registry.state.hash
        store.close()
        registry.close()

    sync = sorted(sync_s)[len(sync_s) // 2]
    print(f"card-list benchmark ({'quick' if args.quick else 'full'}: {N} cards, {runs} sync run(s))")
    print(f"{'100k sync':44} {'seconds':>9}")
    print(f"{'snapshot + apply + first lookup (median)':44} {sync:9.2f}")
    print(f"{'  console: read, hash, zlib, chunk':44} {min(build_s):9.2f}")
    print(f"{'  gate: decode, verify, apply, commit':44} {min(apply_s):9.2f}")
    print(f"{'  chunks / total bytes':44} {chunk_counts[0]:>4} / {chunk_bytes[0]}")
    print(f"{'naive: INSERT+COMMIT per card (scaled)':44} {naive_commit:9.2f}")
    print(f"{'naive: one JSON message per card (scaled)':44} {naive_json:9.2f}")
    print(f"{'console registry import (replace_all)':44} {registry_load_s:9.2f}")
    print()
    print(f"{'lookup (hits and misses)':44} {'p50 us':>9} {'p99 us':>9}")
    print(f"{'CardStore.lookup (SQLite primary key)':44} {pct(lookup_us, 50):9.2f} {pct(lookup_us, 99):9.2f}")
    print(f"{'dict.get (floor)':44} {pct(dict_us, 50):9.2f} {pct(dict_us, 99):9.2f}")
    print()
    print(f"{'delta of 100 cards on 100k':44} {'p50 ms':>9} {'max ms':>9}")
    print(f"{'gate apply (incl. full re-hash)':44} {pct(delta_apply, 50):9.1f} {max(delta_apply):9.1f}")
    print(f"{'console build':44} {pct(delta_build, 50):9.1f} {max(delta_build):9.1f}")

    result = {
        "card_sync_100k_s": round(sync, 3),
        "card_sync_chunks": chunk_counts[0],
        "card_sync_bytes": chunk_bytes[0],
        "naive_insert_commit_100k_s": round(naive_commit, 2),
        "naive_json_per_card_100k_s": round(naive_json, 2),
        "lookup_p50_us": round(pct(lookup_us, 50), 2),
        "lookup_p99_us": round(pct(lookup_us, 99), 2),
        "dict_lookup_p99_us": round(pct(dict_us, 99), 2),
        "delta_apply_ms": round(pct(delta_apply, 50), 1),
        "delta_build_ms": round(pct(delta_build, 50), 1),
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
