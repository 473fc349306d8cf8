"""A card to the relay in a few milliseconds, safely: frames held for late edges, and the bench's instruments.

With a short end-of-frame silence (what makes a Wiegand card open the door in ~4 ms), a busy
interpreter can hand the decoder a frame's edges late, and by the clock the frame looks
over half-way through.  The decoder then holds a frame that is not yet a card for the doubt
silence and lets edges whose own timestamps fall within the silence continue it.  These tests
prove that with synthetic timestamps, then through the reader thread, then check the pieces
``bench/door.py`` measures with, so its figures mean what they say.  None of them asserts a
latency.
"""

from __future__ import annotations

import queue
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from gpiozero import DigitalOutputDevice
from gpiozero.pins.mock import MockFactory

from bench import door as bench
from drivers.cards import CardRead, CardRejected, CardRejectReason, KeyPress
from drivers.wiegand import (
    DOUBT_SILENCE_NS,
    H10301,
    MIN_SILENCE_NS,
    WiegandDecoder,
    WiegandLine,
    WiegandReader,
    encode_key,
)
from protocol import decode_event
from simulator.rdm6300 import VirtualRdm6300

MS, US = 1_000_000, 1_000
PERIOD_NS = 1_100 * US
SHORT = {"min_silence_ns": 3 * MS, "silence_periods": 3}
SILENCE_NS = 3 * PERIOD_NS  # 3.3 ms: three bit periods beat the 3 ms minimum
CARD = H10301.encode(13, 13067)


def edges(bits: str, start_ns: int, *, width_ns: int = 100 * US, interval_ns: int = PERIOD_NS):
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


# -- the decoder with a short silence -------------------------------------------------------


def test_a_card_ends_on_the_short_silence():
    decoder = WiegandDecoder(**SHORT)
    ev = edges(CARD, 1_000 * MS)
    assert feed(decoder, ev) == []
    last = ev[-1][2]
    assert decoder.deadline_ns() == last + SILENCE_NS
    assert decoder.poll(last + SILENCE_NS - 1) == []
    (reading,) = decoder.poll(last + SILENCE_NS)
    assert isinstance(reading, CardRead) and (reading.facility, reading.card_id) == (13, 13067)
    assert not decoder.held and decoder.deadline_ns() is None


def test_a_frame_cut_short_by_late_edges_is_held_and_continued():
    decoder = WiegandDecoder(**SHORT)
    ev = edges(CARD, 1_000 * MS)
    first, rest = ev[:20], ev[20:]  # ten bits reach Python, then it falls behind
    assert feed(decoder, first) == []
    cut = first[-1][2]
    assert decoder.poll(cut + 5 * MS) == []  # by the clock the frame looks over...
    assert decoder.held and decoder.deadline_ns() == cut + DOUBT_SILENCE_NS
    assert feed(decoder, rest) == []  # ...but the late edges' own times say it went on
    assert not decoder.held and decoder.deadline_ns() == rest[-1][2] + SILENCE_NS
    (reading,) = decoder.poll(rest[-1][2] + SILENCE_NS)
    assert isinstance(reading, CardRead) and (reading.facility, reading.card_id, reading.raw) == (
        13,
        13067,
        CARD,
    )


def test_a_frame_that_stays_incomplete_is_rejected_after_the_doubt_silence():
    decoder = WiegandDecoder(**SHORT)
    ev = edges(CARD[:13], 1_000 * MS)
    feed(decoder, ev)
    last = ev[-1][2]
    assert decoder.poll(last + SILENCE_NS) == [] and decoder.held
    assert decoder.poll(last + DOUBT_SILENCE_NS - 1) == []
    (reading,) = decoder.poll(last + DOUBT_SILENCE_NS)
    assert isinstance(reading, CardRejected) and reading.reason is CardRejectReason.LENGTH
    assert (reading.bits, reading.raw) == (13, CARD[:13])
    assert decoder.poll(last + 10 * DOUBT_SILENCE_NS) == []


def test_an_edge_after_the_silence_closes_the_held_frame_and_starts_the_next():
    decoder = WiegandDecoder(**SHORT)
    half = edges(CARD[:13], 1_000 * MS)
    feed(decoder, half)
    last = half[-1][2]
    assert decoder.poll(last + 4 * MS) == [] and decoder.held
    following = edges(CARD, last + 5 * MS)  # stamped after the silence: a frame of its own
    out = feed(decoder, following)
    assert len(out) == 1 and isinstance(out[0], CardRejected) and out[0].bits == 13
    (reading,) = decoder.poll(following[-1][2] + SILENCE_NS)
    assert isinstance(reading, CardRead) and reading.card_id == 13067


