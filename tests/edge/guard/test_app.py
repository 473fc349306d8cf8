"""The guard screen's HTTP side through Starlette's TestClient, on a gate with a mock-pin door.

Manual let-through needs the PIN and a reason, records ``access.manual`` in the outbox
and releases the lock; visitor registration issues a code the gate then grants for one
entry and one exit; bad input is a 4xx that says what is wrong, never a 500.
"""

from __future__ import annotations

import json
import re
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from starlette.testclient import TestClient

from edge.visitors import VisitorRequest
from protocol.credentials import CardEntry
from tests.waiting import wait_until

from .conftest import PIN, PIN_HASH, RESIDENT_CARD, GuardGate

MANUAL = {"pin": PIN, "guard": "张师傅 07", "reason": "delivery", "note": ""}
VISITOR = {
    "pin": PIN,
    "guard": "07",
    "name": "刘女士",
    "unit": "3-2-501",
    "phone": "138 0013 8000",
    "reason": "探亲",
}


KIOSK = "http://127.0.0.1:8088"
"""What the kiosk browser asks for: TestClient's own ``testserver`` is not a host the screen answers."""
KIOSK_PEER = ("127.0.0.1", 50000)
"""Where the kiosk browser connects from: the gate's own screen, counted apart from the network."""


@pytest.fixture
def client(guard_gate: GuardGate):
    with TestClient(guard_gate.screen.app, base_url=KIOSK, client=KIOSK_PEER) as client:
        yield client


def test_the_page_is_served_whole_from_the_gate_in_both_languages(client: TestClient, guard_gate: GuardGate):
    page = client.get("/")
    assert page.status_code == 200
    html = page.text
    assert "longtan / north" in html
    assert "待命" in html and "Ready" in html  # the idle line in both languages
    texts = json.loads(re.search(r'<script id="texts" type="application/json">(.*?)</script>', html, re.S)[1])
    assert texts["zh"]["reason"]["revoked"] == "通行证已被注销"  # both locales travel with the page
    assert texts["en"]["reason"]["revoked"] == "Pass revoked"
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", html), "every asset must be local"
    for asset in ("/static/guard.js", "/static/guard.css"):
        response = client.get(asset)
        assert response.status_code == 200 and "//fonts." not in response.text and "http" not in response.text


def test_manual_let_through_records_the_event_then_opens_the_door(client: TestClient, guard_gate: GuardGate):
    assert not guard_gate.door.relay_energised
    response = client.post("/api/manual", json={**MANUAL, "reason": "other", "note": "老人忘带卡"})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["unlocked_for_s"] == 1.0
    manual = guard_gate.events("access.manual")
    assert [m.data for m in manual] == [
        {"guard": "张师傅 07", "reason": "other", "note": "老人忘带卡", "door": True}
    ]
    assert manual[0].id == body["event_id"]
    assert wait_until(lambda: guard_gate.door.relay_energised)
    unlocked = wait_until(lambda: guard_gate.events("door.unlocked"))
    assert unlocked[-1].data["cause"] == "remote" and unlocked[-1].data["command_id"] == manual[0].id


def test_manual_let_through_without_the_right_pin_opens_nothing_and_is_recorded(
    client: TestClient, guard_gate: GuardGate
):
    response = client.post("/api/manual", json={**MANUAL, "pin": "000000"})
    assert response.status_code == 403
    assert response.json()["error"] == "pin_wrong" and response.json()["field"] == "pin"
    assert [e.data for e in guard_gate.events("guard.pin_rejected")] == [
        {"action": "manual", "failures": 1, "locked_for_s": 0.0, "source": "local", "address": "127.0.0.1"}
    ]
    assert guard_gate.events("access.manual") == []
    time.sleep(0.1)  # give a wrongly released lock the time to show
    assert not guard_gate.door.relay_energised


