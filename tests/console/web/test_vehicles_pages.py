"""/vehicles: resident vehicles and the blacklist in the real card registry, CSV import, plate crops,
the blacklist alarm, and vehicle lanes as posts of their own in the staffing advice."""

from __future__ import annotations

import base64
import io
import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from PIL import Image

from console.flow import events_buckets
from console.retention import RetentionPolicy, prune
from console.vehicle_crops import crop_of
from protocol.plates import parse_plate
from tests.console.web.pages_support import Console, audit_actions, csrf_of, web_console
from tests.console.web.web_support import make_event


@pytest.fixture
def console(tmp_path: Path) -> Iterator[Console]:
    with web_console(tmp_path, cards=True) as c:
        yield c


def _jpeg(width: int = 200, height: int = 60) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (width, height), (20, 60, 170)).save(out, "JPEG", quality=80)
    return out.getvalue()


def _events(client, url: str) -> list[tuple[str, dict]]:
    events, name = [], None
    with client.stream("GET", url) as stream:
        for line in stream.iter_lines():
            if line.startswith("event: "):
                name = line[7:]
            elif line.startswith("data: "):
                events.append((name, json.loads(line[6:])))
    return events


@pytest.mark.parametrize("lang", ["en", "zh"])
def test_add_a_resident_vehicle_and_a_blacklisted_plate_then_remove(console: Console, lang: str) -> None:
    registry = console.ctx.cards
    client = console.client("operator", lang)
    csrf = csrf_of(client, "/vehicles")
    added = client.post(
        "/vehicles/new",
        data={
            "csrf_token": csrf,
            "plate": "京a·12345",
            "holder": "王小明",
            "unit": "3-2-501",
            "window": "06:00-23:00",
        },
    )
    assert added.status_code == 303, added.text
    entry = registry.get("plate:BJ-A12345")
    assert entry is not None and entry.holder == "王小明" and entry.window_start == 360
    listed = client.post(
        "/vehicles/new", data={"csrf_token": csrf, "plate": "粤B54321", "holder": "欠费", "blacklist": "yes"}
    )
    assert listed.status_code == 303
    assert registry.get("deny:plate:GD-B54321") is not None and registry.get("plate:GD-B54321") is None
    page = client.get("/vehicles")
    assert "京A12345" in page.text and "粤B54321" in page.text
    assert ("黑名单" if lang == "zh" else "Blacklisted") in page.text
    again = client.post("/vehicles/new", data={"csrf_token": csrf, "plate": "京A12345"})
    assert again.status_code == 400 and "京A12345" in again.text
    bad = client.post("/vehicles/new", data={"csrf_token": csrf, "plate": "京I12"})
    assert bad.status_code == 400 and registry.state.count == 2
    form = client.get("/vehicles/plate:BJ-A12345/edit")
    assert form.status_code == 200 and "京A12345" in form.text and "王小明" in form.text
    edited = client.post(
        "/vehicles/plate:BJ-A12345/edit",
        data={"csrf_token": csrf, "holder": "王大明", "unit": "3-2-502", "until": "2027-06-30"},
    )
    assert edited.status_code == 303, edited.text
    entry = registry.get("plate:BJ-A12345")
    assert (entry.holder, entry.unit, entry.window_start) == ("王大明", "3-2-502", None)
    assert entry.valid_until is not None
    bad_edit = client.post(
        "/vehicles/plate:BJ-A12345/edit", data={"csrf_token": csrf, "window": "25:00-26:00"}
    )
    assert bad_edit.status_code == 400 and registry.get("plate:BJ-A12345").holder == "王大明"
    assert client.get("/vehicles/plate:BJ-Z99999/edit").status_code == 404
    unconfirmed = client.post("/vehicles/plate:BJ-A12345/remove", data={"csrf_token": csrf})
    assert unconfirmed.status_code == 400 and registry.get("plate:BJ-A12345") is not None
    removed = client.post("/vehicles/plate:BJ-A12345/remove", data={"csrf_token": csrf, "confirm": "yes"})
    assert removed.status_code == 303 and registry.get("plate:BJ-A12345") is None
    not_a_vehicle = client.post(
        "/vehicles/wiegand26:13:1/remove", data={"csrf_token": csrf, "confirm": "yes"}
    )
    assert not_a_vehicle.status_code == 404
    assert audit_actions(console).count("vehicle.add") == 2 and "vehicle.remove" in audit_actions(console)
    assert "vehicle.edit" in audit_actions(console)


