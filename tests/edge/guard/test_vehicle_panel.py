"""The guard screen's vehicle panel through the real server of a real agent.

A near miss reaches the guard with the crop and the plate it resembles; the guard's
answers (correct, register a visitor car, open by hand, refuse) are events recorded
before anything opens, and an opening answer needs the PIN.

The lane is a recording stand-in for ``edge.lane.Lane`` (built by the gate-side half of
the vehicle work in parallel): it implements the contract's ``open(cause, operator)``
and ``access(granted, decision)`` and nothing else.
"""

from __future__ import annotations

import dataclasses
import io
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from edge.agent import Presented
from protocol.credentials import CardEntry
from protocol.plates import parse_plate

from .conftest import PIN, GuardGate, SseReader

LANE = "vehicle-in"
RESIDENT = parse_plate("京A12345")


def plate_jpeg() -> bytes:
    from PIL import Image, ImageDraw

    image = Image.new("RGB", (220, 70), (20, 60, 170))
    ImageDraw.Draw(image).rectangle((8, 8, 212, 62), outline=(255, 255, 255), width=3)
    out = io.BytesIO()
    image.save(out, "JPEG", quality=80)
    return out.getvalue()


if "image" in Presented.__dataclass_fields__:
    PlatePresented: Any = Presented
else:

    @dataclasses.dataclass(frozen=True, slots=True)
    class PlatePresented(Presented):  # type: ignore[no-redef]
        """Presented with the contract's two optional fields, until the gate half adds them."""

        image: bytes | None = None
        confidence: float | None = None


class RecordingLane:
    def __init__(self, refuse: bool = False) -> None:
        self.opened: list[tuple[str, str | None]] = []
        self.decided: list[tuple[Any, bool]] = []
        self.refuse = refuse

    def open(self, cause: str, operator: str | None = None) -> bool:
        self.opened.append((cause, operator))
        return not self.refuse

    def access(self, granted: bool, decision: Any = None, **_: Any) -> bool:
        self.decided.append((getattr(decision, "reason", None), granted))
        return granted


@pytest.fixture
def gate(tmp_path: Path) -> Iterator[GuardGate]:
    cards = [CardEntry(RESIDENT.credential, "王先生", "3-2-501"), CardEntry("deny:plate:GD-B54321", "stolen")]
    gate = GuardGate(tmp_path, door=False, cards=cards)
    gate.agent.lanes = {LANE: RecordingLane()}  # type: ignore[attr-defined]
    try:
        yield gate
    finally:
        gate.close()


def show_plate(gate: GuardGate, text: str, image: bytes | None = None) -> Any:
    plate = parse_plate(text)
    return gate.agent.present(
        PlatePresented(
            plate.credential,
            "plate",
            LANE,
            time.monotonic_ns(),
            plate.text,
            None,
            "in",
            image=image,
            confidence=0.91,
        )
    )


def held_message(gate: GuardGate, text: str, image: bytes | None = None) -> dict[str, Any]:
    reader = SseReader(gate.url)
    try:
        reader.next("state")
        show_plate(gate, text, image)
        _, message = reader.next("show")
    finally:
        reader.close()
    return message


def test_a_near_miss_reaches_the_guard_with_the_crop_and_the_plate_it_resembles(gate: GuardGate):
    crop = plate_jpeg()
    message = held_message(gate, "京A12346", crop)
    assert message["granted"] is False and message["reason"] == "plate_near_miss"
    assert message["plate"] == "京A12346" and message["resembles"] == "京A12345"
    assert message["lane"] == LANE and message["held"] and message["check_by_hand"] is True
    assert message["confidence"] == 0.91
    picture = httpx.get(f"{gate.url}{message['crop']}", timeout=10)
    assert picture.status_code == 200 and picture.content == crop
    assert picture.headers["content-type"] == "image/jpeg"
    assert httpx.get(f"{gate.url}/crop/{'0' * 32}.jpg", timeout=10).status_code == 404
    (scan,) = gate.events("access.scan")
    assert scan.data["reason"] == "plate_near_miss" and scan.data["resembles"] == "京A12345"
    assert gate.agent.lanes[LANE].opened == []


