"""The guard screen's findings of issue 13, each tried the way an attacker would.

- a 4-digit PIN falls in about 1.4 days: PINs now have at least six digits;
- one fixed 60 s lock for the whole screen: the pause now doubles per source, so a
  brute force takes centuries, and the guard at the screen is not kept out by the
  network's failures;
- PIN failures raised no alarm: a pause is a ``guard.pin_lockout`` event, and the
  console raises an alarm for it;
- no CSP, frame or nosniff headers: every response has them, and a page that frames the
  screen gets nothing.

Everything runs on loopback: the "remote" attacker connects from 127.0.0.2, which the
screen counts apart from the kiosk's 127.0.0.1.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Page

from console.alarms import AlarmBook, AlarmKind
from console.store import EventStore
from edge.guard.pin import PinGate, PinOutcome, hash_pin, lockout_after
from protocol.configfile import EXIT_BAD_CONFIG
from tests.edge.guard.conftest import PIN, PIN_HASH, GuardGate
from tests.waiting import wait_until

MANUAL = {"pin": PIN, "guard": "张师傅 07", "reason": "delivery", "note": ""}
ATTACKER = "127.0.0.2"
"""A source address on loopback other than the kiosk's: the screen counts it as the network."""
YEAR_S = 365.25 * 86400


@pytest.fixture
def gate(tmp_path: Path) -> Iterator[GuardGate]:
    gate = GuardGate(tmp_path)
    try:
        yield gate
    finally:
        gate.close()


