"""The virtual scanner: a real pseudo-terminal, read here with os.read and pyserial."""

from __future__ import annotations

import os
import random
import select
import termios
import time
from pathlib import Path

import pytest
import serial

from simulator.pty import DeviceBlocked, DeviceUnplugged, PseudoTerminal
from simulator.scanner import GARBAGE_KINDS, VirtualScanner


def read_until(fd: int, terminator: bytes, timeout: float = 2.0) -> bytes:
    data = b""
    deadline = time.monotonic() + timeout
    while not data.endswith(terminator):
        remaining = deadline - time.monotonic()
        assert remaining > 0, f"timed out with {data!r}"
        ready, _, _ = select.select([fd], [], [], remaining)
        if ready:
            data += os.read(fd, 4096)
    return data


@pytest.fixture
def reader_fd():
    opened: list[int] = []

    def open_link(path: Path) -> int:
        fd = os.open(path, os.O_RDWR | os.O_NOCTTY)
        opened.append(fd)
        return fd

    yield open_link
    for fd in opened:
        os.close(fd)


def test_bytes_arrive_exactly_as_typed_in_raw_mode(tmp_path, reader_fd):
    with VirtualScanner(tmp_path / "tty", pace=False, prefix="]Q1", terminator=b"\r\n") as virtual:
        fd = reader_fd(virtual.link_path)
        attrs = termios.tcgetattr(fd)
        assert not attrs[0] & termios.ICRNL  # CR is not turned into LF
        assert not attrs[3] & (termios.ECHO | termios.ICANON)
        virtual.type("0042")
        assert read_until(fd, b"\n") == b"]Q10042\r\n"


def test_link_is_stable_across_replug_and_goes_away_when_unplugged(tmp_path):
    link = tmp_path / "dev" / "ttyACM0"
    virtual = VirtualScanner(link, pace=False)
    first = os.readlink(link)
    assert first.startswith("/dev/pts/")
    assert virtual.plugged
    virtual.unplug()
    assert not link.exists() and not link.is_symlink()
    assert not virtual.plugged
    virtual.replug()
    second = os.readlink(link)
    assert second.startswith("/dev/pts/")
    virtual.replug()  # already plugged: nothing changes
    assert os.readlink(link) == second
    virtual.close()
    assert not link.is_symlink()
    virtual.close()  # twice is fine


def test_typing_into_an_unplugged_scanner_raises_a_connection_error(tmp_path):
    with VirtualScanner(tmp_path / "tty", pace=False) as virtual:
        virtual.unplug()
        with pytest.raises(DeviceUnplugged) as caught:
            virtual.type("1")
        assert isinstance(caught.value, ConnectionError)
        assert virtual.history == []


def test_the_reader_sees_eio_after_unplug(tmp_path, reader_fd):
    with VirtualScanner(tmp_path / "tty", pace=False) as virtual:
        fd = reader_fd(virtual.link_path)
        virtual.unplug()
        with pytest.raises(OSError):
            while os.read(fd, 100):  # EIO on Linux; some kernels first return b""
                pass
            raise OSError("end of file")


@pytest.mark.parametrize(("baudrate", "low_ms", "high_ms"), [(9600, 48, 150), (115200, 3.5, 60)])
def test_typing_is_paced_at_the_baud_rate(tmp_path, reader_fd, baudrate, low_ms, high_ms):
    code = "1" * 47
    # 47 digits + CR = 48 bytes of 10 bits: 50 ms at 9600, 4.2 ms at 115200.
    with VirtualScanner(tmp_path / "tty", baudrate=baudrate) as virtual:
        fd = reader_fd(virtual.link_path)
        started = time.monotonic_ns()
        done = virtual.type(code)
        elapsed_ms = (done - started) / 1e6
        assert read_until(fd, b"\r") == code.encode() + b"\r"
    assert low_ms <= elapsed_ms < high_ms


def test_unpaced_typing_is_immediate(tmp_path, reader_fd):
    with VirtualScanner(tmp_path / "tty", baudrate=9600, pace=False) as virtual:
        fd = reader_fd(virtual.link_path)
        started = time.monotonic_ns()
        virtual.type("1" * 200)
        assert (time.monotonic_ns() - started) / 1e6 < 20
        assert len(read_until(fd, b"\r")) == 201


def test_history_records_every_line_in_order(tmp_path, reader_fd):
    rng = random.Random(7)
    with VirtualScanner(tmp_path / "tty", pace=False, prefix="]Q1") as virtual:
        fd = reader_fd(virtual.link_path)
        virtual.type("111")
        garbage = virtual.type_garbage(rng, "control")
        virtual.type("222")
        read_until(fd, b"222\r")
    assert [(t.kind, t.code) for t in virtual.history] == [
        ("code", "111"),
        ("control", None),
        ("code", "222"),
    ]
    assert virtual.history[0].data == b"]Q1111\r"
    assert virtual.history[1].data == garbage
    assert virtual.history[0].at_ns <= virtual.history[1].at_ns <= virtual.history[2].at_ns


@pytest.mark.parametrize("kind", GARBAGE_KINDS)
def test_each_garbage_line_is_exactly_one_terminated_line(tmp_path, reader_fd, kind):
    rng = random.Random(kind)
    with VirtualScanner(tmp_path / "tty", pace=False, oversize_length=600) as virtual:
        fd = reader_fd(virtual.link_path)
        for _ in range(20):
            line = virtual.type_garbage(rng, kind)
            assert line.endswith(b"\r")
            assert b"\r" not in line[:-1] and b"\n" not in line
            assert read_until(fd, b"\r") == line
            if kind == "oversize":
                assert len(line) == 601
            if kind in ("noise", "control"):
                assert any(b < 0x20 or b >= 0x7F for b in line[:-1])
    with VirtualScanner(tmp_path / "tty2", pace=False) as virtual, pytest.raises(ValueError):
        virtual.type_garbage(rng, "sparks")


def test_writing_with_nobody_reading_fills_the_buffer_then_raises_instead_of_blocking(tmp_path):
    with VirtualScanner(tmp_path / "tty", pace=False, write_timeout_s=0.1) as virtual:
        started = time.monotonic()
        written = 0
        with pytest.raises(DeviceBlocked) as caught:
            for _ in range(100_000):
                virtual.type("1" * 1023)
                written += 1024
        assert isinstance(caught.value, TimeoutError)
        assert time.monotonic() - started < 5
        assert 4096 <= written < 10_000_000
        # A reader that opens the port now starts clean: pyserial flushes what waited.
        with serial.Serial(str(virtual.link_path), 9600, timeout=0.5) as port:
            virtual.type("fresh")
            assert port.read_until(b"\r") == b"fresh\r"


def test_pseudo_terminal_replaces_a_stale_link(tmp_path):
    link = tmp_path / "tty"
    link.symlink_to("/nonexistent/pts/99")
    with PseudoTerminal(link) as pty:
        assert os.readlink(link) == pty.slave_name
    assert not link.is_symlink()
