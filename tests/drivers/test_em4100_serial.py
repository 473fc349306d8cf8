"""An RDM6300 on a pseudo-terminal, read through pyserial exactly as on a Pi."""

from __future__ import annotations

import queue
import time

import pytest

from drivers.cards import CardGone, CardRead, CardRejected, CardRejectReason
from drivers.em4100 import Rdm6300Reader
from simulator.rdm6300 import VirtualRdm6300

WAIT_S = 3.0


@pytest.fixture
def rig():
    sim = VirtualRdm6300()
    readings: queue.Queue = queue.Queue()
    reader = Rdm6300Reader(sim.port, readings.put, name="door1")
    assert reader.wait_connected(WAIT_S)
    try:
        yield sim, readings
    finally:
        reader.close()
        sim.close()


def test_a_tag_held_for_a_while_is_one_read_then_gone(rig):
    sim, readings = rig
    sim.present(0x62E3086CED)
    first = readings.get(timeout=WAIT_S)
    assert isinstance(first, CardRead) and first.card_id == 0x62E3086CED and first.reader == "door1"
    time.sleep(0.5)
    sim.remove()
    gone = readings.get(timeout=WAIT_S)
    assert isinstance(gone, CardGone) and gone.card_id == 0x62E3086CED
    assert sim.frames_sent >= 5  # it really repeated, and the repeats were suppressed
    assert readings.empty()


def test_corrupted_bytes_on_the_line_are_a_rejection_and_the_next_tag_reads(rig):
    sim, readings = rig
    sim.write(b"\x02060075EA6DD6\x03")  # a checksum failure seen in the field
    bad = readings.get(timeout=WAIT_S)
    assert isinstance(bad, CardRejected) and bad.reason is CardRejectReason.CHECKSUM
    sim.write(b"\x0262E30")  # half a frame, then nothing
    half = readings.get(timeout=WAIT_S)
    assert isinstance(half, CardRejected) and half.reason is CardRejectReason.TRUNCATED
    sim.present(0x01000734E0)
    good = readings.get(timeout=WAIT_S)
    assert isinstance(good, CardRead) and good.card_id == 0x01000734E0
