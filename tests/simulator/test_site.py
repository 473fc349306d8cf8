"""The simulated site knows when its console is listening, from the console's own retained status."""

from __future__ import annotations

from pathlib import Path

import pytest

from simulator.site import SimulatedSite

pytestmark = pytest.mark.timeout(60)


def test_waits_for_the_console_to_come_online_and_says_when_it_cannot(tmp_path: Path) -> None:
    site = SimulatedSite(tmp_path / "site", gates=["g1"], residents=2, pace=False, log_level="WARNING")
    try:
        with pytest.raises(RuntimeError):
            site.wait_console_online(timeout=1)  # no console configured yet
        console = site.start_console()
        assert site.wait_console_online(timeout=30)
        console.stop()  # its last will / clean stop turns the retained status to "stopped"
        assert not site.wait_console_online(timeout=1)
    finally:
        site.stop()


def test_a_gate_agent_stopped_by_sigterm_records_why_and_exits_cleanly(tmp_path: Path) -> None:
    """systemd stops the agent with SIGTERM: it must lock up, record the stop and exit 0, promptly."""
    import sqlite3
    import time

    site = SimulatedSite(tmp_path / "site", gates=["g1"], residents=2, pace=False, log_level="WARNING")
    try:
        site.start_broker()
        agent = site.start_gate("g1")
        assert site.wait_for(lambda: site.outbox_path("g1").exists(), timeout=20)
        time.sleep(1.0)  # past start-up, into the main loop
        began = time.monotonic()
        assert agent.stop(timeout=10) == 0
        assert time.monotonic() - began < 5.0
        db = sqlite3.connect(f"file:{site.outbox_path('g1')}?mode=ro", uri=True)
        try:
            stopped = db.execute("SELECT body FROM outbox WHERE type = 'agent.stopped'").fetchall()
        finally:
            db.close()
        assert stopped and b'"reason":"sigterm"' in bytes(stopped[-1][0])  # no console: still held
    finally:
        site.stop()


def test_an_osdp_door_at_the_site_opens_for_a_residents_card_over_the_secure_channel(tmp_path: Path) -> None:
    """The demo's OSDP door: the gate process reads the site's simulated bus with keys from its key store."""
    import sqlite3

    site = SimulatedSite(tmp_path / "site", gates=[], osdp_gates=["b7"], residents=3, log_level="WARNING")
    try:
        site.start_broker()
        site.start_gate("b7")
        bus = site.osdp_bus("b7")
        assert site.wait_for(lambda: all(r.secure_channel for r in bus.readers), timeout=30)
        facility, card = (int(part) for part in site.cards[0].split(":"))
        bus.readers[0].present_card(facility, card)
        assert site.wait_for(lambda: "green" in bus.readers[0].leds(), timeout=20)

        def scans() -> list[bytes]:
            db = sqlite3.connect(f"file:{site.outbox_path('b7')}?mode=ro", uri=True)
            try:
                return [
                    bytes(row[0]) for row in db.execute("SELECT body FROM outbox WHERE type = 'access.scan'")
                ]
            finally:
                db.close()

        assert site.wait_for(lambda: scans(), timeout=10)
        assert b'"granted":true' in scans()[0] and b'"direction":"in"' in scans()[0]
    finally:
        site.stop()
