"""The capture driver against real video files opened by OpenCV, and a synthetic camera that drops out."""

from __future__ import annotations

import functools
import http.server
import shutil
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from drivers.camera import (
    Camera,
    CameraError,
    CameraSourceError,
    Frame,
    SourceKind,
    SourceRejectReason,
    parse_source,
)
from drivers.scanner import ScannerState
from simulator.camera import Presentation, SyntheticCamera, write_video

FPS = 30


class Frames:
    """What a camera delivered, with a way to wait for it."""

    def __init__(self, delay_s: float = 0.0) -> None:
        self.frames: list[Frame] = []
        self.states: list[tuple[ScannerState, str | None]] = []
        self.delay_s = delay_s
        self._cond = threading.Condition()

    def on_frame(self, frame: Frame) -> None:
        if self.delay_s:
            time.sleep(self.delay_s)
        with self._cond:
            self.frames.append(frame)
            self._cond.notify_all()

    def on_state(self, state: ScannerState, detail: str | None) -> None:
        with self._cond:
            self.states.append((state, detail))
            self._cond.notify_all()

    def wait(self, predicate, timeout: float = 5.0) -> bool:
        with self._cond:
            return self._cond.wait_for(lambda: predicate(self), timeout)

    def state_names(self) -> list[str]:
        return [str(s) for s, _ in self.states]


