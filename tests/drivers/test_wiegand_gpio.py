"""The Wiegand reader on gpiozero mock pins, pulsed by the simulator with real timing.

A real reader is timed by hardware; the simulator is a Python thread that a loaded test
machine can deschedule for tens, even a hundred, milliseconds in the middle of a frame.
So these tests give the decoder 200 ms of end-of-frame silence (and the simulator 250 ms
between frames) rather than the 25 ms default; the exact timing rules are proven with synthetic
timestamps in ``test_wiegand.py``.
"""

from __future__ import annotations

import queue

import pytest
from gpiozero.pins.mock import MockFactory

from drivers.cards import CardRead, CardRejected, CardRejectReason, KeyPress
from drivers.wiegand import H10304, H10306, WiegandDecoder, WiegandReader
from simulator.wiegand import VirtualWiegandReader

WAIT_S = 2.0


@pytest.fixture
def rig():
    factory = MockFactory()
    readings: queue.Queue = queue.Queue()
    decoder = WiegandDecoder(reader="door1", min_silence_ns=200_000_000)
    reader = WiegandReader("GPIO5", "GPIO6", readings.put, name="door1", pin_factory=factory, decoder=decoder)
    sim = VirtualWiegandReader(factory, "GPIO5", "GPIO6", pulse_us=50, gap_us=1_000, frame_pause_s=0.25)
    try:
        yield sim, readings
    finally:
        reader.close()
        factory.reset()


def next_reading(readings: queue.Queue):
    return readings.get(timeout=WAIT_S)


def test_26_bit_card_through_the_pins(rig):
    sim, readings = rig
    bits = sim.send_card(13, 13067)
    reading = next_reading(readings)
    assert isinstance(reading, CardRead)
    assert (reading.facility, reading.card_id, reading.raw, reading.reader) == (13, 13067, bits, "door1")
    assert len(sim.sent) == 26 and all(p.width_ns >= 50_000 for p in sim.sent)
    assert readings.empty()


def test_34_and_37_bit_cards_back_to_back(rig):
    sim, readings = rig
    sim.send_card(0x89D4, 0x1B81, H10306)
    sim.send_card(4660, 300_000, H10304, gap_us=500)
    first, second = next_reading(readings), next_reading(readings)
    assert (first.bits, first.facility, first.card_id) == (34, 0x89D4, 0x1B81)
    assert (second.bits, second.facility, second.card_id) == (37, 4660, 300_000)


def test_pin_pad_keys(rig):
    sim, readings = rig
    for key in "12#":
        sim.send_key(key, 8)
    keys = [next_reading(readings) for _ in range(3)]
    assert all(isinstance(k, KeyPress) for k in keys)
    assert "".join(k.key for k in keys) == "12#"


def test_slowest_in_spec_timing_still_decodes(rig):
    sim, readings = rig
    sim.send_card(1, 2, pulse_us=100, gap_us=20_000)
    reading = readings.get(timeout=WAIT_S + 1)
    assert isinstance(reading, CardRead) and (reading.facility, reading.card_id) == (1, 2)


CIVINTEC_26 = "1" + "11010100" + "00011011" + "10000001" + "0"


def test_frame_interleaved_with_glitches_is_rejected(rig):
    sim, readings = rig
    sim.send_bits(CIVINTEC_26, glitches=[3, 17], glitch_width_us=1)
    reading = next_reading(readings)
    assert isinstance(reading, CardRejected)
    assert reading.reason in (CardRejectReason.NOISE, CardRejectReason.LENGTH)
    assert sum(p.glitch for p in sim.sent) == 2
    sim.send_card(13, 13067)  # and the next clean frame reads normally
    assert next_reading(readings).card_id == 13067


def test_crosstalk_between_the_lines_is_noise(rig):
    sim, readings = rig
    sim.send_bits(CIVINTEC_26, crosstalk=[5])
    reading = next_reading(readings)
    assert isinstance(reading, CardRejected) and reading.reason is CardRejectReason.NOISE
    assert reading.bits == 27  # the dip was seen as a pulse, and the frame thrown away for it


def test_two_frames_run_together_are_a_length_rejection(rig):
    sim, readings = rig
    sim.send_card(13, 13067, pause=False)
    sim.send_card(13, 13067)
    reading = next_reading(readings)
    assert isinstance(reading, CardRejected) and reading.reason is CardRejectReason.LENGTH
    assert reading.bits == 52


def test_a_line_shorted_low_is_one_noise_rejection(rig):
    sim, readings = rig
    sim.hold_low(0, 0.3)
    reading = next_reading(readings)
    assert isinstance(reading, CardRejected) and reading.reason is CardRejectReason.NOISE
    sim.send_card(13, 13067)
    assert next_reading(readings).card_id == 13067
    assert readings.empty()