def test_correcting_to_the_resembled_plate_records_first_then_decides_that_plate(gate: GuardGate):
    message = held_message(gate, "京A12346")
    body = {"held": message["held"], "plate": "京A12345", "guard": "07", "pin": PIN}
    wrong = gate.post("/api/vehicles/correct", {**body, "pin": "999999"})
    assert wrong.status_code == 403 and not gate.events("vehicle.guard")
    assert gate.events("guard.pin_rejected")[0].data["action"] == "vehicle_correct"
    response = gate.post("/api/vehicles/correct", body)
    assert response.status_code == 200, response.text
    assert response.json()["granted"] is True and response.json()["reason"] == "granted"
    events = gate.events()
    kinds = [e.type for e in events if e.type in ("vehicle.guard", "access.scan")]
    assert kinds == ["access.scan", "vehicle.guard", "access.scan"]
    guard = next(e for e in events if e.type == "vehicle.guard")
    assert guard.data == {
        "action": "correct",
        "guard": "07",
        "lane": LANE,
        "read": "京A12346",
        "decision": "plate_near_miss",
        "plate": "京A12345",
        "resembled": True,
    }
    last = gate.events("access.scan")[-1]
    assert last.data["granted"] is True and last.data["code"] == "京A12345" and last.data["reader"] == LANE
    assert [(str(r), g) for r, g in gate.agent.lanes[LANE].decided] == [
        ("plate_near_miss", False),
        ("granted", True),
    ]


def test_a_correction_to_another_unregistered_plate_still_does_not_open(gate: GuardGate):
    message = held_message(gate, "京A12346")
    response = gate.post(
        "/api/vehicles/correct", {"held": message["held"], "plate": "京A99999", "guard": "07", "pin": PIN}
    )
    assert response.status_code == 200 and response.json()["granted"] is False


def test_registering_a_visitor_car_then_decides_it_again_and_it_opens(gate: GuardGate):
    message = held_message(gate, "苏E77777")
    assert message["reason"] == "unknown" and message["vehicle"] == "unknown"
    response = gate.post(
        "/api/vehicles/register",
        {"held": message["held"], "unit": "7-1-201", "hours": "2", "note": "搬家", "guard": "07", "pin": PIN},
    )
    assert response.status_code == 200, response.text
    assert response.json()["granted"] is True and response.json()["plate"] == "苏E77777"
    (registered,) = gate.events("vehicle.registered")
    assert registered.data["plate"] == "苏E77777" and registered.data["unit"] == "7-1-201"
    assert registered.data["lane"] == LANE and registered.data["guard"] == "07"
    last = gate.events("access.scan")[-1]
    assert last.data["granted"] is True and last.data["vehicle"] == "visitor"


def test_opening_by_hand_records_the_reason_then_asks_the_lane(gate: GuardGate):
    message = held_message(gate, "粤B54321")
    assert message["reason"] == "blacklisted" and message["alarm"] is True
    response = gate.post(
        "/api/vehicles/open",
        {"held": message["held"], "reason": "emergency", "note": "", "guard": "07", "pin": PIN},
    )
    assert response.status_code == 200, response.text
    assert response.json()["opened"] is True
    assert gate.agent.lanes[LANE].opened == [("guard: emergency", "07")]
    (event,) = gate.events("vehicle.guard")
    assert (
        event.data["action"] == "open"
        and event.data["reason"] == "emergency"
        and event.data["read"] == "粤B54321"
    )


def test_a_lane_that_refuses_says_so_and_the_guards_action_is_still_recorded(gate: GuardGate):
    gate.agent.lanes[LANE].refuse = True
    response = gate.post(
        "/api/vehicles/open", {"lane": LANE, "reason": "other", "note": "消防检查", "guard": "07", "pin": PIN}
    )
    assert response.status_code == 200 and response.json()["opened"] is False
    assert gate.events("vehicle.guard")[0].data["note"] == "消防检查"


def test_refusing_needs_no_pin_is_recorded_and_the_plate_leaves_the_screen(gate: GuardGate):
    message = held_message(gate, "苏E77777")
    response = gate.post(
        "/api/vehicles/refuse", {"held": message["held"], "guard": "07", "reason": "no_answer"}
    )
    assert response.status_code == 200
    assert gate.events("vehicle.guard")[0].data["action"] == "refuse"
    again = gate.post("/api/vehicles/refuse", {"held": message["held"], "guard": "07"})
    assert again.status_code == 404 and again.json()["error"] == "plate_gone"


