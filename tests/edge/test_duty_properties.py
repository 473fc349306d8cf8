"""Properties of duty credentials: they never open, whatever the entry; who is in survives a restart."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from console.credentials import CardRegistry
from edge.agent import Presented
from protocol.credentials import CardEntry
from protocol.duty import DUTY_CHECK_IN, DUTY_CHECK_OUT, DUTY_REFUSED, PATROL_CHECKIN, encode_sheet
from protocol.topics import GateTopics
from simulator.duty import Shift, duty_sheet
from tests.edge.duty_support import SITE, STAFF, DutyGate, card, gate_config, pin_hashes, settle

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

NOW = datetime.now(UTC).replace(microsecond=0)
DUTY_EVENTS = {DUTY_CHECK_IN, DUTY_CHECK_OUT, DUTY_REFUSED, PATROL_CHECKIN}

units = st.one_of(
    st.sampled_from(["staff", "patrol"]).flatmap(
        lambda role: st.from_regex(r"[A-Za-z0-9._-]{1,40}", fullmatch=True).map(lambda p: f"{role}:{p}")
    ),
    st.text(max_size=30),  # anything else: bad_unit
)
offsets = st.one_of(st.none(), st.integers(-72, 72).map(lambda h: NOW + timedelta(hours=h)))
windows = st.one_of(
    st.none(), st.tuples(st.integers(0, 1439), st.integers(0, 1439)).filter(lambda w: w[0] != w[1])
)


@st.composite
def duty_entries(draw: st.DrawFn) -> list[CardEntry]:
    count = draw(st.integers(1, 6))
    numbers = draw(st.lists(st.integers(6000, 6999), min_size=count, max_size=count, unique=True))
    entries = []
    for number in numbers:
        window = draw(windows)
        valid_from, valid_until = draw(offsets), draw(offsets)
        if valid_from is not None and valid_until is not None and valid_until <= valid_from:
            valid_from, valid_until = (
                valid_until - timedelta(hours=1),
                valid_from,
            )  # the list demands from < until
        entries.append(
            CardEntry(
                f"duty:wiegand26:13:{number}",
                holder=draw(st.text(max_size=20)),
                unit=draw(units),
                valid_from=valid_from,
                valid_until=valid_until,
                window_start=window[0] if window else None,
                window_end=window[1] if window else None,
                zones=draw(st.integers(0, 3)),
            )
        )
    return entries


def test_no_duty_credential_ever_opens_the_door(tmp_path: Path, unique_name: str):
    """Random duty entries (good and bad units, in and out of validity and window), also on the
    allow-list and as door cards: every presentation is exactly one duty event and no opening."""
    allow = {"access": {"allow": [f"wiegand26:13:{n}" for n in range(6000, 7000)], "repeat_s": 0}}
    gate = DutyGate(gate_config(tmp_path, unique_name, readers=allow))  # on the allow-list: duty must win
    registry = CardRegistry(tmp_path / f"{unique_name}-registry.db")  # the one gate_config filled
    store = gate.agent.decider.cards
    try:

        @settings(max_examples=30, deadline=None, suppress_health_check=list(HealthCheck))
        @given(entries=duty_entries(), also_door_card=st.booleans(), repeats=st.integers(1, 3))
        def presentations(entries: list[CardEntry], also_door_card: bool, repeats: int) -> None:
            plain = [e.credential.removeprefix("duty:") for e in entries]
            door_cards = [CardEntry(c, holder="x", unit="1-1") for c in plain] if also_door_card else []
            registry.put([*entries, *door_cards])
            with gate.agent.decider.cards_lock:
                store.apply_snapshot_chunks(registry.snapshot())
            before = len(gate.events())
            for _ in range(repeats):
                for credential in plain:
                    decision = gate.agent.present(
                        Presented(credential, "card", "reader", time.monotonic_ns(), credential)
                    )
                    assert decision is not None and decision.granted is False and decision.duty in DUTY_EVENTS
            new = gate.events()[before:]
            assert len([e for e in new if e.type in DUTY_EVENTS]) == repeats * len(plain)
            assert not [e for e in new if e.type in ("access.scan", "door.unlocked")]
            registry.remove([*(e.credential for e in entries), *(c.credential for c in door_cards)])

        presentations()
        settle()
        assert not gate.relay_ever_energised()
    finally:
        gate.stop()


def test_who_is_checked_in_and_the_sheet_survive_a_restart_without_network(tmp_path: Path, unique_name: str):
    config = gate_config(tmp_path, unique_name)
    gate = DutyGate(config)
    sheet = duty_sheet(
        SITE, unique_name, [Shift("p-wang", "王芳", -1, 8)], pin_hashes({"p-wang": ("王芳", "135790")})
    )
    try:
        gate.agent.duty.on_sheet(GateTopics(SITE, unique_name).duty, encode_sheet(sheet))
        gate.agent.present(Presented(card(STAFF), "card", "gate-in", time.monotonic_ns(), card(STAFF)))
        assert gate.events(DUTY_CHECK_IN)[0].data["rostered"] is True
    finally:
        gate.stop()
    time.sleep(1.0)
    again = DutyGate(config, gate.factory)  # a new agent on the same files: a restart, network still down
    try:
        assert again.agent.duty.sheet == sheet
        panel = again.agent.duty.panel(datetime.now(UTC))
        assert [(s["person"], s["checked_in"]) for s in panel["now"]] == [("p-wang", True)]
        again.agent.present(Presented(card(STAFF), "card", "gate-in", time.monotonic_ns(), card(STAFF)))
        out = again.events(DUTY_CHECK_OUT)
        assert len(out) == 1 and out[0].data["person"] == "p-wang" and out[0].data["on_duty_s"] >= 1.0
        assert len(again.events(DUTY_CHECK_IN)) == 1  # the one from before the restart, still owed
    finally:
        again.stop()
