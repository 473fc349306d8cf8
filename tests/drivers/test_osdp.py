"""OSDP readers with libosdp on both ends: the gate's control panel against simulated readers.

Every test runs the real protocol over a real pseudo-terminal (or a loopback socket):
libosdp's PD in the simulator, libosdp's CP in the driver.
"""

from __future__ import annotations

import contextlib
import os
import random
import threading
import time
from pathlib import Path

import pytest

from drivers.cards import CardRead, CardRejected, CardRejectReason, KeyPress, ReaderKind
from drivers.osdp import (
    KeyInstalled,
    LedColor,
    LinkState,
    OsdpBus,
    OsdpReader,
    ReaderLink,
    ReaderStatus,
    card_reading,
    key_readings,
)
from drivers.osdp_frames import FrameScanner, crc16, encode
from drivers.wiegand import H10301
from simulator.osdp import SimulatedOsdpBus

pytestmark = pytest.mark.timeout(60)

KEY = bytes.fromhex("00112233445566778899aabbccddeeff")


class Recorder:
    """What the bus delivered, with a way to wait for it."""

    def __init__(self) -> None:
        self.readings: list[object] = []
        self.events: list[object] = []
        self._changed = threading.Condition()

    def reading(self, reading: object) -> None:
        with self._changed:
            self.readings.append(reading)
            self._changed.notify_all()

    def event(self, event: object) -> None:
        with self._changed:
            self.events.append(event)
            self._changed.notify_all()

    def wait(self, predicate, timeout: float = 10.0) -> bool:
        deadline = time.monotonic() + timeout
        with self._changed:
            while not predicate():
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._changed.wait(left)
            return True

    def cards(self) -> list[CardRead]:
        return [r for r in self.readings if isinstance(r, CardRead)]

    def links(self, reader: str) -> list[LinkState]:
        return [e.state for e in self.events if isinstance(e, ReaderLink) and e.reader == reader]


@pytest.fixture
def sim(tmp_path: Path):
    bus = SimulatedOsdpBus(tmp_path / "ttyOSDP0")
    yield bus
    bus.close()


def start_bus(url: str, readers: list[OsdpReader], rec: Recorder, **kwargs) -> OsdpBus:
    return OsdpBus(url, readers, rec.reading, on_event=rec.event, name="bus", **kwargs)


def test_secure_channel_comes_up_and_a_card_is_the_same_card_as_on_wiegand(sim):
    reader = sim.add_reader(1, key=KEY)
    sim.start()
    rec = Recorder()
    with start_bus(sim.url, [OsdpReader("front", 1, KEY)], rec) as bus:
        assert bus.wait_state("front", LinkState.ONLINE, 10)
        assert bus.secure_channel("front") and reader.secure_channel
        bits = reader.present_card(13, 13067)
        assert rec.wait(lambda: rec.cards())
        card = rec.cards()[0]
        assert card.kind is ReaderKind.OSDP and card.reader == "front"
        assert (card.facility, card.card_id, card.bits, card.raw) == (13, 13067, 26, bits)
        assert card.credential == "wiegand26:13:13067"  # what a Wiegand reader gives for the card
        reader.keypad("7*#")
        assert rec.wait(lambda: len([r for r in rec.readings if isinstance(r, KeyPress)]) == 3)
        assert [r.key for r in rec.readings if isinstance(r, KeyPress)] == ["7", "*", "#"]


def test_led_and_buzzer_reach_the_reader(sim):
    reader = sim.add_reader(1, key=KEY)
    sim.start()
    rec = Recorder()
    with start_bus(sim.url, [OsdpReader("front", 1, KEY)], rec) as bus:
        assert bus.wait_state("front", LinkState.ONLINE, 10)
        assert bus.indicate("front", LedColor.RED, 2.0, beeps=2, beep_s=0.15)
        deadline = time.monotonic() + 5
        while len(reader.commands) < 2 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert reader.leds() == ["red"] and reader.beeps() == [2]
        led = reader.commands[0]
        assert led["timer_count"] == 20 and led["temporary"]
        assert not bus.indicate("nobody", LedColor.GREEN, 1.0)