def test_five_wrong_pins_pause_guard_actions(client: TestClient, guard_gate: GuardGate):
    codes = [client.post("/api/manual", json={**MANUAL, "pin": "111111"}).status_code for _ in range(5)]
    assert codes == [403, 403, 403, 403, 429]
    paused = client.post("/api/manual", json=MANUAL)
    assert (
        paused.status_code == 429 and paused.json()["error"] == "pin_locked" and paused.json()["seconds"] > 0
    )
    assert len(guard_gate.events("guard.pin_rejected")) == 5  # the pause itself adds nothing
    [lockout] = guard_gate.events("guard.pin_lockout")
    assert lockout.data == {
        "action": "manual",
        "failures": 5,
        "locked_for_s": 60.0,
        "source": "local",
        "address": "127.0.0.1",
    }
    assert guard_gate.events("access.manual") == []


def test_a_pin_of_fewer_than_six_digits_is_answered_not_counted(client: TestClient, guard_gate: GuardGate):
    response = client.post("/api/manual", json={**MANUAL, "pin": "2468"})
    assert response.status_code == 400
    assert (response.json()["error"], response.json()["field"]) == ("pin_too_short", "pin")
    assert guard_gate.events("guard.pin_rejected") == []


@pytest.mark.parametrize(
    ("change", "field", "problem"),
    [
        ({"reason": ""}, "reason", "required"),
        ({"reason": "bribe"}, "reason", "unknown_choice"),
        ({"reason": "other", "note": ""}, "note", "required"),
        ({"reason": "other", "note": "   "}, "note", "required"),
        ({"guard": ""}, "guard", "required"),
        ({"guard": ["07"]}, "guard", "not_text"),
        ({"note": "x" * 201}, "note", "too_long"),
    ],
)
def test_manual_let_through_needs_a_reason_and_a_guard(
    client: TestClient, guard_gate: GuardGate, change: dict, field: str, problem: str
):
    response = client.post("/api/manual", json={**MANUAL, **change})
    assert response.status_code == 400
    assert (response.json()["error"], response.json()["field"], response.json()["problem"]) == (
        "field",
        field,
        problem,
    )
    assert guard_gate.events("access.manual") == [] and guard_gate.events("guard.pin_rejected") == []


def test_a_gate_without_a_door_records_the_let_through_and_says_so(tmp_path: Path):
    gate = GuardGate(tmp_path, door=False)
    try:
        with TestClient(gate.screen.app, base_url=KIOSK, client=KIOSK_PEER) as client:
            body = client.post("/api/manual", json=MANUAL).json()
        assert body["unlocked_for_s"] is None
        assert gate.events("access.manual")[0].data["door"] is False
    finally:
        gate.close()


def test_a_visitor_pass_opens_this_gate_for_one_entry_and_one_exit(client: TestClient, guard_gate: GuardGate):
    response = client.post("/api/visitors", json=VISITOR)
    assert response.status_code == 200, response.text
    body = response.json()
    code = body["code"]
    assert body["code_grouped"].replace(" ", "") == code
    assert body["phone"] == "*******8000"
    assert body["qr_svg"].startswith("<svg")
    registered = guard_gate.events("visitor.registered")
    assert len(registered) == 1 and registered[0].data["phone"] == "*******8000"
    assert code not in str(registered[0].data) and "13800138000" not in str(registered[0].data)

    decisions = [guard_gate.scan(code) for _ in range(3)]
    assert [(d.granted, d.reason.value) for d in decisions] == [
        (True, "granted"),
        (True, "granted"),
        (False, "replayed"),
    ]
    scans = guard_gate.events("access.scan")
    assert [(s.data["granted"], s.data["holder"], s.data["unit"]) for s in scans] == [
        (True, "刘女士", "3-2-501"),
        (True, "刘女士", "3-2-501"),
        (False, "刘女士", "3-2-501"),
    ]