def gatepost(*args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gatepost", *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


# -- a PIN of at least six digits ----------------------------------------------------------


def test_a_short_pin_is_refused_by_hash_pin_and_by_the_configuration_check(tmp_path: Path):
    short = gatepost("edge", "hash-pin", stdin="2468\n2468\n")
    assert short.returncode == 2 and "6 to 12 digits" in short.stderr and "pin_hash" not in short.stdout
    good = gatepost("edge", "hash-pin", stdin="24681357\n24681357\n")
    assert good.returncode == 0 and good.stdout.strip().startswith('pin_hash = "scrypt$')
    assert good.stdout.strip().endswith('$8"')

    config = tmp_path / "gate.toml"
    four = hash_pin(PIN, n=2**4).rsplit("$", 1)[0] + "$4"  # a hand-made hash of a 4-digit PIN
    config.write_text(f'site = "s"\ngate = "g"\n\n[guard_screen]\npin_hash = "{four}"\n', encoding="utf-8")
    refused = gatepost("edge", "check-config", str(config))
    assert refused.returncode == EXIT_BAD_CONFIG
    assert f"{config}:5: guard_screen.pin_hash: pin_hash is of a 4-digit PIN" in refused.stderr

    # A hash from before lengths were recorded: the gate still runs, the check says what to do.
    legacy = PIN_HASH.rsplit("$", 1)[0]
    config.write_text(f'site = "s"\ngate = "g"\n\n[guard_screen]\npin_hash = "{legacy}"\n', encoding="utf-8")
    warned = gatepost("edge", "check-config", str(config))
    assert warned.returncode == 0
    assert f"{config}:5: guard_screen.pin_hash: warning:" in warned.stderr and "hash-pin" in warned.stderr
    assert PinGate(legacy).check("2468").outcome is PinOutcome.TOO_SHORT


# -- a pause that grows per source ---------------------------------------------------------


def test_guessing_the_pin_as_fast_as_the_screen_allows_takes_centuries():
    """The attacker's best: the next guess the moment the pause ends, one source or many."""
    now = [0.0]
    gate = PinGate(
        hash_pin(PIN, n=2**4), clock=lambda: now[0]
    )  # the default 5 tries, 60 s doubling, 1 day cap
    for i in range(2000):
        check = gate.check(f"{i:06d}" if f"{i:06d}" != PIN else "999999", f"198.51.100.{i % 250}")
        assert check.outcome in (PinOutcome.WRONG, PinOutcome.LOCKED)
        now[0] += check.locked_for_s
    assert now[0] > 5 * YEAR_S  # 2,000 of the million PINs: more than five years

    # Half the PINs, on average, before the right one: by the schedule, over a thousand years.
    expected = sum(lockout_after(n, attempts=5, lockout_s=60, max_lockout_s=86400) for n in range(1, 500_000))
    assert expected / YEAR_S > 1000


def test_a_remote_attacker_locks_only_the_network_not_the_guard_at_the_screen(gate: GuardGate):
    attacker = httpx.Client(transport=httpx.HTTPTransport(local_address=ATTACKER), timeout=10)
    try:
        codes = [
            attacker.post(f"{gate.url}/api/manual", json={**MANUAL, "pin": "135790"}).status_code
            for _ in range(7)
        ]
        assert codes == [403, 403, 403, 403, 429, 429, 429]
        assert attacker.post(f"{gate.url}/api/manual", json=MANUAL).status_code == 429  # even the right PIN
    finally:
        attacker.close()
    rejected = gate.events("guard.pin_rejected")
    assert {(e.data["source"], e.data["address"]) for e in rejected} == {("remote", ATTACKER)}

    guard = gate.post("/api/manual", MANUAL)  # the kiosk, from 127.0.0.1
    assert guard.status_code == 200, guard.text
    assert wait_until(lambda: gate.door is not None and gate.door.relay_energised)


# -- an alarm at the console ---------------------------------------------------------------


def test_a_pin_lockout_raises_an_alarm_at_the_console(gate: GuardGate, tmp_path: Path):
    for _ in range(5):
        gate.post("/api/manual", {**MANUAL, "pin": "135790"})
    [lockout] = gate.events("guard.pin_lockout")
    assert lockout.data["failures"] == 5 and lockout.data["locked_for_s"] == 60.0
    assert lockout.data["source"] == "local"

    store = EventStore(tmp_path / "console.db")
    try:
        store.commit(gate.events())  # what the console stores of the gate's outbox
        book = AlarmBook(store.db)
        raised = book.observe_events(store.events_after(0, limit=1000))
        assert [(a.kind, a.gate, a.event_id) for a in raised] == [
            (AlarmKind.GUARD_PIN_LOCKOUT, "north", lockout.id)
        ]
        assert book.observe_events(store.events_after(0, limit=1000)) == []  # once, however often read
    finally:
        store.close()


# -- security headers ----------------------------------------------------------------------

EXPECTED = {
    "x-frame-options": "DENY",
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
}


def assert_hardened(response: httpx.Response) -> None:
    for name, value in EXPECTED.items():
        assert response.headers.get(name) == value, (response.request.url, name)
    policy = response.headers.get("content-security-policy", "")
    for directive in ("default-src 'none'", "script-src 'self'", "frame-ancestors 'none'", "base-uri 'none'"):
        assert directive in policy, (response.request.url, policy)
    assert "unsafe-inline" not in policy and "unsafe-eval" not in policy


def test_every_guard_screen_response_carries_the_security_headers(gate: GuardGate):
    with httpx.Client(timeout=10) as client:
        responses = [
            client.get(f"{gate.url}/"),
            client.get(f"{gate.url}/static/guard.js"),
            client.get(f"{gate.url}/static/guard.css"),
            client.get(f"{gate.url}/photo/{gate.photo_hex}.jpg"),
            client.get(f"{gate.url}/photo/{'0' * 32}.jpg"),
            client.get(f"{gate.url}/healthz"),
            client.get(f"{gate.url}/no-such-page"),
            client.post(f"{gate.url}/api/manual", content=b"pin=1", headers={"content-type": "text/plain"}),
            client.post(f"{gate.url}/api/manual", json={**MANUAL, "pin": "135790"}),
            client.get(f"{gate.url}/", headers={"host": "attacker.example"}),  # refused by the Host check
        ]
        with client.stream("GET", f"{gate.url}/events") as stream:
            responses.append(stream)
    assert [r.status_code for r in responses] == [200, 200, 200, 200, 404, 200, 404, 415, 403, 400, 200]
    for response in responses:
        assert_hardened(response)


def test_a_page_elsewhere_cannot_frame_the_guard_screen(gate: GuardGate, browser_page: Page):
    """Clickjacking the PIN form: the browser refuses to show the screen inside another page."""
    browser_page.set_content(f'<iframe id="f" src="{gate.url}/" width="800" height="600"></iframe>')
    browser_page.wait_for_timeout(1000)
    frame = browser_page.frame_locator("#f")
    assert frame.locator("#open-manual").count() == 0  # the screen's buttons never rendered in the frame
    direct = browser_page.goto(f"{gate.url}/")
    assert direct is not None and direct.ok
    assert browser_page.locator("#open-manual").count() == 1  # the same page loads on its own
