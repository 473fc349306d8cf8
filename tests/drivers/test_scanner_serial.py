"""The serial scanner over real pseudo-terminals, a real loopback and a real TCP serial server."""

from __future__ import annotations

import itertools
import random
import socket
import statistics
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from drivers.scanner import Scan, ScannerError, ScannerState, ScanRejected, ScanRejectReason, SerialScanner
from simulator.scanner import VirtualScanner


class Collector:
    """Everything a scanner reported, with a way to wait for it."""

    def __init__(self) -> None:
        self.scans: list[Scan] = []
        self.scan_seen_ns: list[int] = []
        self.rejects: list[ScanRejected] = []
        self.states: list[tuple[ScannerState, str | None]] = []
        self._changed = threading.Condition()

    def on_scan(self, scan: Scan) -> None:
        seen = time.monotonic_ns()
        with self._changed:
            self.scans.append(scan)
            self.scan_seen_ns.append(seen)
            self._changed.notify_all()

    def on_reject(self, rejected: ScanRejected) -> None:
        with self._changed:
            self.rejects.append(rejected)
            self._changed.notify_all()

    def on_state(self, state: ScannerState, detail: str | None) -> None:
        with self._changed:
            self.states.append((state, detail))
            self._changed.notify_all()

    def wait(self, predicate: Callable[[], bool], timeout: float = 3.0) -> None:
        """Wake on every callback, and poll too: some predicates look at the scanner itself."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while not predicate():
                assert time.monotonic() < deadline, "timed out waiting"
                self._changed.wait(0.01)

    def codes(self) -> list[str]:
        return [scan.code for scan in self.scans]

    def state_names(self) -> list[str]:
        return [str(state) for state, _ in self.states]

    def scanner(self, url: str, **options: object) -> SerialScanner:
        options.setdefault("reconnect_min_s", 0.02)
        options.setdefault("reconnect_max_s", 0.2)
        return SerialScanner(
            url, on_scan=self.on_scan, on_reject=self.on_reject, on_state=self.on_state, **options
        )


@pytest.fixture
def seen() -> Collector:
    return Collector()


@pytest.fixture
def virtual(tmp_path: Path):
    with VirtualScanner(tmp_path / "ttyACM0", baudrate=115200, prefix="]Q1") as scanner:
        yield scanner


def reported(seen: Collector, state: ScannerState) -> None:
    """Wait until the callback (not just the attribute) has seen ``state``."""
    seen.wait(lambda: bool(seen.states) and seen.states[-1][0] == state)


def connected(seen: Collector, scanner: SerialScanner) -> SerialScanner:
    reported(seen, ScannerState.CONNECTED)
    return scanner


def test_scans_arrive_in_order_exactly_once(seen, virtual):
    with seen.scanner(str(virtual.link_path), baudrate=115200) as scanner:
        connected(seen, scanner)
        typed = [f"{100000000000 + i * 7919}" for i in range(60)]
        for code in typed:
            virtual.type(code)
        seen.wait(lambda: len(seen.scans) >= len(typed))
        time.sleep(0.05)  # anything extra would show up now
    assert seen.codes() == typed
    assert {scan.symbology for scan in seen.scans} == {"]Q1"}
    assert seen.rejects == []
    assert all(a.at_ns <= b.at_ns for a, b in itertools.pairwise(seen.scans))


def test_garbage_is_rejected_and_does_not_disturb_the_scans_around_it(seen, virtual):
    rng = random.Random(20240601)
    expected_codes: list[str] = []
    expected_kinds: list[str] = []
    with seen.scanner(str(virtual.link_path), baudrate=115200) as scanner:
        connected(seen, scanner)
        for i in range(40):
            if i % 3 == 1:
                kind = ("noise", "control", "oversize", "setup")[i % 4]
                virtual.type_garbage(rng, kind)
                expected_kinds.append(kind)
            else:
                code = f"7{rng.randrange(10**11, 10**12)}"
                virtual.type(code)
                expected_codes.append(code)
        seen.wait(lambda: len(seen.scans) + len(seen.rejects) >= 40)
    assert seen.codes() == expected_codes
    expected_reasons = {
        "noise": {ScanRejectReason.UNPRINTABLE, ScanRejectReason.SETUP_CODE},  # 0x82 first is Datalogic FNC3
        "control": {ScanRejectReason.UNPRINTABLE},
        "oversize": {ScanRejectReason.TOO_LONG},
        "setup": {ScanRejectReason.SETUP_CODE},
    }
    assert len(seen.rejects) == len(expected_kinds) == 13
    for kind, rejected in zip(expected_kinds, seen.rejects, strict=True):
        assert rejected.reason in expected_reasons[kind], (kind, rejected)


def test_unplug_reports_disconnected_and_replug_resumes(seen, virtual):
    with seen.scanner(str(virtual.link_path), baudrate=115200) as scanner:
        connected(seen, scanner)
        virtual.type("before")
        seen.wait(lambda: seen.codes() == ["before"])
        virtual.type_bytes(b"]Q1half-a-li")  # the cable goes mid-line
        seen.wait(lambda: scanner.framer.pending == 12)
        virtual.unplug()
        reported(seen, ScannerState.DISCONNECTED)
        time.sleep(0.1)  # several failed reopen attempts while the link is gone
        virtual.replug()
        connected(seen, scanner)
        virtual.type("after")
        seen.wait(lambda: len(seen.scans) == 2)
        assert scanner.connects == 2
    assert seen.codes() == ["before", "after"]
    assert [r.reason for r in seen.rejects] == [ScanRejectReason.TRUNCATED]
    assert seen.state_names() == ["connecting", "connected", "disconnected", "connected", "closed"]
    detail = seen.states[2][1]
    assert detail


def test_a_second_reader_of_the_same_tty_is_refused(seen, virtual):
    other = Collector()
    with seen.scanner(str(virtual.link_path)) as first:
        connected(seen, first)
        with other.scanner(str(virtual.link_path)) as second:
            reported(other, ScannerState.DISCONNECTED)
            assert "lock" in (other.states[-1][1] or "")
            virtual.type("only-once")
            seen.wait(lambda: seen.codes() == ["only-once"])
            assert second.connects == 0
    assert other.scans == []


def test_a_port_missing_at_start_is_retried_until_it_appears(seen, tmp_path):
    link = tmp_path / "late-tty"
    with seen.scanner(str(link), baudrate=9600) as scanner:
        reported(seen, ScannerState.DISCONNECTED)
        assert "late-tty" in (seen.states[-1][1] or "")
        with VirtualScanner(link, baudrate=115200) as virtual:
            connected(seen, scanner)
            virtual.type("123")
            seen.wait(lambda: seen.codes() == ["123"])
            scanner.close()  # before the cable goes, or it may report that too
    assert seen.state_names() == ["connecting", "disconnected", "connected", "closed"]


def test_close_is_prompt_in_the_middle_of_a_long_backoff(seen, tmp_path):
    scanner = seen.scanner(str(tmp_path / "absent"), reconnect_min_s=30, reconnect_max_s=60)
    scanner.start()
    reported(seen, ScannerState.DISCONNECTED)
    started = time.monotonic()
    scanner.close()
    assert time.monotonic() - started < 1.0
    assert scanner.state == ScannerState.CLOSED
    assert seen.state_names()[-1] == "closed"
    with pytest.raises(ScannerError):
        scanner.start()


def test_close_is_prompt_while_reading(seen, virtual):
    scanner = seen.scanner(str(virtual.link_path))
    scanner.start()
    connected(seen, scanner)
    started = time.monotonic()
    scanner.close()
    assert time.monotonic() - started < 1.0
    assert seen.state_names() == ["connecting", "connected", "closed"]
    assert not [t for t in threading.enumerate() if t.name == f"scanner:{scanner.name}"]


def test_loop_url(seen):
    with seen.scanner("loop://", baudrate=115200) as scanner:
        connected(seen, scanner)
        assert scanner.port is not None
        scanner.port.write(b"]Q1000042\r\n\x07\r")
        seen.wait(lambda: len(seen.scans) == 1 and len(seen.rejects) == 1)
    assert seen.scans[0].code == "000042"
    assert seen.rejects[0].reason == ScanRejectReason.UNPRINTABLE


def test_socket_url_survives_the_serial_server_going_away(seen):
    """A scanner behind a serial device server (ser2net, a Moxa box) is a TCP socket."""
    server = socket.create_server(("127.0.0.1", 0))
    server.settimeout(3)
    port = server.getsockname()[1]
    try:
        with seen.scanner(f"socket://127.0.0.1:{port}") as scanner:
            link, _ = server.accept()
            connected(seen, scanner)
            link.sendall(b"1111\r\n")
            seen.wait(lambda: seen.codes() == ["1111"])
            link.close()
            reported(seen, ScannerState.DISCONNECTED)
            link, _ = server.accept()
            connected(seen, scanner)
            link.sendall(b"2222\r\n")
            seen.wait(lambda: seen.codes() == ["1111", "2222"])
            link.close()
    finally:
        server.close()


def test_a_failing_callback_does_not_stop_the_reader(virtual):
    got: list[str] = []
    states: list[ScannerState] = []

    def on_scan(scan: Scan) -> None:
        got.append(scan.code)
        if scan.code == "boom":
            raise RuntimeError("callback bug")

    def on_state(state: ScannerState, detail: str | None) -> None:
        states.append(state)
        raise RuntimeError("state callback bug")

    with SerialScanner(
        str(virtual.link_path), baudrate=115200, on_scan=on_scan, on_reject=lambda r: None, on_state=on_state
    ) as scanner:
        deadline = time.monotonic() + 3
        while scanner.state != ScannerState.CONNECTED and time.monotonic() < deadline:
            time.sleep(0.005)
        virtual.type("boom")
        virtual.type("fine")
        while len(got) < 2 and time.monotonic() < deadline:
            time.sleep(0.005)
    assert got == ["boom", "fine"]
    assert states == [ScannerState.CONNECTING, ScannerState.CONNECTED, ScannerState.CLOSED]


def test_latency_from_terminator_to_callback_is_small(seen, tmp_path):
    with (
        VirtualScanner(tmp_path / "tty", baudrate=9600, prefix="]Q1") as virtual,
        seen.scanner(str(virtual.link_path), baudrate=9600) as scanner,
    ):
        connected(seen, scanner)
        typed_ns = []
        for i in range(20):
            typed_ns.append(virtual.type(f"{i:012d}"))
            time.sleep(0.002)
        seen.wait(lambda: len(seen.scans) == 20)
    latencies_ms = [
        abs(seen_ns - typed) / 1e6 for seen_ns, typed in zip(seen.scan_seen_ns, typed_ns, strict=True)
    ]
    # Typically well under a millisecond; the bound leaves room for a loaded CI machine,
    # where a thread can wait tens of milliseconds for a CPU.
    assert statistics.median(latencies_ms) < 50
    # at_ns is taken when the read returns, before the callback runs.
    assert all(scan.at_ns <= seen_ns for scan, seen_ns in zip(seen.scans, seen.scan_seen_ns, strict=True))


def test_bad_reconnect_settings_are_refused():
    with pytest.raises(ValueError):
        SerialScanner("loop://", on_scan=print, on_reject=print, reconnect_min_s=0)
    with pytest.raises(ValueError):
        SerialScanner("loop://", on_scan=print, on_reject=print, reconnect_min_s=2, reconnect_max_s=1)
