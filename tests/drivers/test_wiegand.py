"""Wiegand frames and the edge decoder, without pins.

Test vectors come from public documents, cited at each; the decoder is fed edges with
synthetic timestamps so its timing rules are exact and fast.
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from drivers.cards import CardRead, CardRejected, CardRejectReason, KeyPress, ReaderKind
from drivers.wiegand import (
    CARD_FORMATS,
    H10301,
    H10304,
    H10306,
    MIN_SILENCE_NS,
    WiegandDecoder,
    decode_bits,
    encode_key,
)

US = 1_000
MS = 1_000_000

# -- test vectors from public documents ---------------------------------------------------

# r/AskElectronics, "RFID - How do I convert 26 bit Wiegand to Dec?"
# (https://www.reddit.com/r/AskElectronics/comments/10llyy/): a reader's 26-bit hex output
# 0x21A6616 is card 13067 at facility 13; the first bit is 1 (even parity over the facility
# half) and the last bit 0 (odd parity over the card half).
REDDIT_26 = (format(0x21A6616, "026b"), 13, 13067)

# CIVINTEC CN56X0B-X Reader User Manual, §6.4.2 "Wiegand26 Format" and §6.4.5 "Wiegand34
# Format" (https://manualshive.com/ru/manual/civintec/cn56-series/2611587?page=25):
# data D4 1B 81 is sent as 1 11010100 00011011 10000001 0; data 89 D4 1B 81 as
# 1 10001001 11010100 00011011 10000001 1.
CIVINTEC_26 = ("1" + "11010100" + "00011011" + "10000001" + "0", 0xD4, 0x1B81)
CIVINTEC_34 = ("1" + "10001001" + "11010100" + "00011011" + "10000001" + "1", 0x89D4, 0x1B81)


@pytest.mark.parametrize("bits, facility, card", [REDDIT_26, CIVINTEC_26])
def test_26_bit_vectors_decode_to_the_published_facility_and_card(bits, facility, card):
    reading = decode_bits(bits)
    assert isinstance(reading, CardRead)
    assert (reading.facility, reading.card_id, reading.bits, reading.raw) == (facility, card, 26, bits)
    assert H10301.encode(facility, card) == bits  # the encoder agrees bit for bit, parity included


def test_26_bit_vector_parity_bits_are_where_the_documents_put_them():
    bits, facility, card = REDDIT_26
    assert bits[0] == "1" and bits[-1] == "0"  # as the thread works out by hand
    assert bits[1:9] == format(facility, "08b")  # facility first, most significant bit first
    assert bits[9:25] == format(card, "016b")
    civ = CIVINTEC_26[0]
    assert civ[0] == "1" and civ[-1] == "0"


def test_34_bit_vector_decodes_to_the_published_fields():
    bits, facility, card = CIVINTEC_34
    reading = decode_bits(bits)
    assert isinstance(reading, CardRead)
    assert (reading.facility, reading.card_id, reading.bits) == (facility, card, 34)
    assert (bits[0], bits[-1]) == ("1", "1")
    assert H10306.encode(facility, card) == bits


def test_bit_order_matters_reversed_frames_are_not_the_same_card():
    """The classic bug (ESPEasy#2400, pigpio#30): bits shifted in the wrong order."""
    for bits, facility, card in (REDDIT_26, CIVINTEC_26, CIVINTEC_34):
        reading = decode_bits(bits[::-1])
        assert not (isinstance(reading, CardRead) and (reading.facility, reading.card_id) == (facility, card))


def test_37_bit_h10304_layout():
    # Layout from https://www.ooaccess.com/kb/37-bit-fc/: 16-bit facility from bit 2,
    # 19-bit card from bit 18; even parity over the first 19 bits, odd over the last 19
    # (the middle bit counts in both).
    bits = H10304.encode(65535, 524287)
    assert len(bits) == 37 and bits[1:36] == "1" * 35
    assert bits[:19].count("1") % 2 == 0 and bits[18:].count("1") % 2 == 1
    reading = decode_bits(bits)
    assert isinstance(reading, CardRead) and (reading.facility, reading.card_id) == (65535, 524287)


# Rosslare AYC-Ex5/T65 Programming Manual, "Option 3: Single Key, Wiegand 8-Bit Nibbles
# Complemented" (https://www.manualshelf.com/manual/rosslare/aycex5/programming-manual-english/page-21.html)
ROSSLARE_8 = {
    "0": "11110000",
    "1": "11100001",
    "2": "11010010",
    "3": "11000011",
    "4": "10110100",
    "5": "10100101",
    "6": "10010110",
    "7": "10000111",
    "8": "01111000",
    "9": "01101001",
    "*": "01011010",
    "#": "01001011",
}


@pytest.mark.parametrize("key, frame", sorted(ROSSLARE_8.items()))
def test_8_bit_keypad_vectors(key, frame):
    reading = decode_bits(frame)
    assert isinstance(reading, KeyPress) and reading.key == key and reading.bits == 8
    assert encode_key(key, 8) == frame


def test_4_bit_keypad_values():
    # Rosslare AYC-Qx4 manual §4.2.3.9 "Single Key, Wiegand 4-Bit": 0–9 as binary, * = 1010, # = 1011.
    assert [decode_bits(format(v, "04b")).key for v in range(12)] == list("0123456789*#")
    bad = decode_bits("1100")
    assert isinstance(bad, CardRejected) and bad.reason is CardRejectReason.FORMAT


def test_8_bit_keypad_with_a_wrong_complement_is_a_parity_rejection():
    reading = decode_bits("11110001")
    assert isinstance(reading, CardRejected) and reading.reason is CardRejectReason.PARITY


# -- rejections ---------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", [H10301, H10306, H10304])
def test_every_single_bit_error_is_a_parity_rejection(fmt):
    good = fmt.encode(123, 4567)
    for i in range(fmt.bits):
        flipped = good[:i] + ("1" if good[i] == "0" else "0") + good[i + 1 :]
        reading = decode_bits(flipped)
        assert isinstance(reading, CardRejected), i
        assert reading.reason in (CardRejectReason.PARITY, CardRejectReason.ALL_ZERO), i


def test_all_zero_payload_and_unknown_lengths_are_rejected():
    zero = decode_bits("0" * 26)
    assert isinstance(zero, CardRejected) and zero.reason is CardRejectReason.ALL_ZERO
    zero_ok_parity = decode_bits("0" * 25 + "1")
    assert isinstance(zero_ok_parity, CardRejected) and zero_ok_parity.reason is CardRejectReason.ALL_ZERO
    for n in (1, 13, 25, 27, 33, 35, 40):
        reading = decode_bits("1" * n)
        assert isinstance(reading, CardRejected) and reading.reason is CardRejectReason.LENGTH, n


def test_credential_string_names_format_facility_and_card():
    reading = decode_bits(REDDIT_26[0], reader="front")
    assert reading.credential == "wiegand26:13:13067" and reading.reader == "front"
    assert reading.kind is ReaderKind.WIEGAND


# -- the edge decoder -----------------------------------------------------------------------


def edges(bits: str, start_ns: int = 1_000 * MS, *, width_ns: int = 50 * US, interval_ns: int = 2 * MS):
    """(line, active, t_ns) for each pulse, in time order."""
    out = []
    for i, bit in enumerate(bits):
        t = start_ns + i * interval_ns
        out += [(int(bit), True, t), (int(bit), False, t + width_ns)]
    return out


def feed(decoder: WiegandDecoder, events) -> list:
    out = []
    for line, active, t in events:
        out += decoder.edge(line, active, t)
    return out


def test_a_frame_ends_only_after_the_silence():
    decoder = WiegandDecoder()
    ev = edges(CIVINTEC_26[0])
    assert feed(decoder, ev) == []
    last = ev[-1][2]
    assert decoder.poll(last + MIN_SILENCE_NS - 1) == []
    assert decoder.deadline_ns() == last + MIN_SILENCE_NS
    (reading,) = decoder.poll(last + MIN_SILENCE_NS)
    assert isinstance(reading, CardRead) and reading.card_id == 0x1B81
    assert reading.at_ns == ev[0][2]
    assert decoder.deadline_ns() is None and decoder.poll(last + 10 * MIN_SILENCE_NS) == []


def test_slow_readers_get_three_bit_periods_of_silence():
    decoder = WiegandDecoder()
    ev = edges(CIVINTEC_26[0], interval_ns=20 * MS)  # the slowest the standard allows
    assert feed(decoder, ev) == []
    last = ev[-1][2]
    assert decoder.poll(last + 30 * MS) == []  # past 25 ms, but within 3 × 20 ms
    (reading,) = decoder.poll(last + 61 * MS)
    assert isinstance(reading, CardRead) and reading.card_id == 0x1B81


def test_the_next_frame_closes_the_previous_one_even_without_a_poll():
    decoder = WiegandDecoder()
    first = edges(REDDIT_26[0])
    second = edges(CIVINTEC_26[0], start_ns=first[-1][2] + 100 * MS)
    out = feed(decoder, first + second)
    assert [r.card_id for r in out] == [13067]
    assert [r.card_id for r in decoder.poll(second[-1][2] + MIN_SILENCE_NS)] == [0x1B81]


def test_a_glitch_between_bits_rejects_the_frame():
    decoder = WiegandDecoder()
    ev = edges(CIVINTEC_26[0])
    glitch_t = ev[20][2] + 500 * US
    ev += [(1, True, glitch_t), (1, False, glitch_t + 1 * US)]
    ev.sort(key=lambda e: e[2])
    feed(decoder, ev)
    (reading,) = decoder.poll(ev[-1][2] + MIN_SILENCE_NS)
    assert isinstance(reading, CardRejected) and reading.reason is CardRejectReason.NOISE
    assert "µs wide" in reading.detail


def test_both_lines_low_at_once_is_noise():
    decoder = WiegandDecoder()
    ev = edges(REDDIT_26[0])
    t = ev[2 * 10][2] + 10 * US  # while bit 10's pulse is still low
    ev += [(1 - int(REDDIT_26[0][10]), True, t), (1 - int(REDDIT_26[0][10]), False, t + 30 * US)]
    ev.sort(key=lambda e: e[2])
    feed(decoder, ev)
    (reading,) = decoder.poll(ev[-1][2] + MIN_SILENCE_NS)
    assert isinstance(reading, CardRejected) and reading.reason is CardRejectReason.NOISE


def test_pulses_closer_than_the_shortest_gap_are_noise():
    decoder = WiegandDecoder()
    ev = edges(REDDIT_26[0], interval_ns=50 * US, width_ns=20 * US)
    feed(decoder, ev)
    (reading,) = decoder.poll(ev[-1][2] + MIN_SILENCE_NS)
    assert isinstance(reading, CardRejected) and reading.reason is CardRejectReason.NOISE


def test_half_a_frame_is_a_length_rejection():
    decoder = WiegandDecoder()
    ev = edges(REDDIT_26[0][:13])
    feed(decoder, ev)
    (reading,) = decoder.poll(ev[-1][2] + MIN_SILENCE_NS)
    assert isinstance(reading, CardRejected) and reading.reason is CardRejectReason.LENGTH
    assert reading.bits == 13 and reading.raw == REDDIT_26[0][:13]


def test_a_line_held_low_is_reported_once_and_then_ignored():
    decoder = WiegandDecoder()
    t0 = 5_000 * MS
    assert decoder.edge(0, True, t0) == []
    assert decoder.deadline_ns() == t0 + MIN_SILENCE_NS
    (reading,) = decoder.poll(t0 + MIN_SILENCE_NS)
    assert isinstance(reading, CardRejected) and reading.reason is CardRejectReason.NOISE
    assert "held low" in reading.detail
    assert decoder.poll(t0 + 10 * MIN_SILENCE_NS) == []
    assert decoder.edge(0, False, t0 + 20 * MIN_SILENCE_NS) == []  # released: no frame, no rejection
    ev = edges(REDDIT_26[0], start_ns=t0 + 30 * MIN_SILENCE_NS)
    feed(decoder, ev)
    assert [r.card_id for r in decoder.poll(ev[-1][2] + MIN_SILENCE_NS)] == [13067]


def test_overlong_frames_are_a_length_rejection():
    decoder = WiegandDecoder(max_bits=64)
    ev = edges("10" * 40)
    feed(decoder, ev)
    (reading,) = decoder.poll(ev[-1][2] + MIN_SILENCE_NS)
    assert isinstance(reading, CardRejected) and reading.reason is CardRejectReason.LENGTH
    assert reading.bits == 80


# -- properties -----------------------------------------------------------------------------

frames = st.sampled_from(sorted(CARD_FORMATS.values(), key=lambda f: f.bits)).flatmap(
    lambda fmt: st.tuples(
        st.just(fmt),
        st.integers(0, fmt.max_facility),
        st.integers(0, fmt.max_card),
    ).filter(lambda t: t[1] or t[2])
)


@settings(max_examples=200, deadline=None)
@given(
    frame=frames,
    width_us=st.integers(20, 100),
    gap_us=st.integers(200, 20_000),
    glitch_at=st.sets(st.integers(0, 36), max_size=4),
    glitch_width_ns=st.integers(0, 9_999),
    glitch_line=st.integers(0, 1),
)
def test_in_spec_frames_decode_exactly_and_glitched_ones_never_decode(
    frame, width_us, gap_us, glitch_at, glitch_width_ns, glitch_line
):
    fmt, facility, card = frame
    bits = fmt.encode(facility, card)
    interval = (width_us + gap_us) * US
    ev = edges(bits, width_ns=width_us * US, interval_ns=interval)
    glitches = sorted(i for i in glitch_at if i < len(bits) - 1)
    for i in glitches:
        t = ev[2 * i][2] + interval // 2
        ev += [(glitch_line, True, t), (glitch_line, False, t + glitch_width_ns)]
    ev.sort(key=lambda e: (e[2], not e[1]))
    decoder = WiegandDecoder()
    out = feed(decoder, ev) + decoder.poll(ev[-1][2] + 3 * interval + MIN_SILENCE_NS)
    assert len(out) == 1
    (reading,) = out
    if glitches:
        assert isinstance(reading, CardRejected) and reading.reason is CardRejectReason.NOISE
    else:
        assert isinstance(reading, CardRead)
        assert (reading.facility, reading.card_id, reading.raw) == (facility, card, bits)
