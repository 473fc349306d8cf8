"""A camera as a pass scanner: generated video through OpenCV, the driver and the decoder, into on_scan."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from drivers.camera_scanner import CameraScanner, SeenCodes, judge_payload
from drivers.qr import NaiveDecoder
from drivers.scanner import Scan, ScannerState, ScanRejected, ScanRejectReason
from simulator.camera import Presentation, SyntheticCamera, write_video

FPS = 30
S = 1_000_000_000


class Collector:
    def __init__(self) -> None:
        self.scans: list[Scan] = []
        self.rejects: list[ScanRejected] = []
        self.states: list[ScannerState] = []
        self._cond = threading.Condition()

    def on_scan(self, scan: Scan) -> None:
        with self._cond:
            self.scans.append(scan)
            self._cond.notify_all()

    def on_reject(self, rejected: ScanRejected) -> None:
        with self._cond:
            self.rejects.append(rejected)
            self._cond.notify_all()

    def on_state(self, state: ScannerState, detail: str | None) -> None:
        self.states.append(state)

    def wait_scans(self, count: int, timeout: float = 10.0) -> bool:
        with self._cond:
            return self._cond.wait_for(lambda: len(self.scans) >= count, timeout)


def run_file(path: Path, **options) -> tuple[Collector, CameraScanner]:
    got = Collector()
    scanner = CameraScanner(
        path, on_scan=got.on_scan, on_reject=got.on_reject, on_state=got.on_state, realtime=False, **options
    )
    scanner.start()
    assert scanner.wait_ended(20)
    return got, scanner


# -- one scan per pass, however many frames show it -------------------------------------


def test_a_pass_in_view_is_one_scan_until_it_has_been_gone_for_the_hold_off() -> None:
    seen = SeenCodes(hold_off_s=2.0)
    assert seen.sighted([b"A"], 0) == [b"A"]
    for t in range(1, 60):  # thirty frames a second for two seconds
        assert seen.sighted([b"A"], t * S // 30) == []
    assert seen.sighted([], 2 * S) == []  # gone...
    assert seen.sighted([b"A"], 3 * S) == []  # ...back within the hold-off: the same presentation
    assert seen.sighted([], 4 * S) == []
    assert seen.sighted([b"A"], int(5.1 * S)) == [b"A"]  # gone for 2.1 s: a new scan


def test_frames_skipped_as_unchanged_keep_a_still_pass_in_view() -> None:
    seen = SeenCodes(hold_off_s=1.0)
    assert seen.sighted([b"A"], 0) == [b"A"]
    for t in range(1, 10):
        seen.unchanged(t * S)  # held perfectly still for nine seconds: never decoded again
    assert seen.sighted([b"A"], 10 * S) == []


def test_two_passes_in_one_frame_are_two_scans_and_a_duplicate_is_one() -> None:
    seen = SeenCodes()
    assert seen.sighted([b"A", b"B", b"A"], 0) == [b"A", b"B"]
    assert seen.sighted([b"B", b"C"], S // 30) == [b"C"]


# -- the serial scanner's rules, on exact bytes ----------------------------------------------


def test_judge_keeps_the_payload_exactly() -> None:
    result = judge_payload(b"]Q1 0042", "]Q1", 7)
    assert isinstance(result, Scan)
    assert (result.code, result.raw, result.symbology, result.at_ns) == ("]Q1 0042", b"]Q1 0042", "]Q1", 7)


@pytest.mark.parametrize(
    ("raw", "options", "reason"),
    [
        (b"\x00\x01binary", {}, ScanRejectReason.UNPRINTABLE),
        ("caf\u00e9".encode(), {}, ScanRejectReason.UNPRINTABLE),
        (b"\xff\xfe", {"allow_unicode": True}, ScanRejectReason.UNPRINTABLE),
        (b"", {}, ScanRejectReason.UNPRINTABLE),
        (b"1" * 513, {}, ScanRejectReason.TOO_LONG),
        (b"DEFALT.", {}, ScanRejectReason.SETUP_CODE),
        (b"\x16M\r232BAD9.", {}, ScanRejectReason.SETUP_CODE),
    ],
)
def test_judge_rejects_what_a_serial_scanner_rejects(
    raw: bytes, options: dict, reason: ScanRejectReason
) -> None:
    result = judge_payload(raw, "]Q1", 0, **options)
    assert isinstance(result, ScanRejected)
    assert result.reason == reason
    assert not raw or raw.decode("latin-1") not in result.detail  # the detail never quotes the input


def test_judge_accepts_unicode_text_when_allowed() -> None:
    result = judge_payload("café 12".encode(), None, 0, allow_unicode=True)
    assert isinstance(result, Scan) and result.code == "café 12"


# -- end to end through a generated video file --------------------------------------------


@pytest.fixture(scope="module")
def gate_video(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, SyntheticCamera]:
    """Four seconds at a gate: a pass held 1.2 s, two people at once, then the first pass again, in dark mode."""
    camera = SyntheticCamera(
        [
            Presentation(0.3, (b"100000000001",), 1.2),
            Presentation(1.7, (b"200000000002", b"300000000003"), 0.8, "two_codes"),
            Presentation(2.9, (b"100000000001",), 1.0, "dark_mode"),
        ],
        width=640,
        height=480,
        fps=FPS,
        seed=11,
    )
    return write_video(tmp_path_factory.mktemp("gate") / "gate.avi", camera, 4 * FPS), camera


def test_video_to_on_scan_one_scan_per_presentation(gate_video: tuple[Path, SyntheticCamera]) -> None:
    path, _ = gate_video
    got, scanner = run_file(path, hold_off_s=1.0)
    assert [s.code for s in got.scans[:1]] == ["100000000001"]
    assert sorted(s.code for s in got.scans[1:3]) == ["200000000002", "300000000003"]
    # The first pass again after 1.4 s away (> the 1 s hold-off), on a phone in dark mode.
    assert [s.code for s in got.scans[3:]] == ["100000000001"]
    assert got.rejects == []
    assert all(s.raw == s.code.encode() and s.symbology == "]Q1" for s in got.scans)
    assert got.states == [ScannerState.CONNECTING, ScannerState.CONNECTED, ScannerState.CLOSED]
    # Most frames of a mostly still gate are never decoded.
    assert scanner.frames_skipped > 0
    assert scanner.frames_analysed + scanner.frames_skipped == 4 * FPS


def test_a_longer_hold_off_merges_the_return_of_the_same_pass(
    gate_video: tuple[Path, SyntheticCamera],
) -> None:
    got, _ = run_file(gate_video[0], hold_off_s=3.0)
    assert [s.code for s in got.scans].count("100000000001") == 1
    assert len(got.scans) == 3


def test_naive_decoding_of_every_frame_gives_the_same_scans(gate_video: tuple[Path, SyntheticCamera]) -> None:
    got, scanner = run_file(gate_video[0], hold_off_s=1.0, decoder=NaiveDecoder("zxing"))
    assert sorted(s.code for s in got.scans) == sorted(
        ["100000000001", "200000000002", "300000000003", "100000000001"]
    )
    assert scanner.frames_skipped == 0


def test_binary_and_setup_code_passes_are_rejected_once_not_every_frame(tmp_path: Path) -> None:
    camera = SyntheticCamera(
        [
            Presentation(0.2, (bytes(range(0x80, 0xA0)),), 1.0),
            Presentation(1.6, (b"DEFALT.",), 1.0),
        ],
        fps=FPS,
    )
    path = write_video(tmp_path / "bad.avi", camera, 3 * FPS)
    got, _ = run_file(path)
    assert got.scans == []
    assert [r.reason for r in got.rejects] == [ScanRejectReason.UNPRINTABLE, ScanRejectReason.SETUP_CODE]
    assert got.rejects[0].length == 32
    assert "0x80 at offset 0" in got.rejects[0].detail


def test_sim_url_as_a_camera_gate() -> None:
    got = Collector()
    url = "sim://?codes=555000111222,555000111333&every=1&hold=0.6&start=0.2&realtime=0&duration=2.7"
    with CameraScanner(url, on_scan=got.on_scan, on_reject=got.on_reject, hold_off_s=0.3) as scanner:
        assert scanner.wait_ended(20)
    assert [s.code for s in got.scans] == ["555000111222", "555000111333", "555000111222"]
