"""An RDM6300 on a pseudo-terminal, read through pyserial exactly as on a Pi."""

from __future__ import annotations

import logging
import queue
import time

import pytest

from drivers.cards import CardGone, CardRead, CardRejected, CardRejectReason
from drivers.em4100 import Rdm6300Reader, frame
from simulator.pty import PseudoTerminal
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


def test_an_unplugged_reader_is_reopened_and_a_frame_cut_off_is_truncated(tmp_path, caplog):
    tty = PseudoTerminal(tmp_path / "ttyUSB0")
    tty.plug()
    readings: queue.Queue = queue.Queue()
    reader = Rdm6300Reader(str(tty.link_path), readings.put, name="door2", reopen_s=0.05)
    try:
        assert reader.wait_connected(WAIT_S)
        tty.write(frame(0x01000734E0))
        first = readings.get(timeout=WAIT_S)
        assert isinstance(first, CardRead) and first.card_id == 0x01000734E0
        tty.write(b"\x0262E30")  # the cable goes in the middle of the next frame
        time.sleep(0.02)
        with caplog.at_level(logging.WARNING, logger="gatepost.drivers.em4100"):
            tty.unplug()
            cut = readings.get(timeout=WAIT_S)
            assert isinstance(cut, CardRejected) and cut.reason is CardRejectReason.TRUNCATED
            assert not reader.connected
            time.sleep(0.2)  # several attempts to reopen while it is away
        messages = [record.getMessage() for record in caplog.records]
        assert any(m.startswith("reader door2: port ") and " failed: " in m for m in messages)
        assert any(m.startswith("reader door2: cannot open ") for m in messages)
        tty.plug()
        assert reader.wait_connected(WAIT_S)
        tty.write(frame(0x62E3086CED))
        later = readings.get(timeout=WAIT_S)
        while isinstance(later, CardGone):  # the first tag, gone while the cable was out
            later = readings.get(timeout=WAIT_S)
        assert isinstance(later, CardRead) and later.card_id == 0x62E3086CED
    finally:
        reader.close()
        tty.close()
