"""Plate recognition with the packaged PP-OCRv4 models on the synthetic set, by condition, and the merge across frames."""

from __future__ import annotations

import socket
from collections import Counter
from pathlib import Path

import cv2
import numpy as np
import pytest

from drivers.plate_reader import (
    MAX_CROP_BYTES,
    ChangeGate,
    LaneRecogniser,
    OcrText,
    PlateRecogniser,
    PlateRejectReason,
    VehicleReadings,
    candidates,
    crop_jpeg,
    normalise_text,
)
from simulator.plates import CONDITIONS, LANE_REGION, PlateCamera, Vehicle, plate_set
from tests.waiting import wait_until

FLOOR = 0.8
"""Per condition, on a small set: the benchmark (bench/vehicles.py) measures the rate on a larger one."""


@pytest.fixture(scope="module")
def recogniser():
    return PlateRecogniser()


def test_the_models_are_the_wheels_own_files_and_load_with_no_network(monkeypatch, recogniser):
    import rapidocr_onnxruntime

    models = Path(rapidocr_onnxruntime.__file__).parent / "models"
    assert sorted(p.name for p in models.glob("*.onnx")) == [
        "ch_PP-OCRv4_det_infer.onnx",
        "ch_PP-OCRv4_rec_infer.onnx",
        "ch_ppocr_mobile_v2.0_cls_infer.onnx",
    ]

    def no_network(*args, **kwargs):
        raise AssertionError("the plate model tried to reach the network")

    monkeypatch.setattr(socket, "create_connection", no_network)
    monkeypatch.setattr(socket.socket, "connect", no_network)
    fresh = PlateRecogniser()  # a second load, with every outgoing connection refused
    texts = fresh.texts(cv2.cvtColor(plate_set(1, seed=9)[0].image, cv2.COLOR_BGR2GRAY))
    assert texts


@pytest.mark.timeout(240)
def test_recognition_on_the_synthetic_set_by_condition(recogniser):
    x, y, w, h = LANE_REGION
    read, total, wrong = Counter(), Counter(), []
    for frame in plate_set(6, seed=11, empty=4):
        grey = cv2.cvtColor(frame.image, cv2.COLOR_BGR2GRAY)[y : y + h, x : x + w]
        merged = VehicleReadings(confirm=1).add(candidates(recogniser.texts(grey)))
        text = merged[0].text if merged else None
        total[frame.condition] += 1
        read[frame.condition] += text == frame.plate
        if text is not None and text != frame.plate:
            wrong.append((frame.plate, text))
    rates = {condition: read[condition] / total[condition] for condition in total}
    print("read rate by condition:", rates)
    assert set(rates) == {*CONDITIONS, "empty"}
    assert all(rate >= FLOOR for rate in rates.values()), rates
    assert rates["empty"] == 1.0  # an empty lane is never read as a plate
    assert len(wrong) <= 1, (
        wrong
    )  # a misread is rarer than a miss: a miss costs a retry, a misread a decision


def test_ocr_text_is_made_plate_like():
    assert normalise_text("京A·12345") == "京A12345"
    assert normalise_text("粤B O1I23") == "粤B01123"  # I and O never occur in a serial
    assert normalise_text("京o-12345") == "京O12345"  # the authority letter is left alone


def box(x0, x1, y0=10, y1=40):
    return ((x0, y0), (x1, y0), (x1, y1), (x0, y1))


def test_a_province_character_split_off_by_the_detector_is_joined_back():
    found = candidates([OcrText("A12345", 0.95, box(40, 200)), OcrText("京", 0.9, box(10, 35))])
    texts = {text: score for text, score, _ in found}
    assert texts["京A12345"] == 0.9
    assert "A12345" in texts


def test_readings_merge_into_one_presentation_per_vehicle():
    readings = VehicleReadings(confirm=2, min_confidence=0.8)
    payload = object()
    assert readings.add([("京A12345", 0.9, payload)]) is None
    assert readings.add([("京A12346", 0.95, payload)]) is None  # a misread frame does not confirm anything
    plate, confidence, got = readings.add([("京A12345", 0.97, payload)])
    assert (plate.text, confidence, got) == ("京A12345", 0.97, payload)
    assert readings.add([("京A12345", 0.99, payload)]) is None  # done: the same car is not presented again
    assert readings.unread(0) is None
    readings.reset()
    assert readings.add([("京A12345", 0.5, payload)]) is None  # below the threshold: not counted
    assert readings.add([("hello", 0.99, payload)]) is None
    rejected = readings.unread(123)
    assert rejected.reason is PlateRejectReason.LOW_CONFIDENCE and rejected.best == "京A12345"
    readings.reset()
    readings.add([("EXIT", 0.99, payload)])
    assert readings.unread(0).reason is PlateRejectReason.NOT_A_PLATE


def test_the_crop_always_fits_the_event():
    rng = np.random.default_rng(0)
    noise = rng.integers(0, 255, (480, 640), dtype=np.uint8)  # incompressible: the worst case
    crop = crop_jpeg(noise, None)
    assert crop is not None and len(crop) <= MAX_CROP_BYTES and crop[:2] == b"\xff\xd8"
    small = crop_jpeg(noise, box(200, 350, 200, 240))
    assert small is not None and len(small) <= MAX_CROP_BYTES


def test_the_change_gate_sees_a_car_arrive_and_leave():
    camera = PlateCamera([Vehicle("京A12345", 2.0, 2.0)], fps=10, realtime=False)
    gate = ChangeGate()
    x, y, w, h = LANE_REGION
    states = []
    for index in range(60):
        grey = cv2.cvtColor(camera.frame_at(index), cv2.COLOR_BGR2GRAY)
        states.append(gate.update(grey[y : y + h, x : x + w]))
    assert not any(states[:20])
    assert all(states[21:40])
    assert not any(states[45:])


@pytest.mark.timeout(60)
def test_a_lane_recogniser_gated_by_change_reads_each_car_once(recogniser):
    camera = PlateCamera(
        [Vehicle("京A12345", 1.0, 2.0), Vehicle("粤BD12345", 4.0, 2.0, "night")], fps=10, realtime=False
    )
    readings, rejected, presence = [], [], []
    lane = LaneRecogniser(
        camera,
        on_reading=readings.append,
        on_reject=rejected.append,
        on_presence=lambda present, at: presence.append(present),
        region=LANE_REGION,
        gate="change",
        recogniser=recogniser,
        realtime=False,
    )
    lane.start()
    try:
        wait_until(lambda: camera.index >= 75, timeout=50)
    finally:
        lane.close()
    assert [r.text for r in readings] == ["京A12345", "粤BD12345"]
    assert presence[:4] == [True, False, True, False]
    assert rejected == []
    assert lane.frames_recognised < 20  # the empty lane between and around the cars was not read
