"""The gate's card store: atomic, hash-checked, monotonic, persistent; and the card check."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from console.credentials import CardRegistry
from edge.credentials import CardStore, check
from protocol.credentials import (
    CardEntry,
    CredentialListError,
    CredentialRejectReason,
    encode_delta,
    encode_snapshot,
)
from protocol.passes import Flag, Reason, UntrustedClockPolicy

R = CredentialRejectReason


def _snapshot_of(store: CardStore) -> tuple[object, list[str]]:
    return store.state, store.credentials()


def test_snapshot_apply_lookup_and_restart(tmp_path, cards):
    entries = cards(500)
    path = tmp_path / "gate.db"
    with CardStore(path) as store:
        assert store.version == 0 and len(store) == 0
        result = store.apply_snapshot_chunks(encode_snapshot(3, entries, max_message_bytes=8 * 1024))
        assert result.changed and result.state.version == 3 and result.state.count == 500
        assert store.lookup(entries[7].credential) == entries[7]
        assert store.lookup("em4100:FFFFFFFFFF") is None
        state = store.state
    with CardStore(path) as reopened:
        assert reopened.state == state
        assert reopened.stored_hash() == state.hash
        assert all(reopened.lookup(e.credential) == e for e in entries)


def test_same_update_twice_is_a_no_op_and_older_is_refused(tmp_path, cards):
    with CardStore(tmp_path / "g.db") as store:
        v5 = encode_snapshot(5, cards(20))
        store.apply_snapshot_chunks(v5)
        assert not store.apply_snapshot_chunks(v5).changed
        for chunks in (encode_snapshot(4, cards(20, seed=9)), encode_snapshot(5, cards(20, seed=9))):
            before = _snapshot_of(store)
            with pytest.raises(CredentialListError) as err:
                store.apply_snapshot_chunks(chunks)
            assert err.value.reason is R.OLDER
            assert _snapshot_of(store) == before


def test_delta_on_wrong_base_is_refused_and_store_unchanged(tmp_path, cards):
    entries = cards(100)
    with CardStore(tmp_path / "g.db") as store:
        store.apply_snapshot_chunks(encode_snapshot(2, entries))
        before = _snapshot_of(store)
        delta = encode_delta(1, 3, [CardEntry("em4100:AAAAAAAAAA")], [], count=101, result_hash="00" * 32)
        with pytest.raises(CredentialListError) as err:
            store.apply_delta(delta)
        assert err.value.reason is R.WRONG_BASE
        assert _snapshot_of(store) == before
        assert store.lookup("em4100:AAAAAAAAAA") is None


def test_delta_with_wrong_result_is_refused_and_store_unchanged(tmp_path, cards):
    entries = cards(100)
    with CardStore(tmp_path / "g.db") as store:
        store.apply_snapshot_chunks(encode_snapshot(2, entries))
        before = _snapshot_of(store)
        new = CardEntry("em4100:AAAAAAAAAA", holder="new")
        for count, digest in ((101, "00" * 32), (100, store.state.hash)):
            delta = encode_delta(2, 3, [new], [entries[0].credential], count=count, result_hash=digest)
            with pytest.raises(CredentialListError) as err:
                store.apply_delta(delta)
            assert err.value.reason is R.HASH_MISMATCH
            assert _snapshot_of(store) == before
            assert store.lookup(new.credential) is None
            assert store.lookup(entries[0].credential) == entries[0]
        assert store.stored_hash() == store.state.hash


def test_corrupted_chunk_is_refused_and_store_unchanged(tmp_path, cards):
    with CardStore(tmp_path / "g.db") as store:
        store.apply_snapshot_chunks(encode_snapshot(1, cards(50)))
        before = _snapshot_of(store)
        chunks = encode_snapshot(2, cards(3000, seed=4), max_message_bytes=8 * 1024)
        bad = bytearray(chunks[2])
        bad[len(bad) // 2] ^= 0xFF
        with pytest.raises(CredentialListError) as err:
            store.apply_snapshot_chunks([*chunks[:2], bytes(bad), *chunks[3:]])
        assert err.value.reason is R.HASH_MISMATCH
        with pytest.raises(CredentialListError) as err:
            store.apply_snapshot_chunks(chunks[1:])
        assert err.value.reason is R.CHUNK_MISSING
        assert _snapshot_of(store) == before


def test_offer_applies_once_every_chunk_arrived(tmp_path, cards):
    chunks = encode_snapshot(1, cards(3000), max_message_bytes=8 * 1024)
    with CardStore(tmp_path / "g.db") as store:
        results = [store.offer(c) for c in reversed(chunks)]
        assert results[:-1] == [None] * (len(chunks) - 1)
        assert results[-1] is not None and results[-1].state.count == 3000


def test_registry_to_store_through_many_changes(tmp_path, cards):
    entries = cards(2000)
    with CardRegistry(tmp_path / "console.db") as reg, CardStore(tmp_path / "gate.db") as store:
        reg.replace_all(entries)
        store.apply_snapshot_chunks(reg.update_for(None))
        for step in range(5):
            reg.put([CardEntry(f"em4100:{step:04d}{i:06d}", holder=f"s{step}") for i in range(20)])
            reg.put([CardEntry(entries[step].credential, holder="changed")])
            reg.remove([entries[100 + step].credential, "em4100:NOTTHERE"])
            update = reg.update_for(store.version)
            assert len(update) == 1  # small changes travel as a delta
            store.apply_delta(update)
            assert store.state.hash == reg.state.hash and store.version == reg.version
        assert store.lookup(entries[0].credential).holder == "changed"
        assert store.lookup(entries[100].credential) is None
        assert store.stored_hash() == reg.state.hash
        assert reg.update_for(store.version) == []


def test_100k_cards_sync_in_seconds(tmp_path, cards):
    chunks = encode_snapshot(1, cards(100_000))
    with CardStore(tmp_path / "g.db") as store:
        start = time.perf_counter()
        store.apply_snapshot_chunks(chunks)
        elapsed = time.perf_counter() - start
        assert store.state.count == 100_000
        assert elapsed < 5.0
        start = time.perf_counter()
        for i in range(1000):
            assert store.lookup(f"em4100:{2 * i:010X}") is not None
        assert (time.perf_counter() - start) / 1000 < 0.001


NOW = datetime(2026, 6, 1, 4, 0, tzinfo=UTC)  # 12:00 in Shanghai
SHANGHAI = ZoneInfo("Asia/Shanghai")


@pytest.mark.parametrize(
    ("entry", "trusted", "reason"),
    [
        (CardEntry("em4100:1"), True, Reason.GRANTED),
        (CardEntry("em4100:1", valid_until=NOW), True, Reason.EXPIRED),
        (CardEntry("em4100:1", valid_until=NOW), False, Reason.EXPIRED),
        (CardEntry("em4100:1", valid_from=NOW + timedelta(minutes=1)), True, Reason.NOT_YET_VALID),
        (CardEntry("em4100:1", valid_from=NOW + timedelta(minutes=1)), False, Reason.GRANTED),
        (CardEntry("em4100:1", window_start=11 * 60, window_end=13 * 60), True, Reason.GRANTED),
        (CardEntry("em4100:1", window_start=13 * 60, window_end=11 * 60), True, Reason.OUTSIDE_TIME_WINDOW),
        (CardEntry("em4100:1", window_start=13 * 60, window_end=11 * 60), False, Reason.GRANTED),
        (CardEntry("em4100:1", window_start=22 * 60, window_end=6 * 60), True, Reason.OUTSIDE_TIME_WINDOW),
    ],
)
def test_check_reasons_follow_pass_rules(entry, trusted, reason):
    decision = check(entry, NOW, trusted, SHANGHAI)
    assert decision.reason is reason
    assert decision.granted is (reason is Reason.GRANTED)
    assert (Flag.CLOCK_UNTRUSTED in decision.flags) is (not trusted)


def test_check_strict_untrusted_clock_and_zones():
    early = CardEntry("em4100:1", valid_from=NOW + timedelta(hours=1), zones=0b101)
    assert (
        check(early, NOW, False, UTC, untrusted_clock=UntrustedClockPolicy.DENY).reason
        is Reason.NOT_YET_VALID
    )
    ok = CardEntry("em4100:1", zones=0b101)
    assert check(ok, NOW, True, UTC, zone=2).granted
    assert check(ok, NOW, True, UTC, zone=1).reason is Reason.WRONG_ZONE
