"""The duty sheet over real MQTT, the guard screen's "On duty" panel and the staff PIN check-in.

The sheet is published retained on the gate's ``duty`` topic by a console login through
the broker's real ACL; the screen is read over HTTP from the agent's own server; the PIN
form is posted as the page posts it.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from broker.launcher import Broker
from edge.guard.pin import hash_pin
from protocol import GateTopics
from protocol.duty import encode_sheet
from simulator.duty import Shift, duty_sheet
from tests.conftest import ClientFactory
from tests.edge.duty_support import SITE, DutyGate, gate_config, pin_hashes
from tests.waiting import wait_until

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]

GUARD_PIN_HASH = hash_pin("246813", n=2**12)
WANG_PIN, LIU_PIN = "135790", "864200"
SHIFTS = [
    Shift("p-wang", "王芳", -1, 8),  # on shift now
    Shift("p-liu", "刘洋", -2, 4, team="volunteer"),  # on shift now
    Shift("p-chen", "陈静", 7, 8),  # next
]
PINS = pin_hashes({"p-wang": ("王芳", WANG_PIN), "p-liu": ("刘洋", LIU_PIN)})


def screen_gate(tmp_path: Path, gate: str, broker: Broker | None = None) -> DutyGate:
    return DutyGate(gate_config(tmp_path, gate, broker=broker, guard_pin_hash=GUARD_PIN_HASH))


def url(gate: DutyGate) -> str:
    assert gate.agent.guard is not None and gate.agent.guard.url is not None
    return gate.agent.guard.url.rstrip("/")


def pin(gate: DutyGate, value: object, person: str | None = None) -> httpx.Response:
    body = {"pin": value} if person is None else {"pin": value, "person": person}
    return httpx.post(f"{url(gate)}/api/duty/pin", json=body, timeout=20)


def test_a_sheet_over_mqtt_shows_on_the_screen_and_a_staff_pin_checks_in_and_out(
    tmp_path: Path, broker: Broker, mqtt_client_factory: ClientFactory, unique_name: str
):
    gate = screen_gate(tmp_path, unique_name, broker)
    console = mqtt_client_factory(broker.add_console(f"c{unique_name}"))
    try:
        assert gate.agent.link.wait_connected(15)
        page = httpx.get(f"{url(gate)}/", timeout=10).text
        assert 'data-roster="none"' in page and "王芳" not in page
        sheet = duty_sheet(SITE, unique_name, SHIFTS, PINS)
        reason = console.publish(GateTopics(SITE, unique_name).duty, encode_sheet(sheet), retain=True)
        assert not reason.is_failure
        assert wait_until(lambda: gate.agent.duty.sheet is not None, 10)

        page = httpx.get(f"{url(gate)}/", timeout=10).text
        assert 'data-roster="current"' in page
        assert '<option value="p-liu">刘洋</option>' in page  # the optional "who are you" choice
        now_part = page.split('id="duty-now"')[1].split("</ul>")[0]
        next_part = page.split('id="duty-next"')[1].split("</ul>")[0]
        assert "王芳" in now_part and "刘洋" in now_part and "陈静" not in now_part
        assert "陈静" in next_part
        panel = httpx.get(f"{url(gate)}/api/duty", timeout=10).json()
        assert [s["person"] for s in panel["now"]] == ["p-liu", "p-wang"]  # earliest start first
        assert not any(s["checked_in"] for s in panel["now"])

        answer = pin(gate, WANG_PIN)
        assert answer.status_code == 200, answer.text
        assert (answer.json()["event"], answer.json()["person"]) == ("duty.check_in", "p-wang")
        panel = httpx.get(f"{url(gate)}/api/duty", timeout=10).json()
        assert [s["person"] for s in panel["now"] if s["checked_in"]] == ["p-wang"]
        assert [c["person"] for c in panel["checked_in"]] == ["p-wang"]
        page = httpx.get(f"{url(gate)}/", timeout=10).text
        assert "王芳" in page.split('id="duty-here"')[1].split("</ul>")[0]

        time.sleep(1.1)
        answer = pin(gate, WANG_PIN)
        assert answer.json()["event"] == "duty.check_out" and answer.json()["on_duty_s"] >= 1.0

        wrong = pin(gate, "000000")
        assert (wrong.status_code, wrong.json()["error"]) == (403, "duty_pin_wrong")
        assert gate.relay_ever_energised() is False
    finally:
        gate.stop()


def test_pin_check_ins_are_events_with_rostered_and_refusals_have_their_reason(
    tmp_path: Path, unique_name: str
):
    gate = screen_gate(tmp_path, unique_name)  # the network is down: every event stays in the outbox
    try:
        assert pin(gate, WANG_PIN).json()["error"] == "no_sheet"
        assert [e.data["reason"] for e in gate.events("duty.refused")] == ["no_sheet"]
        sheet = duty_sheet(SITE, unique_name, SHIFTS[:1] + SHIFTS[2:], PINS)  # 刘洋 not on shift now
        gate.agent.duty.on_sheet(GateTopics(SITE, unique_name).duty, encode_sheet(sheet))
        assert pin(gate, LIU_PIN).status_code == 200
        shown, _age = gate.agent.guard.live.last()  # what every open page was sent
        assert shown is not None and (shown["kind"], shown["event"], shown["holder"]) == (
            "duty",
            "duty_check_in",
            "刘洋",
        )
        assert pin(gate, WANG_PIN, person="p-liu").status_code == 403  # the name picked limits the match
        assert pin(gate, WANG_PIN, person="p-wang").status_code == 200
        checks = gate.events("duty.check_in")
        assert [(c.data["person"], c.data["method"], c.data["rostered"]) for c in checks] == [
            ("p-liu", "pin", False),
            ("p-wang", "pin", True),
        ]
        assert checks[0].data["reader"] is None
        assert pin(gate, "12").json()["error"] == "duty_pin_too_short"
        for _ in range(
            5
        ):  # the guard PIN's lockout: 5 wrong in a row (a right PIN reset the count), then a pause
            answer = pin(gate, "999999")
        assert (answer.status_code, answer.json()["error"]) == (429, "pin_locked")
        locked = pin(gate, WANG_PIN)  # even the right PIN waits now
        assert locked.status_code == 429
        reasons = [e.data["reason"] for e in gate.events("duty.refused")]
        assert reasons.count("wrong_pin") == 6 and reasons.count("pin_lockout") == 1
        assert len(gate.events("duty.check_out")) == 0
        # The guard's own actions still need the guard PIN: a staff PIN is not it.
        manual = httpx.post(
            f"{url(gate)}/api/manual", json={"guard": "g1", "reason": "delivery", "pin": LIU_PIN}, timeout=20
        )
        assert manual.status_code == 403
        assert not gate.relay_ever_energised()
    finally:
        gate.stop()


def test_bad_sheets_are_refused_with_a_reason_and_the_gate_goes_on(
    tmp_path: Path, broker: Broker, mqtt_client_factory: ClientFactory, unique_name: str
):
    gate = screen_gate(tmp_path, unique_name, broker)
    console = mqtt_client_factory(broker.add_console(f"c{unique_name}"))
    topic = GateTopics(SITE, unique_name).duty
    try:
        assert gate.agent.link.wait_connected(15)
        desk = gate.agent.duty
        good = duty_sheet(SITE, unique_name, SHIFTS, PINS)
        for payload in (
            b"\xff\xfe not utf-8",
            b"not json",
            b"[1, 2]",
            b'{"v": 1, "site": "x"}',
            b"{" * 10_000,
            encode_sheet(good).replace(b'"p-wang"', b'"p wang!"'),
        ):
            console.publish(topic, payload)
        assert wait_until(lambda: desk.sheets.rejected == 6, 10), desk.sheets.last_rejection
        assert desk.sheet is None
        other = duty_sheet(SITE, "another-gate", SHIFTS, PINS)
        console.publish(topic, encode_sheet(other))
        console.publish(topic, encode_sheet(good), retain=True)
        assert wait_until(lambda: desk.sheet is not None, 10)
        assert desk.sheet == good
        older = duty_sheet(SITE, unique_name, SHIFTS[:1], issued_at=good.issued_at - timedelta(hours=1))
        console.publish(topic, encode_sheet(older))
        time.sleep(0.5)
        assert desk.sheet == good  # the newest by issued_at stays
        assert httpx.get(f"{url(gate)}/healthz", timeout=10).json()["ok"] is True
        assert gate.agent.link.connected
    finally:
        gate.stop()


def test_a_sheet_past_valid_until_shows_no_roster(tmp_path: Path, unique_name: str):
    gate = screen_gate(tmp_path, unique_name)
    try:
        past = datetime.now(UTC) - timedelta(hours=30)
        sheet = duty_sheet(SITE, unique_name, [Shift("p-wang", "王芳", 0, 8)], PINS, now=past)
        gate.agent.duty.on_sheet("", encode_sheet(sheet))
        assert gate.agent.duty.sheet is not None
        panel = httpx.get(f"{url(gate)}/api/duty", timeout=10).json()
        assert (panel["roster"], panel["now"], panel["next"]) == ("stale", [], [])
        page = httpx.get(f"{url(gate)}/", timeout=10).text
        assert (
            'data-roster="stale"' in page and "王芳" not in page.split('id="duty-now"')[1].split("</ul>")[0]
        )
    finally:
        gate.stop()


def test_the_sheet_arrives_through_the_failover_broker(tmp_path: Path, broker: Broker, unique_name: str):
    """The duty topic is in the link's subscriptions, so the broker the gate moved to delivers it too."""
    from broker.launcher import free_port
    from broker.twin import copy_identity
    from tests.conftest import MqttTestClient

    second_port = free_port()
    config = gate_config(
        tmp_path,
        unique_name,
        broker=broker,
        guard_pin_hash=GUARD_PIN_HASH,
        failover=[f"127.0.0.1:{second_port}"],
    )
    console_creds = broker.add_console(f"c{unique_name}")
    copy_identity(broker.state_dir, tmp_path / "second")  # same CA, same accounts (broker/twin.py)
    second = Broker(tmp_path / "second", tls_port=second_port)
    second.start()
    gate = DutyGate(config)
    console = MqttTestClient(second.endpoint(console_creds))
    try:
        assert gate.agent.link.wait_connected(15)
        broker.kill()
        assert wait_until(lambda: gate.agent.link.connected and gate.agent.link.brokers.index == 1, 30)
        console.connect()
        sheet = duty_sheet(SITE, unique_name, SHIFTS, PINS)
        assert not console.publish(
            GateTopics(SITE, unique_name).duty, encode_sheet(sheet), retain=True
        ).is_failure
        assert wait_until(lambda: gate.agent.duty.sheet == sheet, 15)
        assert "王芳" in httpx.get(f"{url(gate)}/", timeout=10).text
    finally:
        console.close()
        gate.stop()
        second.stop()


