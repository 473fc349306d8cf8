"""EM4100 frames and the RDM6300 stream parser, fed bytes and times directly."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from drivers.cards import CardGone, CardRead, CardRejected, CardRejectReason, ReaderKind
from drivers.em4100 import (
    FRAME_TIMEOUT_NS,
    GONE_AFTER_NS,
    Em4100Parser,
    checksum,
    frame,
    parse_body,
)

MS = 1_000_000

# -- test vectors from public documents ---------------------------------------------------

# RDM630 Specification (Seeed Studio datasheet; copy at https://www.scribd.com/document/321491868/Rdm630-Spec):
# output data 36H 32H 45H 33H 30H 38H 36H 43H 45H 44H ("62E3086CED"),
# CHECKSUM: (62H) XOR (E3H) XOR (08H) XOR (6CH) XOR (EDH) = 08H.
RDM630_SPEC = (b"62E3086CED", 0x08)

# Seeed forum, "RDM630 - Checksum Problems" (https://forum.seeedstudio.com/t/rdm630-checksum-problems/16324):
# received 02 | 30 31 30 30 30 37 33 34 45 30 | 44 32 | 03, i.e. "01000734E0" with checksum "D2":
# (01H) xor (00H) xor (07H) xor (34H) xor (E0H) = D2H.
SEEED_FORUM_OK = b"\x0201000734E0D2\x03"
# The same thread's "card 1": "060075EA6D" arrived with checksum "D6", though the data XOR to F4 —
# a corrupted or nonconforming frame from the field, which must be refused.
SEEED_FORUM_BAD_CHECKSUM = b"\x02060075EA6DD6\x03"
# ...and its "card 2" arrived with the checksum characters ";D" (3B 44), which are not hex.
SEEED_FORUM_NOT_HEX = b"\x020600758 24E;D\x03".replace(b" ", b"")


def test_rdm630_specification_checksum():
    data, expected = RDM630_SPEC
    assert checksum(bytes.fromhex(data.decode())) == expected
    assert frame(0x62E3086CED) == b"\x02" + data + b"08\x03"


def test_seeed_forum_frame_decodes_to_the_full_40_bit_id():
    reading = parse_body(SEEED_FORUM_OK[1:-1])
    assert isinstance(reading, CardRead)
    assert reading.card_id == 0x01000734E0 and reading.bits == 40 and reading.raw == "01000734E0"
    assert reading.credential == "em4100:01000734E0" and reading.kind is ReaderKind.EM4100
    assert frame(0x01000734E0) == SEEED_FORUM_OK


@pytest.mark.parametrize(
    "raw, reason",
    [
        (SEEED_FORUM_BAD_CHECKSUM, CardRejectReason.CHECKSUM),
        (SEEED_FORUM_NOT_HEX, CardRejectReason.FORMAT),
        (b"\x020000000000" + b"00" + b"\x03", CardRejectReason.ALL_ZERO),
        (b"\x0262E3086C08\x03", CardRejectReason.LENGTH),
    ],
)
def test_field_failures_are_typed_rejections(raw, reason):
    reading = parse_body(raw[1:-1])
    assert isinstance(reading, CardRejected) and reading.reason is reason


def test_checksum_rejection_says_what_was_sent_and_what_was_computed():
    reading = parse_body(SEEED_FORUM_BAD_CHECKSUM[1:-1])
    assert "D6" in reading.detail and "F4" in reading.detail


# -- the stream parser ----------------------------------------------------------------------


def test_a_tag_held_at_the_reader_is_one_read_and_one_gone():
    parser = Em4100Parser(reader="gate")
    t = 1_000 * MS
    out = []
    for i in range(20):  # 20 repeats, 65 ms apart: 1.3 s in the field
        out += parser.feed(frame(0x62E3086CED), t + i * 65 * MS)
    assert [type(r) for r in out] == [CardRead]
    assert out[0].card_id == 0x62E3086CED and out[0].reader == "gate"
    last = t + 19 * 65 * MS
    assert parser.present == 0x62E3086CED
    assert parser.poll(last + GONE_AFTER_NS - 1) == []
    (gone,) = parser.poll(last + GONE_AFTER_NS)
    assert isinstance(gone, CardGone) and gone.card_id == 0x62E3086CED
    assert parser.present is None and parser.deadline_ns() is None
    # presented again after it left: a new read
    (again,) = parser.feed(frame(0x62E3086CED), last + 2 * GONE_AFTER_NS)
    assert isinstance(again, CardRead)


def test_a_different_tag_replaces_the_first():
    parser = Em4100Parser()
    parser.feed(frame(1), 0)
    out = parser.feed(frame(2), 50 * MS)
    assert [type(r) for r in out] == [CardGone, CardRead]
    assert (out[0].card_id, out[1].card_id) == (1, 2)


def test_frames_split_across_reads_are_joined():
    parser = Em4100Parser()
    data = frame(0x01000734E0)
    out = []
    for i, byte in enumerate(data):
        out += parser.feed(bytes([byte]), i * MS)  # one byte per millisecond, as 9600 baud gives
    assert [r.card_id for r in out] == [0x01000734E0]


def test_half_a_frame_then_silence_is_truncated():
    parser = Em4100Parser()
    assert parser.feed(frame(0x62E3086CED)[:7], 0) == []
    assert parser.deadline_ns() == FRAME_TIMEOUT_NS
    (reading,) = parser.poll(FRAME_TIMEOUT_NS)
    assert isinstance(reading, CardRejected) and reading.reason is CardRejectReason.TRUNCATED
    assert reading.raw == "62E308"


def test_half_a_frame_cut_by_the_next_is_truncated_and_the_next_still_reads():
    parser = Em4100Parser()
    out = parser.feed(frame(0x62E3086CED)[:9] + frame(0x01000734E0), 0)
    assert [type(r) for r in out] == [CardRejected, CardRead]
    assert out[0].reason is CardRejectReason.TRUNCATED and out[1].card_id == 0x01000734E0


def test_bytes_outside_frames_are_one_noise_rejection():
    parser = Em4100Parser()
    out = parser.feed(b"\xff\x00garbage" + frame(7), 0)
    assert [type(r) for r in out] == [CardRejected, CardRead]
    assert out[0].reason is CardRejectReason.NOISE and "9 bytes" in out[0].detail
    assert parser.feed(b"\xfe\xfe", 10 * MS) == []
    (noise,) = parser.poll(10 * MS + FRAME_TIMEOUT_NS)
    assert noise.reason is CardRejectReason.NOISE and "2 bytes" in noise.detail


def test_a_frame_without_an_end_byte_is_a_length_rejection():
    parser = Em4100Parser()
    body = frame(0x62E3086CED)[:-1]
    (reading,) = parser.feed(body + b"FF", 0)
    assert isinstance(reading, CardRejected) and reading.reason is CardRejectReason.LENGTH


def test_a_repeating_bad_frame_is_reported_once_while_it_repeats():
    parser = Em4100Parser()
    out = []
    for i in range(10):
        out += parser.feed(SEEED_FORUM_BAD_CHECKSUM, i * 65 * MS)
    assert [r.reason for r in out] == [CardRejectReason.CHECKSUM]
    out = parser.feed(SEEED_FORUM_BAD_CHECKSUM, 10 * 65 * MS + GONE_AFTER_NS)
    assert [r.reason for r in out] == [CardRejectReason.CHECKSUM]  # after a quiet spell: again


# -- properties -----------------------------------------------------------------------------

ids = st.integers(1, (1 << 40) - 1)


@settings(max_examples=300, deadline=None)
@given(card_id=ids)
def test_every_frame_round_trips(card_id):
    (reading,) = Em4100Parser().feed(frame(card_id), 0)
    assert isinstance(reading, CardRead) and reading.card_id == card_id


@settings(max_examples=500, deadline=None)
@given(card_id=ids, other=ids, position=st.integers(0, 13), byte=st.integers(0, 255))
def test_one_corrupted_byte_never_yields_a_wrong_id(card_id, other, position, byte):
    """A corrupted frame, followed by a good frame of another tag: only true ids ever come out."""
    data = bytearray(frame(card_id))
    data[position] = byte
    parser = Em4100Parser()
    out = parser.feed(bytes(data), 0) + parser.feed(frame(other), 20 * MS) + parser.poll(10_000 * MS)
    reads = [r.card_id for r in out if isinstance(r, CardRead)]
    assert set(reads) <= {card_id, other}
    assert other in reads
    if bytes(data).upper() != frame(card_id):  # a lower-case hex digit is the same digit
        assert card_id not in reads or card_id == other


@settings(max_examples=300, deadline=None)
@given(card_id=ids, cut=st.integers(1, 13))
def test_a_dropped_byte_never_yields_a_read(card_id, cut):
    data = frame(card_id)
    data = data[:cut] + data[cut + 1 :]
    parser = Em4100Parser()
    out = parser.feed(data, 0) + parser.poll(10_000 * MS)
    assert not any(isinstance(r, CardRead) for r in out)
    assert any(isinstance(r, CardRejected) for r in out)