@pytest.fixture(scope="module")
def video(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two seconds of a gate at 30 fps, 640x480, someone holding up a pass from 0.5 to 1.5 s."""
    camera = SyntheticCamera([Presentation(0.5, (b"123456789012",), 1.0)], width=640, height=480, fps=FPS)
    return write_video(tmp_path_factory.mktemp("camera") / "gate.avi", camera, 2 * FPS)


@pytest.mark.parametrize(
    ("given", "kind", "target"),
    [
        ("0", SourceKind.DEVICE, 0),
        (2, SourceKind.DEVICE, 2),
        ("/dev/video1", SourceKind.DEVICE, "/dev/video1"),
        ("/dev/v4l/by-id/usb-cam-video-index0", SourceKind.DEVICE, "/dev/v4l/by-id/usb-cam-video-index0"),
        ("rtsp://10.0.0.5:554/stream1", SourceKind.STREAM, "rtsp://10.0.0.5:554/stream1"),
        ("http://cam.local/mjpg/video.mjpg", SourceKind.STREAM, "http://cam.local/mjpg/video.mjpg"),
        ("sim://?codes=123", SourceKind.SIM, "sim://?codes=123"),
        ("file:///srv/gate/test.avi", SourceKind.FILE, "/srv/gate/test.avi"),
        ("recordings/gate.avi", SourceKind.FILE, "recordings/gate.avi"),
        (Path("/tmp/x.mp4"), SourceKind.FILE, "/tmp/x.mp4"),
    ],
)
def test_source_strings_choose_the_camera(given, kind: SourceKind, target) -> None:
    source = parse_source(given)
    assert (source.kind, source.target) == (kind, target)


@pytest.mark.parametrize(
    ("given", "reason"),
    [
        ("", SourceRejectReason.EMPTY),
        ("  ", SourceRejectReason.EMPTY),
        ("gopher://x", SourceRejectReason.UNKNOWN_SCHEME),
        (-1, SourceRejectReason.BAD_DEVICE),
        (True, SourceRejectReason.BAD_DEVICE),
    ],
)
def test_bad_sources_are_typed_rejections(given, reason: SourceRejectReason) -> None:
    with pytest.raises(CameraSourceError) as info:
        parse_source(given)
    assert info.value.reason == reason
    assert isinstance(info.value, ValueError)


def test_a_video_file_is_delivered_frame_by_frame_in_grey(video: Path) -> None:
    got = Frames()
    camera = Camera(video, on_frame=got.on_frame, on_state=got.on_state, realtime=False)
    camera.start()
    assert camera.wait_ended(10)
    assert len(got.frames) == 2 * FPS == camera.frames_delivered
    assert camera.frames_dropped == 0
    assert all(
        f.grey.ndim == 2 and f.grey.shape == (480, 640) and f.grey.dtype == "uint8" for f in got.frames
    )
    assert [f.index for f in got.frames] == list(range(2 * FPS))
    # The file's own clock: frames 1/30 s apart however fast they were read.
    gaps = {
        round((b.clock_ns - a.clock_ns) / 1e6, 1) for a, b in zip(got.frames, got.frames[1:], strict=False)
    }
    assert gaps == {33.3}
    assert got.state_names() == ["connecting", "connected", "closed"]
    assert camera.state == ScannerState.CLOSED


def test_frames_are_scaled_to_the_configured_size(video: Path) -> None:
    got = Frames()
    camera = Camera(video, on_frame=got.on_frame, width=320, height=240, realtime=False)
    camera.start()
    assert camera.wait_ended(10)
    assert {f.grey.shape for f in got.frames} == {(240, 320)}


def test_frame_rate_cap_skips_frames_evenly(video: Path) -> None:
    got = Frames()
    camera = Camera(video, on_frame=got.on_frame, fps=10, realtime=False)
    camera.start()
    assert camera.wait_ended(10)
    assert camera.frames_read == 2 * FPS
    assert len(got.frames) == 20
    gaps = {round((b.clock_ns - a.clock_ns) / 1e6) for a, b in zip(got.frames, got.frames[1:], strict=False)}
    assert gaps == {100}


def test_a_file_plays_at_its_own_rate_in_realtime(tmp_path: Path) -> None:
    path = write_video(tmp_path / "short.avi", SyntheticCamera(fps=FPS), 12)
    got = Frames()
    began = time.monotonic()
    camera = Camera(path, on_frame=got.on_frame)  # realtime is the default for files
    camera.start()
    assert camera.wait_ended(5)
    elapsed = time.monotonic() - began
    assert len(got.frames) == 12
    assert 11 / FPS * 0.9 <= elapsed < 2.0
    spread = (got.frames[-1].at_ns - got.frames[0].at_ns) / 1e9
    assert spread == pytest.approx(11 / FPS, abs=0.08)


def test_loop_replays_a_file(video: Path) -> None:
    got = Frames()
    camera = Camera(video, on_frame=got.on_frame, realtime=False, at_end="loop")
    camera.start()
    try:
        assert got.wait(lambda g: len(g.frames) >= 3 * FPS, 10)
    finally:
        camera.close()
    clocks = [f.clock_ns for f in got.frames]
    assert clocks == sorted(clocks)  # the second pass continues the clock, it does not rewind it


def test_a_missing_file_is_disconnected_until_it_appears(video: Path, tmp_path: Path) -> None:
    path = tmp_path / "later.avi"
    got = Frames()
    camera = Camera(
        path,
        on_frame=got.on_frame,
        on_state=got.on_state,
        realtime=False,
        reconnect_min_s=0.05,
        reconnect_max_s=0.1,
    )
    camera.start()
    try:
        assert got.wait(lambda g: any(s == ScannerState.DISCONNECTED for s, _ in g.states))
        assert "no such file" in (got.states[-1][1] or "")
        assert got.frames == []
        shutil.copy(video, path)
        assert camera.wait_ended(10)
    finally:
        camera.close()
    assert len(got.frames) == 2 * FPS
    assert got.state_names() == ["connecting", "disconnected", "connected", "closed"]


def test_a_camera_that_drops_out_is_reopened() -> None:
    sensor = SyntheticCamera(width=320, height=240, fps=100, realtime=True)
    got = Frames()
    camera = Camera(
        sensor, on_frame=got.on_frame, on_state=got.on_state, reconnect_min_s=0.05, reconnect_max_s=0.1
    )
    camera.start()
    try:
        assert got.wait(lambda g: len(g.frames) >= 5)
        sensor.unplug()
        assert got.wait(lambda g: g.states[-1][0] == ScannerState.DISCONNECTED)
        before = len(got.frames)
        time.sleep(0.2)
        assert len(got.frames) == before  # nothing while unplugged
        sensor.plug()
        assert got.wait(lambda g: len(g.frames) >= before + 5)
    finally:
        camera.close()
    assert camera.connects == 2
    assert got.state_names() == ["connecting", "connected", "disconnected", "connected", "closed"]
    assert "no frame" in (got.states[2][1] or "")


def test_a_slow_consumer_gets_the_newest_frame_not_a_queue() -> None:
    sensor = SyntheticCamera(width=320, height=240, fps=200, realtime=True)
    got = Frames(delay_s=0.05)
    camera = Camera(sensor, on_frame=got.on_frame)
    camera.start()
    try:
        assert got.wait(lambda g: len(g.frames) >= 6)
    finally:
        camera.close()
    assert camera.frames_dropped > 10
    # Each frame handed over was at most one consumer-delay old, never a backlog.
    gaps = [(b.index - a.index) for a, b in zip(got.frames, got.frames[1:], strict=False)]
    assert max(gaps) >= 2


def test_close_is_prompt_and_final(video: Path) -> None:
    got = Frames()
    camera = Camera(video, on_frame=got.on_frame, on_state=got.on_state)  # realtime: would take 2 s
    camera.start()
    assert got.wait(lambda g: len(g.frames) >= 2)
    began = time.monotonic()
    camera.close()
    assert time.monotonic() - began < 0.5
    assert camera.state == ScannerState.CLOSED
    with pytest.raises(CameraError):
        camera.start()


def test_sim_url_opens_the_synthetic_camera() -> None:
    got = Frames()
    camera = Camera("sim://?codes=42&size=320x240&realtime=0&duration=0.5", on_frame=got.on_frame)
    camera.start()
    assert camera.wait_ended(5)
    assert len(got.frames) == 15
    assert got.frames[0].grey.shape == (240, 320)


def test_bad_sim_url_fails_at_configuration() -> None:
    with pytest.raises(CameraSourceError) as info:
        Camera("sim://?codes=1&colour=red", on_frame=lambda frame: None)
    assert info.value.reason == SourceRejectReason.BAD_SIM_URL
    assert "colour" in info.value.detail


@pytest.fixture
def http_server(video: Path) -> Iterator[str]:
    """The video served over HTTP, as an IP camera's MJPEG endpoint would be (a finite one)."""

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(Quiet, directory=str(video.parent))
    )
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/{video.name}"
    finally:
        server.shutdown()
        server.server_close()


def test_a_network_stream_that_ends_is_a_dropout_and_is_reopened(http_server: str) -> None:
    got = Frames()
    camera = Camera(
        http_server, on_frame=got.on_frame, on_state=got.on_state, reconnect_min_s=0.05, reconnect_max_s=0.1
    )
    assert camera.source.kind == SourceKind.STREAM and camera.source.live
    camera.start()
    try:
        assert got.wait(lambda g: g.state_names().count("connected") >= 2, 10)
    finally:
        camera.close()
    assert camera.connects >= 2
    names = got.state_names()
    assert names[:4] == ["connecting", "connected", "disconnected", "connected"]
    assert "stalled" in (got.states[2][1] or "")
    assert got.frames and got.frames[0].grey.shape == (480, 640)