def test_several_readers_on_one_bus_by_address(sim):
    readers = {address: sim.add_reader(address, key=KEY) for address in (1, 2, 5, 9)}
    sim.start()
    rec = Recorder()
    specs = [OsdpReader(f"r{address}", address, KEY) for address in readers]
    with start_bus(sim.url, specs, rec) as bus:
        for spec in specs:
            assert bus.wait_state(spec.name, LinkState.ONLINE, 15)
        readers[5].present_card(1, 500)
        readers[9].present_card(1, 900)
        assert rec.wait(lambda: len(rec.cards()) == 2)
        assert {(c.reader, c.card_id) for c in rec.cards()} == {("r5", 500), ("r9", 900)}


def test_a_reader_with_the_wrong_key_is_refused_and_never_believed(sim):
    impostor = sim.add_reader(3, key=bytes(16))
    sim.start()
    rec = Recorder()
    with start_bus(sim.url, [OsdpReader("side", 3, KEY)], rec) as bus:
        assert rec.wait(lambda: LinkState.REFUSED in rec.links("side"), timeout=10)
        assert LinkState.ONLINE not in rec.links("side")
        refused = next(e for e in rec.events if isinstance(e, ReaderLink) and e.state is LinkState.REFUSED)
        assert "key" in refused.detail
        with contextlib.suppress(RuntimeError):  # a PD that is not online may refuse the event
            impostor.present_card(13, 13067)
        time.sleep(0.5)
        assert rec.cards() == []
        assert bus.state("side") is LinkState.REFUSED