def test_an_expired_visitor_pass_is_refused_at_the_gate(guard_gate: GuardGate):
    request = VisitorRequest.check(
        name="赵先生", unit="1-1-101", phone="13900001111", reason="送货", guard="07"
    )
    visitor = guard_gate.screen.visitors.register(request, datetime.now(UTC) - timedelta(hours=5))
    decision = guard_gate.scan(visitor.code)
    assert (decision.granted, decision.reason.value) == (False, "expired")


def test_another_gates_visitor_pass_is_unknown_here(tmp_path: Path, guard_gate: GuardGate):
    other = GuardGate(tmp_path / "other")
    try:
        with TestClient(other.screen.app, base_url=KIOSK, client=KIOSK_PEER) as client:
            code = client.post("/api/visitors", json=VISITOR).json()["code"]
    finally:
        other.close()
    decision = guard_gate.scan(code)
    assert (decision.granted, decision.reason.value) == (False, "unknown")


@pytest.mark.parametrize(
    ("change", "field", "problem"),
    [
        ({"name": ""}, "name", "required"),
        ({"phone": "abc"}, "phone", "phone_chars"),
        ({"phone": "123"}, "phone", "phone_digits"),
        ({"unit": 501}, "unit", "not_text"),
        ({"guard": None}, "guard", "not_text"),
    ],
)
def test_visitor_registration_names_the_bad_field(
    client: TestClient, guard_gate: GuardGate, change: dict, field: str, problem: str
):
    response = client.post("/api/visitors", json={**VISITOR, **change})
    assert response.status_code == 400
    assert (response.json()["field"], response.json()["problem"]) == (field, problem)
    assert guard_gate.events("visitor.registered") == []
    assert len(guard_gate.screen.visitors) == 0


def test_visitor_registration_needs_the_pin(client: TestClient, guard_gate: GuardGate):
    response = client.post("/api/visitors", json={**VISITOR, "pin": ""})
    assert response.status_code == 403
    assert len(guard_gate.screen.visitors) == 0
    assert guard_gate.events("guard.pin_rejected")[0].data["action"] == "visitor"


@pytest.mark.parametrize(
    ("content", "headers", "status"),
    [
        (b"pin=2468&guard=07", {"content-type": "application/x-www-form-urlencoded"}, 415),
        (b"{not json", {"content-type": "application/json"}, 400),
        (b"[1, 2]", {"content-type": "application/json"}, 400),
        (b"\xff\xfe", {"content-type": "application/json"}, 400),
        (b'{"pin": "' + b"9" * 9000 + b'"}', {"content-type": "application/json"}, 413),
    ],
)
def test_malformed_requests_are_refused_with_a_reason(
    client: TestClient, content: bytes, headers: dict, status: int
):
    for path in ("/api/manual", "/api/visitors"):
        response = client.post(path, content=content, headers=headers)
        assert response.status_code == status
        assert response.json()["error"] == "bad_request" and response.json()["detail"]


def test_actions_are_post_only(client: TestClient):
    assert client.get("/api/manual").status_code == 405
    assert client.get("/api/visitors").status_code == 405


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=40),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=8,
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    body=st.dictionaries(
        st.sampled_from(["pin", "guard", "reason", "note", "name", "unit", "phone", "x"]),
        json_values,
        max_size=7,
    )
)
def test_no_body_makes_a_500(client: TestClient, guard_gate: GuardGate, body: dict):
    body.pop("pin", None)  # never the right PIN: nothing may be let through
    for path in ("/api/manual", "/api/visitors"):
        response = client.post(path, json=body)
        assert response.status_code in (400, 403, 429), (path, body, response.text)
    assert guard_gate.events("access.manual") == [] and guard_gate.events("visitor.registered") == []


