"""The guard screen in a real Chromium: a scan arriving live, a manual let-through, a visitor pass.

Every page runs under the screen's Content-Security-Policy, and any violation Chromium
reports (a blocked inline script or style, a blocked load) fails the test: the policy
must be one the page really works under.

Set ``GATEPOST_SCREENSHOTS=docs/screenshots`` to refresh the screenshots in the docs;
otherwise they go to the test's temporary folder.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from protocol.credentials import CardEntry
from tests.waiting import wait_until

from .conftest import PIN, RESIDENT_CARD, GuardGate

EXPIRED_CARD = "wiegand26:13:1002"


@pytest.fixture
def gate(tmp_path: Path):
    now = datetime.now(UTC).replace(microsecond=0)
    gate = GuardGate(
        tmp_path,
        cards=[
            CardEntry(RESIDENT_CARD, holder="李华", unit="5-1-302"),
            CardEntry(
                EXPIRED_CARD,
                holder="张伟",
                unit="5-1-303",
                valid_until=now - timedelta(days=2),
                photo_digest="ab" * 16,  # not delivered to this gate: the placeholder shows
            ),
        ],
    )
    from console.credentials import (
        CardRegistry,
    )  # the resident's card gains a photo, as the console would send

    registry = CardRegistry(tmp_path / "registry.db")
    registry.put([CardEntry(RESIDENT_CARD, holder="李华", unit="5-1-302", photo_digest=gate.photo_hex)])
    gate.agent.decider.cards.apply_snapshot_chunks(registry.snapshot())
    try:
        yield gate
    finally:
        gate.close()


@pytest.fixture
def page(browser_page: Page) -> Iterator[Page]:
    """The shared browser page, failing the test on any Content-Security-Policy violation."""
    violations: list[str] = []
    browser_page.expose_function("gatepostCspViolation", lambda text: violations.append(text))
    browser_page.add_init_script(
        "document.addEventListener('securitypolicyviolation', (e) =>"
        " window.gatepostCspViolation(`${e.effectiveDirective} blocked ${e.blockedURI} at ${e.sourceFile}:${e.lineNumber}`));"
    )
    browser_page.on(
        "console",
        lambda message: (
            violations.append(message.text) if "Content Security Policy" in message.text else None
        ),
    )
    yield browser_page
    browser_page.wait_for_timeout(100)  # a report raised by the last action arrives asynchronously
    assert violations == [], f"the page broke its Content-Security-Policy: {violations}"


def shots(tmp_path: Path) -> Path:
    folder = Path(os.environ.get("GATEPOST_SCREENSHOTS") or tmp_path)
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def test_scans_arrive_live_and_the_guard_acts(gate: GuardGate, page: Page, tmp_path: Path):
    folder = shots(tmp_path)
    response = page.goto(gate.url + "/")
    assert response is not None and "script-src 'self'" in response.headers["content-security-policy"]
    expect(page.locator("#link")).to_have_class("link up")
    expect(page.locator("#panel")).to_have_class("idle")

    # A resident's card: green, both languages, name, unit, photo.
    gate.scan(RESIDENT_CARD, kind="card", reader="door-reader")
    panel = page.locator("#panel")
    expect(panel).to_have_class("granted")
    expect(page.locator("#verdict-zh")).to_have_text("通行")
    expect(page.locator("#verdict-en")).to_have_text("GRANTED")
    expect(page.locator("#reason-zh")).to_have_text("准许通行")
    expect(page.locator("#reason-en")).to_have_text("Access granted")
    expect(page.locator("#facts")).to_contain_text("李华")
    expect(page.locator("#facts")).to_contain_text("5-1-302")
    expect(page.locator("#photo-img")).to_be_visible()
    assert page.locator("#photo-img").evaluate("img => img.complete && img.naturalWidth > 0")
    page.screenshot(path=str(folder / "guard-granted.png"))

    # An expired card: red, the reason in both languages, the no-photo placeholder.
    gate.scan(EXPIRED_CARD, kind="card", reader="door-reader")
    expect(panel).to_have_class("denied")
    expect(page.locator("#reason-zh")).to_have_text("通行证已过期")
    expect(page.locator("#reason-en")).to_have_text("Pass expired")
    expect(page.locator("#no-photo")).to_be_visible()
    page.screenshot(path=str(folder / "guard-denied.png"))

    # The interface language switches; the reason stays in both.
    expect(page.locator("#open-manual")).to_have_text("人工放行")
    page.click("#lang")
    expect(page.locator("#open-manual")).to_have_text("Manual let-through")
    expect(page.locator("#reason-zh")).to_have_text("通行证已过期")

    # Manual let-through: a wrong PIN is refused on the form, the right one opens the door.
    page.click("#open-manual")
    form = page.locator("#manual-form")
    form.locator("select[name=reason]").select_option("forgot_pass")
    form.locator("input[name=guard]").fill("张师傅 07")
    form.locator("input[name=pin]").fill("000000")
    form.locator("button[type=submit]").click()
    expect(form.locator(".message")).to_have_text("Wrong PIN.")
    assert gate.events("access.manual") == [] and gate.events("guard.pin_rejected")
    form.locator("input[name=pin]").fill(PIN)
    form.locator("button[type=submit]").click()
    expect(form.locator(".message")).to_have_text("Recorded. The door is open for 1 s.")
    expect(panel).to_have_class("manual")
    expect(page.locator("#facts")).to_contain_text("张师傅 07")
    assert wait_until(lambda: gate.events("access.manual"))
    assert gate.events("access.manual")[0].data["reason"] == "forgot_pass"
    expect(page.locator("#manual-dialog")).not_to_be_visible()

    # Visitor registration: a QR code and the code on screen, then the code opens the gate.
    page.click("#lang")  # back to Chinese for the screenshot
    page.click("#open-visitor")
    visitor = page.locator("#visitor-form")
    visitor.locator("input[name=name]").fill("刘女士")
    visitor.locator("input[name=unit]").fill("3-2-501")
    visitor.locator("input[name=phone]").fill("12")
    visitor.locator("input[name=reason]").fill("探亲")
    visitor.locator("input[name=guard]").fill("07")
    visitor.locator("input[name=pin]").fill(PIN)
    visitor.locator("button[type=submit]").click()
    expect(visitor.locator(".message")).to_have_text("请检查电话：5 到 15 位数字。")
    expect(visitor.locator("input[name=phone]")).to_have_attribute("aria-invalid", "true")
    visitor.locator("input[name=phone]").fill("138 0013 8000")
    visitor.locator("button[type=submit]").click()
    expect(page.locator("#visitor-slip")).to_be_visible()
    expect(page.locator("#slip-qr svg")).to_be_visible()
    expect(page.locator("#slip-phone")).to_have_text("*******8000")
    code = page.locator("#slip-code").get_attribute("data-code")
    assert code is not None and len(code) == 14
    page.screenshot(path=str(folder / "guard-visitor.png"))
    page.locator("#visitor-slip .cancel").click()

    gate.scan(code)
    expect(panel).to_have_class("granted")
    expect(page.locator("#facts")).to_contain_text("刘女士")
    expect(page.locator("#facts")).to_contain_text("访客 · Visitor")


def test_the_screen_goes_back_to_idle_and_a_reloaded_page_shows_the_current_decision(
    tmp_path: Path, page: Page
):
    gate = GuardGate(tmp_path, door=False, idle_s=1.5)
    try:
        page.goto(gate.url + "/")
        expect(page.locator("#link")).to_have_class("link up")
        gate.scan("999999")
        expect(page.locator("#panel")).to_have_class("denied")
        page.reload()  # a kiosk restarted mid-decision still shows it
        expect(page.locator("#panel")).to_have_class("denied")
        expect(page.locator("#reason-en")).to_have_text("Not a pass of this site")
        expect(page.locator("#panel")).to_have_class("idle", timeout=5000)
    finally:
        gate.close()