@pytest.mark.parametrize(
    ("path", "change", "field", "problem"),
    [
        ("/api/vehicles/correct", {"plate": "京A1234"}, "plate", "not_a_plate"),
        ("/api/vehicles/correct", {"plate": "京A12346"}, "plate", "same_plate"),
        ("/api/vehicles/correct", {"guard": ""}, "guard", "required"),
        ("/api/vehicles/register", {"unit": "1", "hours": "500"}, "hours", "out_of_range"),
        ("/api/vehicles/open", {"reason": "bored"}, "reason", "unknown_choice"),
        ("/api/vehicles/open", {"reason": "other"}, "note", "required"),
        ("/api/vehicles/refuse", {"reason": "bored"}, "reason", "unknown_choice"),
    ],
)
def test_bad_answers_are_typed_refusals_and_nothing_is_recorded(
    gate: GuardGate, path, change, field, problem
):
    message = held_message(gate, "京A12346")
    body = {"held": message["held"], "plate": "京A12345", "guard": "07", "pin": PIN, **change}
    response = gate.post(path, body)
    assert response.status_code == 400, response.text
    assert (response.json()["field"], response.json()["problem"]) == (field, problem)
    assert not gate.events("vehicle.guard") and not gate.events("vehicle.registered")
    assert gate.agent.lanes[LANE].opened == []


def test_opening_an_unknown_lane_is_refused(gate: GuardGate):
    response = gate.post(
        "/api/vehicles/open", {"lane": "nowhere", "reason": "visitor", "guard": "07", "pin": PIN}
    )
    assert response.status_code == 400 and response.json()["field"] == "lane"


def test_in_a_browser_the_guard_sees_the_crop_and_corrects_a_near_miss_with_one_tap(
    gate: GuardGate, browser_page: Any, tmp_path: Path
):
    from playwright.sync_api import expect

    from tests.waiting import wait_until

    page = browser_page
    violations: list[str] = []
    page.on("console", lambda m: violations.append(m.text) if "Content Security Policy" in m.text else None)
    page.goto(gate.url + "/")
    expect(page.locator("#link")).to_have_class("link up")
    show_plate(gate, "京A12346", plate_jpeg())
    expect(page.locator("#reason-en")).to_have_text(
        "Plate one character off a registered car: check the picture"
    )
    expect(page.locator("#reason-zh")).to_have_text("车牌与登记车辆相差一个字符：请核对图片")
    expect(page.locator("#crop-img")).to_be_visible()
    assert page.locator("#crop-img").evaluate("img => img.naturalWidth") == 220  # the crop really loaded
    expect(page.locator("#facts")).to_contain_text("京A12345")
    page.click("#it-is")
    form = page.locator("#vehicle-correct")
    expect(form.locator("[name=plate]")).to_have_value("京A12345")
    form.locator("[name=guard]").fill("07")
    form.locator("[name=pin]").fill(PIN)
    page.screenshot(path=str(tmp_path / "guard-vehicle.png"))
    form.locator("button[type=submit]").click()
    expect(form.locator(".message")).to_contain_text("已记录")
    assert wait_until(lambda: gate.events("vehicle.guard"))
    assert gate.events("access.scan")[-1].data["granted"] is True
    assert violations == []


@pytest.mark.timeout(60)
def test_with_the_real_lane_a_corrected_near_miss_pulses_the_barrier_and_a_manual_open_too(tmp_path: Path):
    """The same answers on an agent with a real ``[[lane]]`` (edge/lane.py) on mock pins."""
    from drivers.barrier import BarrierOutput
    from tests.waiting import wait_until

    lane = {
        "name": LANE,
        "direction": "in",
        "barrier": {"open": "GPIO5", "close": "GPIO6", "loop": "GPIO13", "pulse_s": 0.2},
    }
    gate = GuardGate(
        tmp_path, cards=[CardEntry(RESIDENT.credential, "王先生", "3-2-501")], extra={"lane": [lane]}
    )
    try:
        real = gate.agent.lanes[LANE]
        message = held_message(gate, "京A12346")
        assert message["reason"] == "plate_near_miss"
        assert real.hardware.pulses(BarrierOutput.OPEN) == 0  # a near miss never opens
        body = {"held": message["held"], "plate": "京A12345", "guard": "07", "pin": PIN}
        assert gate.post("/api/vehicles/correct", body).json()["granted"] is True
        assert wait_until(lambda: real.hardware.pulses(BarrierOutput.OPEN) == 1, timeout=10)
        opened = gate.post(
            "/api/vehicles/open", {"lane": LANE, "reason": "delivery", "guard": "07", "pin": PIN}
        )
        assert opened.status_code == 200 and opened.json()["opened"] is True
        assert wait_until(lambda: real.hardware.pulses(BarrierOutput.OPEN) == 2, timeout=10)
        manual = wait_until(lambda: gate.events("lane.manual_open"), timeout=10)
        assert manual[0].data["operator"] == "07" and manual[0].data["cause"] == "guard: delivery"
        types = [e.type for e in gate.events() if e.type in ("vehicle.guard", "lane.manual_open")]
        assert types[-2:] == ["vehicle.guard", "lane.manual_open"]  # the guard's record comes first
    finally:
        gate.close()