def test_vehicles_travel_to_gates_in_the_card_list(console: Console, tmp_path: Path) -> None:
    """What the page saved is what a gate applies and decides on: the same snapshot machinery."""
    from edge.credentials import CardStore
    from edge.decision import AllowList, GateDecider
    from protocol.passes import ClockReading, Reason

    client = console.client("operator")
    csrf = csrf_of(client, "/vehicles")
    client.post(
        "/vehicles/new", data={"csrf_token": csrf, "plate": "沪AD12345", "holder": "李华", "unit": "5-1"}
    )
    client.post("/vehicles/new", data={"csrf_token": csrf, "plate": "粤B54321", "blacklist": "yes"})
    store = CardStore(tmp_path / "gate-cards.db")
    store.apply_snapshot_chunks(console.ctx.cards.snapshot())
    decider = GateDecider(AllowList(frozenset()), None, store)
    now = ClockReading(datetime.now(UTC), True)
    assert decider.decide(parse_plate("沪AD12345").credential, now).granted
    assert decider.decide(parse_plate("粤B54321").credential, now).reason is Reason.BLACKLISTED
    assert decider.decide(parse_plate("沪AD12346").credential, now).reason is Reason.PLATE_NEAR_MISS
    store.close()


def test_csv_import_reports_bad_rows_and_saves_the_rest(console: Console) -> None:
    admin = console.client("admin")
    assert console.client("operator").get("/vehicles/import").status_code == 403
    csrf = csrf_of(admin, "/vehicles/import")
    text = (
        "\ufeffplate,holder,unit,from,until,window,zones,blacklist\n"
        "京A12345,王小明,3-2-501,,2027-12-31,,0,\n"
        "沪AD12345,李华,5-1-302,,,06:00-23:00,0,\n"
        "not a plate,x,1,,,,,\n"
        "粤B54321,欠费,,,,,,yes\n"
        "京A12345,王小明,3-2-502,,,,,\n"
    )
    upload = {"file": ("vehicles.csv", text.encode(), "text/csv")}
    started = admin.post("/vehicles/import", data={"csrf_token": csrf}, files=upload)
    assert started.status_code == 303, started.text
    _name, final = _events(admin, started.headers["location"] + "/events")[-1]
    assert final["imported"] == 3 and final["problem_count"] == 1
    assert final["problems"][0]["line"] == 4 and final["problems"][0]["column"] == "plate"
    registry = console.ctx.cards
    assert registry.get("plate:BJ-A12345").unit == "3-2-502"  # listed twice: the later row wins
    assert registry.get("deny:plate:GD-B54321") is not None
    assert "vehicle.import" in audit_actions(console)
    wrong = admin.post(
        "/vehicles/import",
        data={"csrf_token": csrf},
        files={"file": ("v.csv", b"credential\nx\n", "text/csv")},
    )
    _name, final = _events(admin, wrong.headers["location"] + "/events")[-1]
    assert final["problems"][0]["reason"] == "missing"


def test_a_plate_crop_is_stored_beside_its_event_served_and_pruned_with_it(console: Console) -> None:
    store = console.ctx.store
    crop = _jpeg()
    old = datetime.now(UTC) - timedelta(days=500)
    scan = make_event(
        "s1", "north", 1, credential="plate", code="京A12346", granted=False, reason="plate_near_miss",
        resembles="京A12345", vehicle="unknown", crop=base64.b64encode(crop).decode(),
    )  # fmt: skip
    bad = make_event("s1", "north", 2, credential="plate", code="京A1", granted=False, crop="@@not base64@@")
    aged = make_event("s1", "north", 3, at=old, credential="plate", crop=base64.b64encode(crop).decode())
    result = store.commit([scan, bad, aged])
    assert result.new == 3
    assert store.commit([scan]).duplicate == 1  # redelivered: stored once, its crop too
    (stored,) = [e for e in store.last_events(10) if e.id == scan.id]
    assert "crop" not in stored.data and stored.data["crop_bytes"] == len(crop)
    assert len(stored.data["crop_ref"]) == 64
    (refused,) = [e for e in store.last_events(10) if e.id == bad.id]
    assert refused.data["crop_rejected"] == "not_base64" and "crop" not in refused.data
    assert crop_of(console.ctx.db, scan.id) == crop
    client = console.client("operator")
    picture = client.get(f"/vehicles/crops/{scan.id}.jpg")
    assert picture.status_code == 200 and picture.content == crop
    assert client.get(f"/vehicles/crops/{bad.id}.jpg").status_code == 404
    assert client.get("/vehicles/crops/nothex.jpg").status_code == 404
    detail = client.get(f"/events/{scan.id}")
    assert f"/vehicles/crops/{scan.id}.jpg" in detail.text
    page = client.get("/vehicles")
    assert f"/vehicles/crops/{scan.id}.jpg" in page.text and "京A12346" in page.text
    prune(store, RetentionPolicy(retain_days=400), now=datetime.now(UTC))
    assert crop_of(console.ctx.db, aged.id) is None and crop_of(console.ctx.db, scan.id) == crop


