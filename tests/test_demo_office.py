"""The demo's site office: a real office whose passes get, at a real gate state, the answers meant.

And the demo's present page, with a real event store behind it: the gate's decision is
found by the serial the pass names, said in the page's language, and the same pass is
not shown again before the gate would take it as a new presentation.
"""

from __future__ import annotations

import sqlite3
import stat
import threading
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest

from console.passes.office import Office, PassRequest, gate_state_from
from console.store import EventStore
from edge.config import AccessConfig
from gatepost.demo_office import PASSPHRASE_FILE, DemoOffice, offered_passes, reason_label
from protocol import Event
from protocol.passes import Role, decide
from protocol.passes.decision import ClockReading
from protocol.passes.keys import load_site_secret
from simulator.present_page import PresentPage

pytestmark = pytest.mark.timeout(60)


@pytest.fixture(scope="module")
def made(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, DemoOffice]:
    state = tmp_path_factory.mktemp("demo")
    return state, DemoOffice.open_or_create(state, site="longtan", timezone="Asia/Shanghai", residents=4)


def test_the_gates_answer_the_demo_offices_passes_as_meant(made: tuple[Path, DemoOffice]) -> None:
    _state, office = made
    gate = gate_state_from(office.folder / "public", site_secret=load_site_secret(office.site_secret))
    now = ClockReading(datetime.now(UTC), True)
    assert all(decide(code, now, gate).granted for code in office.corpus.genuine)
    for reason, codes in office.corpus.refused.items():
        for code in codes:
            decision = decide(code, now, gate)
            assert not decision.granted
            assert decision.reason.value == reason or (reason, decision.reason.value) == (
                "bad_signature",
                "malformed",
            )
    code = office.phone_code(now.wall)
    assert decide(code, now, gate).granted


def test_the_office_is_a_real_one_its_passphrase_opens_the_root_and_a_rerun_keeps_it(
    made: tuple[Path, DemoOffice],
) -> None:
    state, office = made
    assert office.created and len(office.passphrase) >= 16
    assert stat.S_IMODE((state / PASSPHRASE_FILE).stat().st_mode) == 0o600
    with Office.open(office.folder) as real:
        real.unlock_root(office.passphrase)  # the printed passphrase is the root's
        issued = real.issue(PassRequest(holder="Newcomer", unit="1-1-101", role=Role.VISITOR))
        assert issued.pass_.serial == len(real.search("", 1000))  # the residents are in its register
    again = DemoOffice.open_or_create(state, site="longtan", timezone="Asia/Shanghai")
    assert not again.created and again.corpus == office.corpus and again.passphrase == office.passphrase
    offered = offered_passes(again)
    assert offered[0].holder == "Newcomer"
    revoked = [p for p in offered if p.revoked]
    assert len(revoked) == 3 and {p.code for p in revoked} == set(office.corpus.refused["revoked"])


class Gate:
    """A scanner whose gate answers at once, into a real store, as an agent would through the console."""

    def __init__(self, store: EventStore, reason: str) -> None:
        self.store = store
        self.reason = reason
        self.typed: list[tuple[str, float]] = []
        self.seq = 0

    def type(self, code: str) -> int:
        from simulator.present_page import _serial_of

        self.typed.append((code, time.monotonic()))
        self.seq += 1
        data = {"credential": "pass", "granted": self.reason == "granted", "reason": self.reason}
        serial = _serial_of(code)
        data |= {"serial": serial, "holder": "王芳"} if serial is not None else {"code": code}
        event = Event(
            id=uuid.uuid4().hex,
            site="longtan",
            gate="east",
            boot="b" * 32,
            seq=self.seq,
            time=datetime.now(UTC),
            clock_trusted=True,
            type="access.scan",
            data=data,
        )
        threading.Timer(0.3, self.store.commit, args=([event],)).start()
        return 0


def test_the_present_page_shows_the_gates_answer_in_words_and_waits_before_showing_again(
    made: tuple[Path, DemoOffice], tmp_path: Path
) -> None:
    _state, office = made
    store = EventStore(tmp_path / "events.db")
    store.last_events(1)  # tables made
    gate = Gate(store, "revoked")

    def rows(sql: str, params: object = ()) -> list[tuple]:  # as SimulatedSite.console_rows reads
        con = sqlite3.connect(tmp_path / "events.db", timeout=10)
        try:
            return con.execute(sql, tuple(params)).fetchall()  # type: ignore[arg-type]
        finally:
            con.close()

    page = PresentPage(
        {"east": gate}, rows, passes=lambda: offered_passes(office), reason_label=reason_label, wait_s=5
    )
    url = page.start()
    try:
        serial = str(offered_passes(office)[0].serial)
        zh = httpx.post(f"{url}present?lang=zh", data={"gate": "east", "serial": serial}, timeout=20)
        assert zh.status_code == 200
        assert "east：拒绝，已吊销 (王芳)" in zh.text and 'data-reason="revoked"' in zh.text
        en = httpx.post(f"{url}present?lang=en", data={"gate": "east", "serial": serial}, timeout=20)
        assert "east: refused, revoked (王芳)" in en.text
        (_code, first), (_again, second) = gate.typed
        assert second - first >= AccessConfig().repeat_s  # else the gate's repeat filter drops it, no event
        gate.reason = "unknown"
        garbage = httpx.post(f"{url}present", data={"gate": "east", "code": "WIFI:S:home;;"}, timeout=20)
        assert "refused, unknown code" in garbage.text
        bad = httpx.post(f"{url}present", data={"gate": "west", "code": "1"}, timeout=20)
        assert bad.status_code == 400 and "no simulated scanner gate west" in bad.text
    finally:
        page.stop()
        store.close()


def test_the_demos_gates_take_photos_and_doors_the_card_list(tmp_path: Path) -> None:
    from edge.config import load_config as load_gate_config
    from gatepost.demo import _set_table
    from gatepost.demo_office import configure_gates
    from simulator.site import SimulatedSite

    site = SimulatedSite(tmp_path, gates=["north"], door_gates=["building-3"])
    configure_gates(site, ["north"], _set_table, doors=["building-3"], timezone="Europe/Berlin")
    gate = load_gate_config(site.gate_config("north"))
    door = load_gate_config(site.gate_config("building-3"))
    assert gate.photos is not None and gate.photos.dir == site.gate_config("north").parent / "photos"
    assert door.cards is not None and door.cards.timezone == "Europe/Berlin"
    assert door.access.allow  # the simulated residents' cards still open it