def test_the_screen_answers_to_its_addresses_and_its_own_names(tmp_path: Path):
    """Any IP literal (nothing to rebind), localhost, the listen host and the gate's host name."""
    import socket

    screen = {
        "enabled": True,
        "listen": "127.0.0.2:0",
        "pin_hash": PIN_HASH,
        "visitor_db": str(tmp_path / "visitors.db"),
    }
    gate = GuardGate(tmp_path, door=False, extra={"guard_screen": screen})
    try:
        assert gate.url.startswith("http://127.0.0.2:")
        assert httpx.get(f"{gate.url}/healthz", timeout=5).status_code == 200  # as uvicorn sees it
        with TestClient(gate.screen.app, base_url=KIOSK, client=KIOSK_PEER) as client:
            hostname = socket.gethostname()
            for host in (
                "127.0.0.2:8088",
                "127.0.0.1",
                "192.168.1.20:8088",  # the booth's screen reaching a gate that listens on 0.0.0.0
                "localhost:8088",
                "LOCALHOST",
                "[::1]:8088",
                f"{hostname}:8088",
                f"{hostname}.local",
            ):
                assert client.get("/healthz", headers={"host": host}).status_code == 200, host
            assert client.get("/healthz", headers={"host": "gate.example:8088"}).status_code == 400
    finally:
        gate.close()


@pytest.mark.parametrize("host", ["evil.example:8088", "evil.example", "127.0.0.1.nip.io:8088", "", "a b"])
def test_a_page_that_rebinds_its_name_to_the_gate_reads_nothing(client: TestClient, host: str):
    """DNS rebinding: a page in the kiosk whose name now points at 127.0.0.1 sends its own name as Host."""
    for path in ("/", "/events", "/healthz", f"/photo/{'0' * 32}.jpg", "/static/guard.js"):
        assert client.get(path, headers={"host": host}).status_code == 400, path
    response = client.post("/api/manual", json=MANUAL, headers={"host": host})
    assert response.status_code == 400


def test_photos_are_served_by_digest_only(client: TestClient, guard_gate: GuardGate):
    ok = client.get(f"/photo/{guard_gate.photo_hex}.jpg")
    assert ok.status_code == 200 and ok.headers["content-type"] == "image/jpeg"
    assert ok.content == guard_gate.photo
    for bad in ("0" * 32 + ".jpg", "..%2Foutbox.db", guard_gate.photo_hex, "x.jpg", "A" * 32 + ".jpg"):
        assert client.get(f"/photo/{bad}").status_code == 404


def test_a_card_decision_shows_the_holder_and_photo_or_the_placeholder(tmp_path: Path):
    from .conftest import portrait_jpeg  # noqa: F401 (the gate writes the photo file)

    gate = GuardGate(
        tmp_path,
        cards=[
            CardEntry(RESIDENT_CARD, holder="李华", unit="5-1-302", photo_digest=None),
            CardEntry("wiegand26:13:1003", holder="王芳", unit="5-1-303", photo_digest="ab" * 16),
        ],
    )
    try:
        entry = CardEntry(RESIDENT_CARD, holder="李华", unit="5-1-302", photo_digest=gate.photo_hex)
        from console.credentials import CardRegistry  # a list update with the photo, as the console sends

        registry = CardRegistry(tmp_path / "registry.db")
        registry.put([entry])
        gate.agent.decider.cards.apply_snapshot_chunks(registry.snapshot())
        gate.scan(RESIDENT_CARD, kind="card", reader="reader")
        shown, _ = gate.screen.live.last()
        assert (shown["granted"], shown["holder"], shown["unit"]) == (True, "李华", "5-1-302")
        assert shown["photo"] == {"digest": gate.photo_hex, "url": f"/photo/{gate.photo_hex}.jpg"}
        gate.scan("wiegand26:13:1003", kind="card", reader="reader")
        shown, _ = gate.screen.live.last()
        assert shown["photo"] == {"digest": "ab" * 16, "url": None}  # the page shows "no photo on this gate"
        gate.scan("wiegand26:13:2002", kind="card", reader="reader")  # allow-listed: no holder, no photo
        shown, _ = gate.screen.live.last()
        assert shown["photo"] is None and shown["holder"] is None
    finally:
        gate.close()