def test_a_key_is_no_card_so_it_waits_for_the_doubt_silence():
    decoder = WiegandDecoder(**SHORT)
    ev = edges(encode_key("5", 8), 1_000 * MS)
    feed(decoder, ev)
    last = ev[-1][2]
    assert decoder.poll(last + 4 * MS) == []
    (key,) = decoder.poll(last + DOUBT_SILENCE_NS)
    assert isinstance(key, KeyPress) and key.key == "5"


def test_a_late_release_is_not_a_stuck_line():
    decoder = WiegandDecoder(**SHORT)
    ev = edges(CARD, 1_000 * MS)
    feed(decoder, ev[:-1])  # the last pulse's release has not reached Python yet
    pressed = ev[-2][2]
    assert decoder.poll(pressed + 5 * MS) == []  # low for longer than the silence, by the clock
    assert decoder.deadline_ns() == pressed + DOUBT_SILENCE_NS
    assert feed(decoder, ev[-1:]) == []
    (reading,) = decoder.poll(ev[-1][2] + SILENCE_NS)
    assert isinstance(reading, CardRead) and reading.card_id == 13067


def test_a_line_low_past_the_doubt_silence_is_still_one_noise_rejection():
    decoder = WiegandDecoder(**SHORT)
    t0 = 1_000 * MS
    decoder.edge(0, True, t0)
    assert decoder.poll(t0 + 5 * MS) == []
    (reading,) = decoder.poll(t0 + DOUBT_SILENCE_NS)
    assert isinstance(reading, CardRejected) and reading.reason is CardRejectReason.NOISE
    assert "held low" in reading.detail
    assert decoder.poll(t0 + 10 * DOUBT_SILENCE_NS) == []


def test_with_the_default_silence_nothing_is_held_longer():
    decoder = WiegandDecoder()
    ev = edges(CARD[:13], 1_000 * MS)
    feed(decoder, ev)
    last = ev[-1][2]
    assert decoder.deadline_ns() == last + MIN_SILENCE_NS
    (reading,) = decoder.poll(last + MIN_SILENCE_NS)
    assert isinstance(reading, CardRejected) and reading.reason is CardRejectReason.LENGTH


# -- through the reader thread --------------------------------------------------------------


def test_the_reader_thread_reads_a_frame_whose_second_half_arrives_late():
    """Edges stamped when they happened, delivered with a stall in the middle of the frame."""
    factory = MockFactory(pin_class=bench.TimedPin)
    readings: queue.Queue = queue.Queue()
    decoder = WiegandDecoder(**SHORT, doubt_silence_ns=2_000 * MS)  # room for a slow test machine
    reader = WiegandReader("GPIO5", "GPIO6", readings.put, pin_factory=factory, decoder=decoder)
    try:
        lines = bench.data_lines(factory)
        ev = edges(CARD, time.monotonic_ns() - 40 * MS)  # the whole frame happened already
        for line, active, t in ev[:20]:
            lines[line].drive_stamped(not active, t)
        assert bench.wait_until(lambda: decoder.held, 1.0)  # the thread saw the silence and held it
        assert readings.empty()
        for line, active, t in ev[20:]:
            lines[line].drive_stamped(not active, t)
        reading = readings.get(timeout=1.5)  # woken by the edges, well before the held deadline
        assert isinstance(reading, CardRead) and (reading.facility, reading.card_id) == (13, 13067)
        time.sleep(0.05)
        assert readings.empty()
    finally:
        reader.close()


# -- the bench's instruments ----------------------------------------------------------------


def test_a_timed_pin_keeps_each_change_and_hands_on_the_edge_stamp():
    factory = MockFactory(pin_class=bench.TimedPin)
    seen: list[tuple[int, bool, float]] = []
    line = WiegandLine("GPIO5", line=0, sink=lambda *edge: seen.append(edge), pin_factory=factory)
    relay = DigitalOutputDevice("GPIO17", initial_value=False, pin_factory=factory)
    try:
        pin = factory.pin("GPIO5")
        stamp = time.monotonic_ns() - 7 * MS
        pin.drive_stamped(False, stamp)
        pin.drive_stamped(True, stamp + 100 * US)
        assert [(n, active) for n, active, _ in seen] == [(0, True), (0, False)]
        assert [round(ticks * 1e9) for _, _, ticks in seen] == pytest.approx(
            [stamp, stamp + 100 * US], abs=1_000
        )
        relay_pin = factory.pin("GPIO17")
        mark = len(relay_pin.changes)
        before = time.monotonic_ns()
        relay.on()
        at = relay_pin.wait_for(True, mark, 0)
        assert at is not None and before <= at <= time.monotonic_ns()
        assert relay_pin.wait_for(False, mark, 0) is None
    finally:
        line.close()
        relay.close()