def test_in_a_browser_the_panel_lists_the_roster_and_the_pin_form_checks_in(
    tmp_path: Path, unique_name: str, browser_page: object
):
    """Chromium (Playwright): the script builds the panel, the dialog posts the PIN, no CSP violation."""
    page: Any = browser_page
    gate = screen_gate(tmp_path, unique_name)
    problems: list[str] = []
    page.on("console", lambda m: problems.append(m.text) if "Content Security Policy" in m.text else None)
    try:
        gate.agent.duty.on_sheet("", encode_sheet(duty_sheet(SITE, unique_name, SHIFTS, PINS)))
        page.goto(f"{url(gate)}/")
        page.wait_for_selector('#duty-now li[data-person="p-wang"].out')
        page.click("#open-duty")
        page.select_option("#duty-person", "p-wang")
        page.fill("#duty-form input[name=pin]", WANG_PIN)
        page.click("#duty-form button.go")
        page.wait_for_selector('#duty-here li[data-person="p-wang"]')
        page.wait_for_selector('#duty-now li[data-person="p-wang"].in')
        assert page.text_content("#verdict-en") == "CHECKED IN"
        assert [e.data["method"] for e in gate.events("duty.check_in")] == ["pin"]
        assert problems == []
    finally:
        gate.stop()


