"""SIGKILL a gate process while it applies card lists: the store is always one whole version.

The child applies snapshots of three different lists, version after version, as fast as
it can; the parent kills it at varying moments, so most kills land inside a transaction.
Afterwards the store must hold exactly the list its recorded version and hash describe.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from edge.credentials import CardStore
from protocol.credentials import EMPTY_LIST_HASH, encode_snapshot, list_hash

ROOT = Path(__file__).resolve().parents[2]

CHILD = textwrap.dedent(
    """
    import sys
    sys.path.insert(0, sys.argv[2])
    from pathlib import Path
    from edge.credentials import CardStore
    from protocol.credentials import encode_snapshot_lines
    lists = [Path(sys.argv[3 + i]).read_bytes().splitlines(keepends=True) for i in range(3)]
    with CardStore(sys.argv[1]) as store:
        version = store.version
        while True:
            version += 1
            chunks = encode_snapshot_lines(version, lists[version % 3])
            print("applying", version, flush=True)
            store.apply_snapshot_chunks(chunks)
    """
)


@pytest.mark.parametrize("delays", [(0.05, 0.2, 0.45), (0.1, 0.3, 0.6)])
def test_sigkill_mid_apply_leaves_old_or_new_never_half(tmp_path, cards, delays):
    lists = []
    for seed in range(3):
        entries = sorted(cards(20_000 + 1000 * seed, seed=seed, tag=str(seed)), key=lambda e: e.credential)
        path = tmp_path / f"list{seed}.txt"
        path.write_bytes(b"".join(e.line() for e in entries))
        lists.append(path)
    hashes = {i: list_hash(p.read_bytes().splitlines(keepends=True)) for i, p in enumerate(lists)}
    store_path = tmp_path / "gate.db"
    with CardStore(store_path) as store:
        store.apply_snapshot_chunks(encode_snapshot(3, []))  # version 3: the child starts at list 1

    last_version, versions_seen = 3, set()
    for delay in delays:
        proc = subprocess.Popen(
            [sys.executable, "-c", CHILD, str(store_path), str(ROOT), *map(str, lists)],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert proc.stdout is not None
        assert proc.stdout.readline().startswith("applying")
        time.sleep(delay)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
        attempted = [
            int(line.split()[1]) for line in proc.stdout.read().splitlines() if line.startswith("applying")
        ]
        proc.stdout.close()

        with CardStore(store_path) as store:
            state = store.state
            assert state.version >= last_version
            assert state.hash == (EMPTY_LIST_HASH if state.version == 3 else hashes[state.version % 3])
            assert store.stored_hash() == state.hash
            assert len(store.credentials()) == state.count
            if attempted:
                assert state.version in (attempted[-1], attempted[-1] - 1)
            last_version = state.version
            versions_seen.add(state.version)
    assert max(versions_seen) > 3  # the child did commit lists between kills
