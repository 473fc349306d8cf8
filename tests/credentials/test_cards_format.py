"""The credential-list wire format: round trips, limits, and typed rejection of anything else."""

from __future__ import annotations

import hashlib
import struct
import zlib
from datetime import UTC, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protocol.credentials import (
    EMPTY_LIST_HASH,
    Assembler,
    CardEntry,
    CredentialListError,
    CredentialRejectReason,
    UpdateKind,
    assemble,
    decode_chunk,
    encode_delta,
    encode_snapshot,
    entry_from_row,
    iter_entries,
    list_hash,
)
from protocol.messages import MAX_MESSAGE_BYTES

R = CredentialRejectReason


def test_snapshot_round_trip_keeps_every_field(cards):
    entries = cards(3000)
    chunks = encode_snapshot(7, reversed(entries), max_message_bytes=16 * 1024)
    assert len(chunks) > 1
    assert all(len(c) <= 16 * 1024 for c in chunks)
    update = assemble(reversed(chunks))  # any order
    assert (update.kind, update.list_version, update.base_version, update.count) == (
        UpdateKind.SNAPSHOT,
        7,
        0,
        3000,
    )
    decoded = list(iter_entries(update))
    assert decoded == sorted(entries, key=lambda e: e.credential)
    assert update.list_hash == list_hash(e.line() for e in decoded)
    assert len(update.snapshot_rows()) == 3000


def test_empty_snapshot_is_one_chunk_with_the_empty_hash():
    chunks = encode_snapshot(1, [])
    update = assemble(chunks)
    assert len(chunks) == 1
    assert update.list_hash == EMPTY_LIST_HASH
    assert update.snapshot_rows() == []


def test_100k_snapshot_fits_64k_messages(cards):
    chunks = encode_snapshot(1, cards(100_000))
    assert all(len(c) <= MAX_MESSAGE_BYTES for c in chunks)
    assert len(chunks) < 120  # compression works: about 12 MB of rows
    assert assemble(chunks).count == 100_000


def test_delta_round_trip(cards):
    entries = cards(10)
    chunks = encode_delta(3, 4, entries[:2], [entries[5].credential], count=9, result_hash="ab" * 32)
    update = assemble(chunks)
    changes = update.delta_changes()
    assert (update.base_version, update.list_version, update.count) == (3, 4, 9)
    assert [c.credential for c in changes] == sorted(
        [entries[0].credential, entries[1].credential, entries[5].credential]
    )
    assert {c.credential: c.entry for c in changes}[entries[5].credential] is None
    assert {c.credential: c.entry for c in changes}[entries[0].credential] == entries[0]


@pytest.mark.parametrize("position", [0, 5, 20, 70, -40, -1])
def test_any_flipped_byte_is_a_hash_mismatch_or_malformed(cards, position):
    chunk = bytearray(encode_snapshot(2, cards(50))[0])
    chunk[position] ^= 0x01
    with pytest.raises(CredentialListError) as err:
        decode_chunk(bytes(chunk))
    assert err.value.reason in (R.HASH_MISMATCH, R.MALFORMED, R.BAD_VERSION)
    assert isinstance(err.value, ValueError)


def _reseal(head_and_body: bytes) -> bytes:
    return head_and_body + hashlib.sha256(head_and_body).digest()


def _chunk(kind=1, version=1, base=0, index=0, total=1, count=0, body=b"", digest=b"\0" * 32, fmt=1) -> bytes:
    head = struct.pack(">4sBBQQIII32s", b"GPCL", fmt, kind, version, base, index, total, count, digest)
    return _reseal(head + zlib.compress(body))


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (b"", R.MALFORMED),
        (b"GPCL", R.MALFORMED),
        (b"x" * (MAX_MESSAGE_BYTES + 1), R.TOO_LARGE),
        (_chunk(fmt=2), R.BAD_VERSION),
        (_chunk(kind=3), R.MALFORMED),
        (_chunk(version=0), R.MALFORMED),
        (_chunk(base=1), R.MALFORMED),
        (_chunk(kind=2, version=3, base=3), R.MALFORMED),
        (_chunk(index=1, total=1), R.MALFORMED),
        (_chunk(total=0), R.MALFORMED),
        (_chunk(count=10**7), R.TOO_LARGE),
        (_chunk(body=b"no newline"), R.MALFORMED),
        (_chunk(body=b"\0" * (2 * 1024 * 1024)), R.TOO_LARGE),
        (
            _reseal(struct.pack(">4sBBQQIII32s", b"GPCL", 1, 1, 1, 0, 0, 1, 0, b"\0" * 32) + b"not zlib"),
            R.MALFORMED,
        ),
    ],
)
def test_bad_chunks_are_typed_rejections(payload, reason):
    with pytest.raises(CredentialListError) as err:
        decode_chunk(payload)
    assert err.value.reason is reason


