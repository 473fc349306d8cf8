"""The console's registry: one version per change, deltas from any held version, snapshots otherwise."""

from __future__ import annotations

from console.credentials import CardRegistry
from protocol.credentials import EMPTY_LIST_HASH, CardEntry, UpdateKind, assemble


def test_versions_count_changes_and_survive_restart(tmp_path, cards):
    path = tmp_path / "console.db"
    with CardRegistry(path) as reg:
        assert reg.state.version == 0 and reg.state.hash == EMPTY_LIST_HASH
        assert reg.put(cards(10)) == 1
        assert reg.put(cards(10)) == 1  # nothing changed: no new version
        assert reg.remove(["em4100:NOTTHERE"]) == 1
        assert reg.remove([cards(10)[0].credential]) == 2
        state = reg.state
    with CardRegistry(path) as reopened:
        assert reopened.state == state and state.count == 9
        assert reopened.get(cards(10)[1].credential) == cards(10)[1]
        assert reopened.get(cards(10)[0].credential) is None


def test_delta_lists_upserts_and_removals_since_base(tmp_path, cards):
    entries = cards(50)
    with CardRegistry(tmp_path / "c.db") as reg:
        reg.replace_all(entries)
        reg.remove([entries[0].credential])
        reg.put([entries[0]])  # re-added: an upsert, not a removal
        reg.remove([entries[1].credential])
        reg.put([CardEntry("em4100:NEW1")])
        update = assemble(reg.delta(1))
        assert update.kind is UpdateKind.DELTA and (update.base_version, update.list_version) == (1, 5)
        changes = {c.credential: c.entry for c in update.delta_changes()}
        assert changes == {
            entries[0].credential: entries[0],
            entries[1].credential: None,
            "em4100:NEW1": CardEntry("em4100:NEW1"),
        }
        assert update.count == 50 and update.list_hash == reg.state.hash
        assert reg.delta(5) == []
        assert reg.delta(6) is None


def test_replace_all_removes_what_is_missing(tmp_path, cards):
    with CardRegistry(tmp_path / "c.db") as reg:
        reg.replace_all(cards(30))
        reg.replace_all(cards(30)[:10])
        assert reg.state.count == 10
        changes = assemble(reg.delta(1)).delta_changes()
        assert len(changes) == 20 and all(c.entry is None for c in changes)


def test_pruned_or_large_gaps_get_a_snapshot(tmp_path, cards):
    with CardRegistry(tmp_path / "c.db", max_message_bytes=8 * 1024) as reg:
        reg.replace_all(cards(1000))
        reg.remove([c.credential for c in cards(1000)[:5]])
        assert reg.prune(2) == 5
        assert reg.delta(1) is None
        assert assemble(reg.update_for(1)).kind is UpdateKind.SNAPSHOT
        reg.replace_all(cards(1000, seed=2, tag="x"))  # every card changed
        assert assemble(reg.update_for(2)).kind is UpdateKind.SNAPSHOT
        assert assemble(reg.update_for(None)).kind is UpdateKind.SNAPSHOT