def test_the_consoles_own_sheet_publisher_feeds_the_screen_and_its_pin_hash_checks_in(
    tmp_path: Path, broker: Broker, unique_name: str
):
    """End to end with the console side (console/duty_sheets.py, console/duty_pins.py): a roster
    shift under way now and a PIN set on the console reach the gate, and that PIN checks in there."""
    from zoneinfo import ZoneInfo

    from console.duty_pins import hash_duty_pin
    from console.duty_sheets import DutySheetPublisher
    from console.roster.model import Person, Team
    from console.roster.store import RosterStore
    from console.store import EventStore

    zone = ZoneInfo("Asia/Shanghai")
    local = datetime.now(zone)
    monday = (local - timedelta(days=local.weekday())).date()
    hour = local.weekday() * 24 + local.hour  # the roster's week hour under way now
    post = f"{SITE}/{unique_name}"
    gate = screen_gate(tmp_path, unique_name, broker)
    console = broker.endpoint(broker.add_console(f"c{unique_name}"))
    with EventStore(tmp_path / "events.db") as store:
        roster = RosterStore(store.db)
        roster.put_people(
            [Person("g1", "Li Na", Team.GUARD, frozenset({post}), frozenset(range(168)), trained=True)]
        )
        roster.replace_week(
            monday, {("g1", post): frozenset({hour})}, status="draft", made_by="test", summary={}
        )
        roster.set_pin("g1", hash_duty_pin("246810"), "test")
        publisher = DutySheetPublisher(console, store.db, zone, poll_s=0.1).start()
        try:
            assert wait_until(lambda: gate.agent.duty.sheet is not None, 20)
            page = httpx.get(f"{url(gate)}/", timeout=10).text
            assert "Li Na" in page.split('id="duty-now"')[1].split("</ul>")[0]
            answer = pin(gate, "246810")
            assert answer.status_code == 200, answer.text
            check = gate.events("duty.check_in")[0].data
            assert (check["person"], check["method"], check["rostered"]) == ("g1", "pin", True)
        finally:
            publisher.stop()
            gate.stop()