@pytest.mark.parametrize(
    "body",
    [
        b"[1]\n",
        b'["bad credential","","",null,null,null,null,1,null]\n',
        b'["em4100:1","","",5,5,null,null,1,null]\n',
        b'["em4100:1","","",null,null,10,null,1,null]\n',
        b'["em4100:1","","",null,null,10,10,1,null]\n',
        b'["em4100:1","","",null,null,null,null,-1,null]\n',
        b'["em4100:1","","",null,null,null,null,1,"XYZ"]\n',
        b'["em4100:1","","",true,null,null,null,1,null]\n',
        b"{not json\n",
        b'["em4100:2","","",null,null,null,null,1,null]\n["em4100:1","","",null,null,null,null,1,null]\n',
    ],
)
def test_bad_rows_are_malformed(body):
    digest = hashlib.sha256(body)
    payload = _chunk(count=body.count(b"\n"), body=body, digest=digest.digest())
    with pytest.raises(CredentialListError) as err:
        assemble([payload]).snapshot_rows()
    assert err.value.reason is R.MALFORMED


def test_snapshot_with_wrong_list_hash_or_count_is_refused(cards):
    body = b"".join(e.line() for e in sorted(cards(5), key=lambda e: e.credential))
    wrong_hash = _chunk(count=5, body=body, digest=b"\1" * 32)
    wrong_count = _chunk(count=4, body=body, digest=hashlib.sha256(body).digest())
    for payload in (wrong_hash, wrong_count):
        with pytest.raises(CredentialListError) as err:
            assemble([payload]).snapshot_rows()
        assert err.value.reason is R.HASH_MISMATCH


def test_missing_and_mixed_chunks(cards):
    a = encode_snapshot(1, cards(2000), max_message_bytes=8 * 1024)
    b = encode_snapshot(2, cards(2000, seed=2), max_message_bytes=8 * 1024)
    with pytest.raises(CredentialListError) as err:
        assemble(a[:-1])
    assert err.value.reason is R.CHUNK_MISSING
    with pytest.raises(CredentialListError) as err:
        assemble([*a[:-1], b[-1]])
    assert err.value.reason is R.CHUNK_MISMATCH
    with pytest.raises(CredentialListError) as err:
        assemble([])
    assert err.value.reason is R.CHUNK_MISSING


def test_assembler_collects_in_any_order_and_newer_replaces_older(cards):
    a = encode_snapshot(1, cards(2000), max_message_bytes=8 * 1024)
    b = encode_snapshot(2, cards(2000, seed=2), max_message_bytes=8 * 1024)
    asm = Assembler()
    assert asm.add(a[1]) is None
    assert asm.missing == [i for i in range(len(a)) if i != 1]
    results = [asm.add(c) for c in b[::-1]]
    assert results[:-1] == [None] * (len(b) - 1)
    assert results[-1] is not None and results[-1].list_version == 2
    asm.add(b[0])
    with pytest.raises(CredentialListError) as err:
        asm.add(a[0])
    assert err.value.reason is R.OLDER


def test_encoder_refuses_bad_entries():
    with pytest.raises(CredentialListError):
        CardEntry("no colon").line()
    with pytest.raises(CredentialListError):
        CardEntry("em4100:1", valid_from=datetime(2026, 1, 1)).line()  # naive time
    with pytest.raises(ValueError, match="twice"):
        encode_snapshot(1, [CardEntry("em4100:1"), CardEntry("em4100:1")])


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=400))
def test_any_bytes_give_a_chunk_or_a_typed_rejection(data):
    for payload in (data, b"GPCL\x01" + data, _reseal(b"GPCL\x01" + data)):
        try:
            chunk = decode_chunk(payload)
        except CredentialListError:
            continue
        try:
            update = assemble([chunk])
            update.snapshot_rows() if update.kind is UpdateKind.SNAPSHOT else update.delta_changes()
        except CredentialListError:
            pass


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=300))
def test_any_body_in_a_valid_chunk_is_parsed_or_rejected(body):
    for kind, base in ((1, 0), (2, 1)):
        payload = _chunk(
            kind=kind, version=2, base=base, count=1, body=body, digest=hashlib.sha256(body).digest()
        )
        try:
            update = assemble([payload])
            update.snapshot_rows() if kind == 1 else update.delta_changes()
        except CredentialListError:
            pass


times = st.one_of(st.none(), st.integers(0, 2**33).map(lambda s: datetime.fromtimestamp(s, UTC)))
entries = st.builds(
    CardEntry,
    credential=st.from_regex(r"\A(em4100|wiegand26):[0-9A-Za-z:._-]{1,20}\Z"),
    holder=st.text(max_size=40),
    unit=st.text(max_size=20),
    valid_from=times,
    valid_until=st.none(),
    window_start=st.none(),
    window_end=st.none(),
    zones=st.integers(0, 2**64 - 1),
    photo_digest=st.one_of(st.none(), st.binary(min_size=16, max_size=16).map(bytes.hex)),
)


@settings(max_examples=200, deadline=None)
@given(entries)
def test_any_valid_entry_round_trips(entry):
    import json

    assert entry_from_row(json.loads(entry.line())) == entry
    update = assemble(encode_snapshot(1, [entry]))
    assert list(iter_entries(update)) == [entry]