def test_a_blacklisted_plate_raises_the_vehicle_alarm(console: Console) -> None:
    from console.alarms import AlarmKind

    event = make_event(
        "s1", "north", 1, credential="plate", code="粤B54321", granted=False, reason="blacklisted",
        reader="vehicle-in", detail="欠费",
    )  # fmt: skip
    console.ctx.store.commit([event])
    (alarm,) = console.ctx.alarms.observe_events(console.ctx.store.events_after(0))
    assert alarm.kind == AlarmKind.VEHICLE_BLACKLISTED and alarm.detail["code"] == "粤B54321"
    page = console.client("operator", "zh").get("/alarms")
    assert "黑名单车辆到达道闸" in page.text


def test_a_vehicle_lane_is_a_post_of_its_own_in_the_staffing_advice(console: Console) -> None:
    store = console.ctx.store
    start = datetime(2026, 11, 30, 0, 0, tzinfo=UTC)
    events = [
        make_event("s1", "north", i + 1, at=start + timedelta(minutes=i), credential="plate", granted=True)
        for i in range(12)
    ]
    events += [
        make_event("s1", "north", 100 + i, at=start + timedelta(minutes=i), credential="card", granted=True)
        for i in range(5)
    ]
    store.commit(events)
    buckets = events_buckets(console.ctx.db, start=start, end=start + timedelta(hours=1), minutes=30)
    by_post = {b.gate: b.entries for b in buckets}
    assert by_post == {"north/vehicles": 12, "north": 5}
    only = events_buckets(
        console.ctx.db, start=start, end=start + timedelta(hours=1), minutes=30, plates=True
    )
    assert {b.gate for b in only} == {"north/vehicles"}


@pytest.mark.parametrize("lang", ["en", "zh"])
def test_the_vehicles_page_charts_todays_plates_per_lane(console: Console, lang: str) -> None:
    now = datetime.now(UTC).replace(microsecond=0)
    console.ctx.store.commit(
        [
            make_event(
                "s1", "north", i + 1, at=now - timedelta(seconds=i), credential="plate", granted=i % 3 != 0
            )
            for i in range(6)
        ]
    )
    page = console.client("operator", lang).get("/vehicles")
    assert page.status_code == 200
    assert "id='vehicle-day-0'" in page.text and "s1/north/vehicles" in page.text
    assert ("今日车辆" if lang == "zh" else "Vehicles today") in page.text


@pytest.mark.parametrize("lang", ["en", "zh"])
def test_register_and_import_vehicles_in_a_browser(
    console: Console, browser_page, tmp_path: Path, lang: str
) -> None:
    """An admin adds a car with the form and imports a CSV, in each language; the list shows both."""
    from tests.console.web.pages_support import browser_login, served

    page = browser_page
    page.context.add_cookies([{"name": "gp_lang", "value": lang, "url": "http://127.0.0.1"}])
    with served(console) as base:
        browser_login(page, base, console, role="admin")
        page.goto(f"{base}/vehicles")
        assert page.locator("h1").inner_text() == ("车辆" if lang == "zh" else "Vehicles")
        page.click("#add-vehicle")
        page.fill("input[name=plate]", "京A·12345")
        page.fill("input[name=holder]", "王小明")
        page.fill("input[name=unit]", "3-2-501")
        page.click("#vehicle-save")
        page.wait_for_url(f"{base}/vehicles?*changed=*")
        assert page.locator("#changed-notice").is_visible()
        assert "京A12345" in page.locator("#vehicles-table").inner_text()
        page.goto(f"{base}/vehicles/new")
        page.fill("input[name=plate]", "京I1")
        page.click("#vehicle-save")
        assert ("不是有效的中国车牌" if lang == "zh" else "is not a Chinese plate") in page.content()
        csv_file = tmp_path / f"vehicles-{lang}.csv"
        csv_file.write_text(
            "plate,holder,unit,blacklist\n沪AD12345,李华,5-1-302,\n粤B54321,欠费,,yes\nbad,x,1,\n"
        )
        page.goto(f"{base}/vehicles/import")
        page.set_input_files("input[name=file]", str(csv_file))
        page.click("#import-form button[type=submit]")
        page.wait_for_url(f"{base}/vehicles/import/*")
        page.locator(
            "#import-status.notice"
        ).wait_for()  # a locator, not a JS predicate: the CSP forbids eval
        assert page.locator("#import-problem-table tbody tr").count() == 1
        page.goto(f"{base}/vehicles")
        listed = page.locator("#vehicles-table").inner_text()
        assert "沪AD12345" in listed and "粤B54321" in listed
        assert ("黑名单" if lang == "zh" else "Blacklisted") in listed
        page.context.close()
