"""Plate decisions: residents from the card list, visitor vehicles, the blacklist, near misses.

The two properties that matter most are checked over generated plates: a plate that is
not exactly registered never opens, and a plate one character off a registered one is
always a near miss for the guard, never a grant.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from console.credentials import CardRegistry
from edge.credentials import CardStore
from edge.decision import AllowList, CardPolicy, GateDecider
from edge.plate_decisions import BLOCK_PREFIX, VehicleBook, VehicleRequest, blocked
from edge.visitors import FieldProblem, VisitorError
from protocol.credentials import CardEntry
from protocol.passes import ClockReading, Flag, Reason
from protocol.plates import PROVINCES, parse_plate

NOW = datetime(2026, 12, 7, 2, 0, tzinfo=UTC)  # 10:00 in Beijing
RESIDENT = parse_plate("京A12345")
NIGHT_ONLY = parse_plate("京B88888")
GREEN = parse_plate("沪AD12345")
LISTED = parse_plate("粤B54321")
SERIAL = "ABCDEFGHJKLMNPQRSTUVWXYZ0123456789"


def at(moment: datetime = NOW, trusted: bool = True) -> ClockReading:
    return ClockReading(moment, trusted)


def residents() -> list[CardEntry]:
    return [
        CardEntry(RESIDENT.credential, "王先生", "3-2-501"),
        CardEntry(NIGHT_ONLY.credential, "夜班", "1-1-101", window_start=20 * 60, window_end=6 * 60),
        CardEntry(GREEN.credential, "李女士", "5-1-302", valid_until=NOW + timedelta(days=30)),
        CardEntry(blocked(LISTED.credential), "stolen, police notice 2026-118", ""),
        CardEntry("wiegand26:13:1001", "门卡", "3-2-501"),
    ]


def gate_cards(tmp_path: Path, entries: list[CardEntry]) -> CardStore:
    registry = CardRegistry(tmp_path / "registry.db")
    registry.put(entries)
    store = CardStore(tmp_path / "cards.db")
    store.apply_snapshot_chunks(registry.snapshot())
    registry.close()
    return store


@pytest.fixture
def decider(tmp_path: Path) -> Iterator[GateDecider]:
    from zoneinfo import ZoneInfo

    store = gate_cards(tmp_path, residents())
    decider = GateDecider(AllowList(frozenset()), None, store, CardPolicy(ZoneInfo("Asia/Shanghai")))
    decider.vehicles = VehicleBook(tmp_path / "vehicles.db", now=NOW)
    yield decider
    decider.vehicles.close()
    store.close()


def visitor(plate: str, hours: float = 2) -> VehicleRequest:
    return VehicleRequest.check(
        plate=plate, unit="7-1-201", note="搬家", guard="07", hours=hours, default_hours=4
    )


def test_a_registered_resident_plate_opens_with_holder_and_unit(decider: GateDecider):
    decision = decider.decide(RESIDENT.credential, at(), "in")
    assert decision.granted and decision.reason is Reason.GRANTED
    assert (decision.card_holder, decision.card_unit, decision.vehicle) == ("王先生", "3-2-501", "resident")
    assert decision.event_fields() == {"holder": "王先生", "unit": "3-2-501", "vehicle": "resident"}


def test_resident_time_windows_and_validity_are_the_cards_rules(decider: GateDecider):
    day = decider.decide(NIGHT_ONLY.credential, at())
    assert not day.granted and day.reason is Reason.OUTSIDE_TIME_WINDOW
    night = decider.decide(NIGHT_ONLY.credential, at(NOW + timedelta(hours=12)))  # 22:00 local
    assert night.granted
    assert decider.decide(GREEN.credential, at()).granted
    expired = decider.decide(GREEN.credential, at(NOW + timedelta(days=31)))
    assert not expired.granted and expired.reason is Reason.EXPIRED


def test_a_blacklisted_plate_is_refused_with_its_reason_whatever_else_it_is(tmp_path: Path):
    store = gate_cards(
        tmp_path,
        [
            CardEntry(RESIDENT.credential, "王先生", "3-2-501"),
            CardEntry(blocked(RESIDENT.credential), "欠费"),
        ],
    )
    decider = GateDecider(AllowList(frozenset({RESIDENT.credential})), None, store)
    decision = decider.decide(RESIDENT.credential, at())
    assert not decision.granted and decision.reason is Reason.BLACKLISTED
    assert decision.event_fields() == {"detail": "欠费", "vehicle": "blacklisted"}
    store.close()


def test_a_lapsed_blacklisting_no_longer_refuses(tmp_path: Path):
    store = gate_cards(
        tmp_path,
        [
            CardEntry(RESIDENT.credential, "王先生", "3-2-501"),
            CardEntry(blocked(RESIDENT.credential), "欠费", valid_until=NOW - timedelta(hours=1)),
        ],
    )
    assert GateDecider(AllowList(frozenset()), None, store).decide(RESIDENT.credential, at()).granted
    store.close()


def test_the_blacklisted_plate_itself_is_a_blacklist_denial(decider: GateDecider):
    decision = decider.decide(LISTED.credential, at())
    assert decision.reason is Reason.BLACKLISTED and decision.detail == "stolen, police notice 2026-118"


def test_an_unregistered_plate_is_unknown(tmp_path: Path):
    decision = GateDecider(AllowList(frozenset()), None, None).decide(
        parse_plate("川A99999").credential, at()
    )
    assert not decision.granted and decision.reason is Reason.UNKNOWN and decision.vehicle == "unknown"


def test_a_plate_in_the_static_allow_list_is_a_resident_and_a_near_miss_candidate():
    plate = parse_plate("川A99999")
    decider = GateDecider(AllowList(frozenset({plate.credential, "104729"})), None, None)
    assert decider.decide(plate.credential, at()).granted
    near = decider.decide(parse_plate("川A99998").credential, at())
    assert not near.granted and near.reason is Reason.PLATE_NEAR_MISS and near.resembles == "川A99999"
    assert decider.decide("104729", at()).granted  # the rest of the allow-list is untouched


def test_a_malformed_plate_credential_is_refused_as_malformed(decider: GateDecider):
    for credential in ("plate:XX-A12345", "plate:BJ-AI2345", "plate:", "plate:BJ-A12345-NOPE"):
        decision = decider.decide(credential, at())
        assert not decision.granted and decision.reason is Reason.MALFORMED


def test_a_near_miss_names_the_plate_it_resembles_and_does_not_open(decider: GateDecider):
    misread = parse_plate("京A12346")
    decision = decider.decide(misread.credential, at())
    assert not decision.granted and decision.reason is Reason.PLATE_NEAR_MISS
    assert decision.resembles == "京A12345"
    assert decision.event_fields()["resembles"] == "京A12345"


def test_a_near_miss_of_a_blacklisted_plate_says_so(decider: GateDecider):
    decision = decider.decide(parse_plate("粤B54322").credential, at())
    assert decision.reason is Reason.PLATE_NEAR_MISS and decision.resembles == "粤B54321"
    assert decision.vehicle == "blacklisted" and "blacklisted" in decision.detail


def test_two_characters_off_is_simply_unknown(decider: GateDecider):
    decision = decider.decide(parse_plate("京A12366").credential, at())
    assert decision.reason is Reason.UNKNOWN and decision.resembles is None


def test_the_near_miss_index_follows_the_card_list(tmp_path: Path, decider: GateDecider):
    newcomer = parse_plate("浙C11111")
    assert decider.decide(parse_plate("浙C11112").credential, at()).reason is Reason.UNKNOWN
    registry = CardRegistry(tmp_path / "registry.db")
    registry.put([CardEntry(newcomer.credential, "新住户", "9-9-909")])
    decider.cards.apply_delta(registry.delta(1))
    registry.close()
    near = decider.decide(parse_plate("浙C11112").credential, at())
    assert near.reason is Reason.PLATE_NEAR_MISS and near.resembles == "浙C11111"


def test_a_visitor_vehicle_passes_until_its_expiry(decider: GateDecider):
    assert decider.decide(parse_plate("苏E12345").credential, at()).reason is Reason.UNKNOWN
    vehicle = decider.vehicles.register(visitor("苏E·12345", hours=2), "vehicle-in", NOW)
    assert (
        vehicle.event_data()["plate"] == "苏E12345"
        and vehicle.event_data()["expires"] == "2026-12-07T04:00:00Z"
    )
    for minutes in (0, 30, 119):
        decision = decider.decide(vehicle.plate.credential, at(NOW + timedelta(minutes=minutes)))
        assert decision.granted and decision.vehicle == "visitor" and decision.card_unit == "7-1-201"
    late = decider.decide(vehicle.plate.credential, at(NOW + timedelta(hours=2)))
    assert not late.granted and late.reason is Reason.EXPIRED


def test_a_visitor_vehicle_is_a_near_miss_candidate_too(decider: GateDecider):
    decider.vehicles.register(visitor("苏E12345"), "vehicle-in", NOW)
    decision = decider.decide(parse_plate("苏E12845").credential, at(NOW + timedelta(minutes=5)))
    assert decision.reason is Reason.PLATE_NEAR_MISS and decision.resembles == "苏E12345"


def test_an_untrusted_clock_flags_a_plate_decision(decider: GateDecider):
    decision = decider.decide(RESIDENT.credential, at(trusted=False))
    assert decision.granted and Flag.CLOCK_UNTRUSTED in decision.flags


def test_visitor_vehicle_requests_are_checked_field_by_field():
    cases = [
        ("plate", FieldProblem.NOT_A_PLATE, {"plate": "京A1234"}),
        ("plate", FieldProblem.NOT_A_PLATE, {"plate": "京AO2345"}),
        ("plate", FieldProblem.REQUIRED, {"plate": "  "}),
        ("plate", FieldProblem.NOT_TEXT, {"plate": 12345}),
        ("hours", FieldProblem.OUT_OF_RANGE, {"hours": "100"}),
        ("hours", FieldProblem.OUT_OF_RANGE, {"hours": "nan"}),
        ("hours", FieldProblem.OUT_OF_RANGE, {"hours": [1]}),
        ("unit", FieldProblem.REQUIRED, {"unit": ""}),
        ("guard", FieldProblem.CONTROL_CHARS, {"guard": "07\x00"}),
    ]
    base = {"plate": "京A12345", "unit": "1-1-101", "note": "", "guard": "07", "hours": "2"}
    for field, problem, change in cases:
        with pytest.raises(VisitorError) as caught:
            VehicleRequest.check(**{**base, **change}, default_hours=4)
        assert (caught.value.field, caught.value.problem) == (field, problem)


# -- the properties -------------------------------------------------------------------------

_provinces = st.sampled_from(sorted(PROVINCES))
_ordinary = st.builds(
    lambda p, a, s: parse_plate(p + a + s),
    _provinces,
    st.sampled_from("ABCDEFGHJK"),
    st.text(SERIAL, min_size=5, max_size=5),
)


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[GateDecider, set[str]]]:
    """A gate holding 300 random registered plates and 20 blacklisted ones."""
    import random

    rng = random.Random(19)
    plates = set()
    while len(plates) < 320:
        plates.add(
            parse_plate(
                rng.choice(sorted(PROVINCES)) + rng.choice("ABCDE") + "".join(rng.choices(SERIAL, k=5))
            )
        )
    ordered = sorted(plates, key=lambda p: p.text)
    entries = [CardEntry(p.credential, "h", "u") for p in ordered[:300]]
    entries += [CardEntry(blocked(p.credential), "listed") for p in ordered[300:]]
    store = gate_cards(tmp_path_factory.mktemp("generated"), entries)
    decider = GateDecider(AllowList(frozenset()), None, store)
    yield decider, {e.credential for e in entries}
    store.close()


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(plate=_ordinary)
def test_property_a_plate_not_exactly_registered_never_opens(generated, plate):
    decider, registered = generated
    decision = decider.decide(plate.credential, at())
    if plate.credential not in registered:
        assert not decision.granted, f"{plate.text} opened without being registered"
    if blocked(plate.credential) in registered:
        assert decision.reason is Reason.BLACKLISTED


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_property_one_character_off_a_registered_plate_is_a_near_miss_never_a_grant(generated, data):
    decider, registered = generated
    known = sorted(c for c in registered if not c.startswith(BLOCK_PREFIX))
    from protocol.plates import plate_from_credential

    plate = plate_from_credential(data.draw(st.sampled_from(known)))
    position = data.draw(st.integers(2, len(plate.text) - 1))  # a serial character
    other = data.draw(st.sampled_from(SERIAL).filter(lambda c: c != plate.text[position]))
    misread = parse_plate(plate.text[:position] + other + plate.text[position + 1 :])
    decision = decider.decide(misread.credential, at())
    if misread.credential in registered:
        return  # it is itself a registered plate (both exist): not a misread
    assert not decision.granted
    assert decision.reason in (Reason.PLATE_NEAR_MISS, Reason.BLACKLISTED)
    if decision.reason is Reason.PLATE_NEAR_MISS:
        assert decision.resembles is not None
