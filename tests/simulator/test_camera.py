"""The synthetic camera: real symbols in scenes, video files OpenCV reads back, a labelled set fixed by its seed."""

from __future__ import annotations

import collections
import random
from pathlib import Path

import cv2
import numpy as np
import pytest
import zxingcpp

from simulator.camera import (
    CONDITIONS,
    CodeInScene,
    Look,
    Presentation,
    Scene,
    SceneRenderer,
    SyntheticCamera,
    camera_from_url,
    pass_matrix,
    scene_for,
    write_video,
)
from simulator.camera_set import generate


def read_all(image: np.ndarray) -> list[bytes]:
    return [r.bytes for r in zxingcpp.read_barcodes(image, formats=zxingcpp.BarcodeFormat.QRCode)]


def test_passes_are_real_qr_symbols_in_numeric_or_byte_mode() -> None:
    numeric = pass_matrix(b"123456789012")
    assert numeric.shape == (
        21 + 8,
        21 + 8,
    )  # version 1 and its quiet zone: numeric mode fits 12 digits in V1
    binary = pass_matrix(bytes(range(40)))
    image = np.kron(1 - binary, np.ones((4, 4), np.uint8)) * 255
    assert read_all(image.astype(np.uint8)) == [bytes(range(40))]


def test_rendering_is_deterministic_and_shows_the_pass() -> None:
    renderer = SceneRenderer(640, 480, seed=1)
    scene = Scene((CodeInScene(b"424242424242", size=0.4, rotation=30, tilt_x=20),), Look(noise=4))
    a = renderer.render(scene, np.random.default_rng(9))
    b = renderer.render(scene, np.random.default_rng(9))
    c = renderer.render(scene, np.random.default_rng(10))
    assert a.shape == (480, 640, 3) and a.dtype == np.uint8
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c)  # fresh sensor noise
    assert read_all(a) == [b"424242424242"]
    assert read_all(renderer.render(Scene(), np.random.default_rng(9))) == []


def test_every_condition_renders_and_labels_its_payloads() -> None:
    renderer = SceneRenderer(320, 240)
    rng = random.Random(4)
    for condition in (*CONDITIONS, "beyond"):
        scene, readable = scene_for(condition, [b"1111", b"2222"], rng)
        assert renderer.render(scene).shape == (240, 320, 3)
        assert readable == (condition != "beyond")
        expected = {"empty": 0, "two_codes": 2}.get(condition, 1)
        assert len(scene.codes) == expected
    with pytest.raises(ValueError, match="unknown condition"):
        scene_for("fog", [b"1"], rng)


def test_dark_mode_is_light_modules_on_black() -> None:
    renderer = SceneRenderer(320, 240)
    code = CodeInScene(b"99", size=0.6, carrier="phone", dark_mode=True)
    image = cv2.cvtColor(renderer.render(Scene((code,), Look(noise=0))), cv2.COLOR_BGR2GRAY)
    centre = image[60:180, 100:220]
    assert np.median(centre) < 100  # mostly dark: the quiet zone and light modules are inverted
    plain = zxingcpp.read_barcodes(image, formats=zxingcpp.BarcodeFormat.QRCode, try_invert=False)
    assert plain == []
    assert read_all(image) == [b"99"]


def test_video_file_opens_in_opencv_with_every_frame(tmp_path: Path) -> None:
    camera = SyntheticCamera([Presentation(0.2, (b"777000777000",), 0.5)], width=320, height=240, fps=25)
    path = write_video(tmp_path / "clip.avi", camera, 25)
    capture = cv2.VideoCapture(str(path))
    try:
        assert capture.isOpened()
        assert capture.get(cv2.CAP_PROP_FPS) == pytest.approx(25)
        frames = []
        while True:
            ok, frame = capture.read()
            if not ok:
                break
            frames.append(frame)
    finally:
        capture.release()
    assert len(frames) == 25 and frames[0].shape == (240, 320, 3)
    readable = [i for i, frame in enumerate(frames) if read_all(frame) == [b"777000777000"]]
    assert readable and min(readable) >= 5 and max(readable) < 18  # in view from 0.2 s to 0.7 s
    assert camera.in_view(10) == (b"777000777000",) and camera.in_view(20) == ()


def test_live_camera_unplugs_and_keeps_its_clock() -> None:
    camera = SyntheticCamera(width=160, height=120)
    assert camera.read()[0] and camera.index == 1
    camera.unplug()
    assert not camera.isOpened()
    assert camera.read() == (False, None)
    camera.plug()
    assert camera.reopen().read()[0]
    assert camera.index == 2


def test_duration_ends_the_stream_like_a_file() -> None:
    camera = SyntheticCamera(width=160, height=120, fps=10, duration_s=0.5)
    count = 0
    while camera.grab():
        count += 1
    assert count == 5 and camera.isOpened()


def test_sim_url_parameters() -> None:
    camera = camera_from_url(
        "sim://?codes=1,2,3&every=2&hold=1&start=0.5&size=320x240&fps=15&realtime=0&repeat=2"
    )
    assert (camera.width, camera.height, camera.fps, camera.realtime) == (320, 240, 15, False)
    assert [(p.at_s, p.payloads[0]) for p in camera.presentations] == [
        (0.5, b"1"),
        (2.5, b"2"),
        (4.5, b"3"),
        (6.5, b"1"),
        (8.5, b"2"),
        (10.5, b"3"),
    ]
    two = camera_from_url("sim://?codes=1,2,3,4&condition=two_codes&repeat=1")
    assert [p.payloads for p in two.presentations] == [(b"1", b"2"), (b"3", b"4")]


@pytest.mark.parametrize(
    "url",
    ["sim://?codes=1&hold=5&every=2", "sim://?size=big", "sim://?condition=fog", "sim://?fps=x", "rtsp://x"],
)
def test_bad_sim_urls_raise_value_error(url: str) -> None:
    with pytest.raises(ValueError):
        camera_from_url(url)


def test_labelled_set_is_fixed_by_its_seed() -> None:
    a = list(generate(3, seed=5, width=320, height=240))
    b = list(generate(3, seed=5, width=320, height=240))
    c = list(generate(3, seed=6, width=320, height=240))
    assert len(a) == 3 * (len(CONDITIONS) + 1)
    assert all(
        np.array_equal(x.image, y.image) and x.payloads == y.payloads for x, y in zip(a, b, strict=True)
    )
    assert any(x.payloads != y.payloads for x, y in zip(a, c, strict=True))
    counts = collections.Counter(f.condition for f in a)
    assert set(counts.values()) == {3}
    assert all(f.payloads == () for f in a if f.condition == "empty")
    assert all(len(f.payloads) == 2 for f in a if f.condition == "two_codes")
    assert {f.readable for f in a if f.condition == "beyond"} == {False}