@pytest.mark.parametrize("secure", [True, False])
def test_a_tap_on_the_bus_sees_no_card_number_while_the_secure_channel_is_on(tmp_path, secure):
    wire = bytearray()
    sim = SimulatedOsdpBus(tmp_path / "ttyOSDP0", tap=lambda _who, data: wire.extend(data))
    reader = sim.add_reader(1, key=KEY if secure else None, secure=secure)
    sim.start()
    rec = Recorder()
    try:
        with start_bus(sim.url, [OsdpReader("front", 1, KEY if secure else None)], rec, secure=secure) as bus:
            assert bus.wait_state("front", LinkState.ONLINE, 10)
            bits = reader.present_card(201, 54321)
            assert rec.wait(lambda: rec.cards())
            assert rec.cards()[0].card_id == 54321
    finally:
        sim.close()
    padded = bits + "0" * (-len(bits) % 8)
    card_bytes = int(padded, 2).to_bytes(len(padded) // 8, "big")
    # In clear the osdp_RAW reply carries the card's bytes as they are; under the secure
    # channel they are AES-encrypted and appear nowhere on the wire.
    assert (card_bytes in wire) is not secure


def test_a_cut_cable_raises_offline_within_seconds_and_a_reconnect_clears_it(sim):
    reader = sim.add_reader(1, key=KEY)
    other = sim.add_reader(2, key=KEY)
    sim.start()
    rec = Recorder()
    with start_bus(sim.url, [OsdpReader("front", 1, KEY), OsdpReader("back", 2, KEY)], rec) as bus:
        assert bus.wait_state("front", LinkState.ONLINE, 10)
        assert bus.wait_state("back", LinkState.ONLINE, 10)
        reader.cut()
        cut_at = time.monotonic()
        assert rec.wait(lambda: rec.links("front")[-1] is LinkState.OFFLINE, timeout=10)
        assert time.monotonic() - cut_at < 4.0  # "within a few seconds"
        assert bus.state("back") is LinkState.ONLINE  # the other reader on the bus is unaffected
        reader.reconnect()
        assert rec.wait(lambda: rec.links("front")[-1] is LinkState.ONLINE, timeout=15)
        reader.present_card(13, 77)
        assert rec.wait(lambda: rec.cards())
        assert other.online


def test_a_reader_dead_at_start_is_reported_offline(sim):
    sim.add_reader(1, key=KEY)
    sim.start()
    rec = Recorder()
    with start_bus(sim.url, [OsdpReader("front", 1, KEY), OsdpReader("ghost", 40, KEY)], rec):
        assert rec.wait(lambda: rec.links("ghost") == [LinkState.OFFLINE], timeout=10)
        assert rec.links("front") == [LinkState.ONLINE]


def test_tamper_and_power_are_reported_on_change(sim):
    reader = sim.add_reader(1, key=KEY)
    sim.start()
    rec = Recorder()
    with start_bus(sim.url, [OsdpReader("front", 1, KEY)], rec) as bus:
        assert bus.wait_state("front", LinkState.ONLINE, 10)
        reader.tamper(True)
        assert rec.wait(lambda: any(isinstance(e, ReaderStatus) and e.tamper for e in rec.events))
        reader.power(True)
        assert rec.wait(lambda: any(isinstance(e, ReaderStatus) and e.power_failure for e in rec.events))
        reader.tamper(False)
        reader.power(False)
        assert rec.wait(
            lambda: (
                isinstance(rec.events[-1], ReaderStatus)
                and not rec.events[-1].tamper
                and not rec.events[-1].power_failure
            )
        )


def test_garbage_on_the_bus_is_a_typed_rejection_never_a_card_or_a_crash(sim):
    reader = sim.add_reader(1, key=KEY)
    sim.start()
    rec = Recorder()
    noise = random.Random(16)
    with start_bus(sim.url, [OsdpReader("front", 1, KEY)], rec) as bus:
        assert bus.wait_state("front", LinkState.ONLINE, 10)
        forged_bits = H10301.encode(13, 13067)
        forged = encode(1, 0x50, bytes([0, 1, 26, 0]) + int(forged_bits + "000000", 2).to_bytes(4, "big"))
        for _ in range(20):
            sim.inject(bytes(noise.randrange(256) for _ in range(noise.randrange(1, 64))))
            sim.inject(forged)  # a card read in clear, well framed, from "reader 1"
            time.sleep(0.02)
        assert rec.wait(lambda: any(isinstance(r, CardRejected) for r in rec.readings), timeout=5)
        rejected = [r for r in rec.readings if isinstance(r, CardRejected)]
        assert {r.reason for r in rejected} <= {CardRejectReason.NOISE, CardRejectReason.CHECKSUM}
        assert all(r.kind is ReaderKind.OSDP and r.reader == "bus" for r in rejected)
        assert rec.cards() == []  # neither the noise nor the forged clear read became a card
        assert bus.alive
        assert bus.wait_state("front", LinkState.ONLINE, 15)  # and the real reader still works
        reader.present_card(13, 99)
        assert rec.wait(lambda: [c.card_id for c in rec.cards()] == [99], timeout=10)


def test_install_mode_gives_a_factory_reader_its_own_key_once(sim, tmp_path):
    factory_fresh = sim.add_reader(4, key=None)
    sim.start()
    stored: dict[str, bytes] = {}
    rec = Recorder()
    with start_bus(
        sim.url, [OsdpReader("lobby", 4, None, install=True)], rec, save_key=stored.__setitem__
    ) as bus:
        assert "lobby" in stored and len(stored["lobby"]) == 16  # kept before the reader heard it
        assert rec.wait(lambda: any(isinstance(e, KeyInstalled) for e in rec.events), timeout=20)
        assert bus.wait_state("lobby", LinkState.ONLINE, 20)
        assert factory_fresh.key == stored["lobby"]
    # The next start holds the reader to its key; a gate with another key is refused.
    rec = Recorder()
    with start_bus(sim.url, [OsdpReader("lobby", 4, stored["lobby"])], rec) as bus:
        assert bus.wait_state("lobby", LinkState.ONLINE, 20)
        factory_fresh.present_card(2, 2)
        assert rec.wait(lambda: rec.cards())
    rec = Recorder()
    with start_bus(sim.url, [OsdpReader("lobby", 4, KEY)], rec) as bus:
        assert rec.wait(lambda: LinkState.REFUSED in rec.links("lobby"), timeout=10)


def test_a_socket_url_works_like_a_tty():
    with SimulatedOsdpBus() as sim:
        reader = sim.add_reader(1, key=KEY)
        rec = Recorder()
        assert sim.url.startswith("socket://127.0.0.1:")
        with start_bus(sim.url, [OsdpReader("front", 1, KEY)], rec) as bus:
            assert bus.wait_state("front", LinkState.ONLINE, 10)
            reader.present_card(13, 5)
            assert rec.wait(lambda: rec.cards())


def test_a_port_that_cannot_open_is_offline_not_a_crash(tmp_path):
    rec = Recorder()
    with start_bus(str(tmp_path / "no-such-tty"), [OsdpReader("front", 1, KEY)], rec) as bus:
        assert rec.wait(lambda: rec.links("front") == [LinkState.OFFLINE], timeout=5)
        assert bus.alive and not bus.connected


def test_bus_configuration_mistakes_are_refused():
    with pytest.raises(ValueError, match="address"):
        OsdpReader("x", 127, KEY)
    with pytest.raises(ValueError, match="16 bytes"):
        OsdpReader("x", 1, b"short")
    with pytest.raises(ValueError, match="share an address"):
        OsdpBus("loop://", [OsdpReader("a", 1, KEY), OsdpReader("b", 1, KEY)], lambda r: None)


# -- pure parts -------------------------------------------------------------------------


def test_card_data_is_checked_like_a_wiegand_frame():
    bits = H10301.encode(13, 13067)
    data = int(bits + "000000", 2).to_bytes(4, "big")
    good = card_reading({"format": 1, "length": 26, "data": data}, 0, "r")
    assert isinstance(good, CardRead) and good.credential == "wiegand26:13:13067"
    flipped = bits[:-1] + ("0" if bits[-1] == "1" else "1")
    bad = card_reading(
        {"format": 1, "length": 26, "data": int(flipped + "000000", 2).to_bytes(4, "big")}, 0, "r"
    )
    assert isinstance(bad, CardRejected) and bad.reason is CardRejectReason.PARITY
    short = card_reading({"format": 1, "length": 26, "data": data[:2]}, 0, "r")
    assert isinstance(short, CardRejected) and short.reason is CardRejectReason.LENGTH
    zero = card_reading({"format": 0, "length": 16, "data": b"\0\0"}, 0, "r")
    assert isinstance(zero, CardRejected) and zero.reason is CardRejectReason.ALL_ZERO
    odd = card_reading({"format": 0, "length": 40, "data": bytes.fromhex("0102030405")}, 0, "r")
    assert isinstance(odd, CardRead) and odd.credential == "osdp40:4328719365"
    ascii_read = card_reading({"format": 2, "length": 0, "data": b"AB12"}, 0, "r")
    assert isinstance(ascii_read, CardRead) and ascii_read.credential == "osdp:AB12"
    unknown = card_reading({"format": 9, "length": 8, "data": b"\1"}, 0, "r")
    assert isinstance(unknown, CardRejected) and unknown.reason is CardRejectReason.FORMAT


def test_any_card_event_gives_a_reading_not_an_exception():
    noise = random.Random(7)
    for _ in range(2000):
        event = {
            "format": noise.choice([0, 1, 2, 3, None, "x"]),
            "length": noise.choice([0, 1, 26, 34, 37, 300, -1, None]),
            "data": os.urandom(noise.randrange(0, 40)),
        }
        assert isinstance(card_reading(event, 0, "r"), CardRead | CardRejected)


def test_keypad_bytes_map_to_keys_or_rejections():
    readings = key_readings({"data": b"19\x7f\x0d\x01"}, 0, "r")
    assert [getattr(r, "key", None) for r in readings] == ["1", "9", "*", "#", None]
    assert isinstance(readings[-1], CardRejected) and readings[-1].reason is CardRejectReason.FORMAT


def test_frame_scanner_checks_crc_and_counts_junk():
    # crc16 of "123456789" with the OSDP seed, CRC-16/AUG-CCITT's check value.
    assert crc16(b"123456789") == 0xE5CC
    packet = encode(5, 0x40)
    scanner = FrameScanner()
    assert [(p.address, p.reply, p.code) for p in scanner.feed(b"\x00\x01" + packet)] == [(5, True, 0x40)]
    corrupt = packet[:-1] + bytes([packet[-1] ^ 1])
    assert scanner.feed(corrupt) == []
    assert scanner.take_junk()[1] == 1
    halves = scanner.feed(packet[:3]) + scanner.feed(packet[3:])
    assert [p.address for p in halves] == [5]


def test_install_mode_that_cannot_keep_the_key_does_not_give_it(sim):
    fresh = sim.add_reader(4, key=None)
    sim.start()

    def refuse(_name: str, _key: bytes) -> None:
        raise OSError("read-only file system")

    rec = Recorder()
    with start_bus(sim.url, [OsdpReader("lobby", 4, None, install=True)], rec, save_key=refuse) as bus:
        assert rec.wait(lambda: LinkState.REFUSED in rec.links("lobby"), timeout=10)
        assert bus.alive
    assert fresh.key is None and not [c for c in fresh.commands if c.get("command") == 5]