def test_out_of_spec_flags_frames_the_source_sent_late():
    timing = bench.FAST_READER
    good = edges("1010", 0)
    assert not bench.out_of_spec([(line, not active, t) for line, active, t in good], timing)
    stretched = edges("1010", 0)
    stretched[4:] = [(line, active, t + 2 * MS) for line, active, t in stretched[4:]]  # a 3 ms gap
    assert bench.out_of_spec([(line, not active, t) for line, active, t in stretched], timing)
    assert bench.out_of_spec([(0, False, 0)], timing)  # a press without its release


@pytest.fixture
def gate(tmp_path: Path) -> Iterator[tuple[bench.Gate, VirtualRdm6300]]:
    rdm = VirtualRdm6300()
    allow = [bench.card_credential(c) for c in range(1000, 1003)] + [bench.tag_credential(0x0100000000)]
    gate = bench.build_gate(
        tmp_path, "latency", silence=bench.FAST_SILENCE, rdm6300_url=rdm.port, allow=allow
    )
    try:
        yield gate, rdm
    finally:
        gate.close()
        rdm.close()


def test_cards_through_the_edge_source_and_a_tag_through_the_pty_each_energise_the_relay(gate):
    door, rdm = gate
    source = bench.EdgeSource()
    try:
        channel = source.add(door.factory)
        outcomes = [
            bench.gate_trial(door, bench.stamped_sender(source, channel, card, bench.FAST_READER))
            for card in range(1000, 1003)
        ]
    finally:
        source.close()
    assert not any(o.missed for o in outcomes)
    assert all((o.latency_ms is not None and o.latency_ms > 0) or o.source_late for o in outcomes)
    bench.em4100_warm_up(door, rdm)
    tag = bench.gate_trial(door, bench.em4100_sender(rdm, 0x0100000000))
    assert tag.latency_ms is not None and tag.latency_ms > 0
    scans = [
        decode_event(row.body)
        for row in door.agent.outbox.pending(limit=1000)
        if decode_event(row.body).type == "access.scan"
    ]
    granted = sorted(e.data["code"] for e in scans if e.data["granted"])
    assert "em4100:0100000000" in granted
    assert 1 + sum(o.latency_ms is not None for o in outcomes) <= len(granted) <= 4


def test_the_watchdog_trial_cuts_a_wedged_door_and_the_door_logic_takes_note(gate):
    door, _ = gate
    overshoot = bench.watchdog_trial(door, spinning=False)
    watchdog = door.agent.hardware.watchdog
    assert overshoot is not None and overshoot >= 0
    assert watchdog.cuts == 1 and not watchdog.latched and not door.agent.hardware.relay_energised
    assert bench.wait_until(
        lambda: any(
            decode_event(row.body).type == "door.relay_watchdog"
            for row in door.agent.outbox.pending(limit=1000)
        ),
        2.0,
    )


def test_the_naive_loops_switch_their_relay_too():
    allowed = {bench.card_credential(1000), bench.tag_credential(0x0100000000)}
    factory = MockFactory(pin_class=bench.TimedPin)
    naive = bench.NaiveWiegand(factory, allowed)
    source = bench.EdgeSource()
    try:
        channel = source.add(factory)
        card = bench.naive_trial(
            naive.relay, naive.relay_out, bench.stamped_sender(source, channel, 1000, bench.FAST_READER)
        )
    finally:
        source.close()
        naive.close()
    assert not card.missed
    with VirtualRdm6300() as rdm:
        naive_rdm = bench.NaiveRdm6300(rdm.port, MockFactory(pin_class=bench.TimedPin), allowed)
        try:
            tag = bench.naive_trial(
                naive_rdm.relay, naive_rdm.relay_out, bench.em4100_sender(rdm, 0x0100000000)
            )
        finally:
            naive_rdm.close()
    assert tag.latency_ms is not None and tag.latency_ms > 0
