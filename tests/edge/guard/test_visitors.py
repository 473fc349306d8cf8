"""Visitor passes: a random code good at this gate only, for one entry and one exit, until it expires."""

from __future__ import annotations

import sqlite3
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from nacl.signing import SigningKey

from edge.decision import AllowList, GateDecider
from edge.visitors import (
    CODE_DIGITS,
    FieldProblem,
    VisitorBook,
    VisitorError,
    VisitorRequest,
    is_visitor_code,
    luhn_digit,
    mask_phone,
    new_code,
)
from protocol.passes import ClockReading, Flag, GatePolicy, GateState, Reason, RevocationState, TrustStore
from protocol.passes.codec import MARKER
from protocol.passes.decision import UntrustedClockPolicy

NOW = datetime(2026, 11, 29, 10, 0, tzinfo=UTC)
REQUEST = VisitorRequest.check(
    name="刘女士", unit="3-2-501", phone="138 0013 8000", reason="探亲", guard="07"
)


def at(moment: datetime, trusted: bool = True) -> ClockReading:
    return ClockReading(moment, trusted)


@pytest.fixture
def book(tmp_path: Path):
    book = VisitorBook(tmp_path / "visitors.db", hours=4, now=NOW)
    yield book
    book.close()


def test_codes_have_the_visitor_shape_and_never_the_signed_pass_marker():
    codes = {new_code() for _ in range(200)}
    assert len(codes) == 200
    for code in codes:
        assert len(code) == CODE_DIGITS and code.isdigit() and is_visitor_code(code)
        assert not code.startswith(MARKER)


def test_a_single_mistyped_digit_is_not_a_visitor_code():
    code = new_code()
    for i in range(1, CODE_DIGITS):
        wrong = code[:i] + str((int(code[i]) + 1) % 10) + code[i + 1 :]
        assert not is_visitor_code(wrong)


def test_luhn_digit_matches_the_textbook_example():
    assert luhn_digit("7992739871") == "3"


def test_entry_then_exit_then_spent(book: VisitorBook):
    visitor = book.register(REQUEST, NOW)
    first = book.decide(visitor.code, at(NOW + timedelta(minutes=1)))
    second = book.decide(visitor.code, at(NOW + timedelta(hours=1)))
    third = book.decide(visitor.code, at(NOW + timedelta(hours=2)))
    assert first is not None and (first.granted, first.reason) == (True, Reason.GRANTED)
    assert (first.card_holder, first.card_unit) == ("刘女士", "3-2-501")
    assert second is not None and second.granted
    assert third is not None and (third.granted, third.reason) == (False, Reason.REPLAYED)
    assert book.uses(visitor.code) == (True, True)


def test_directed_readers_allow_one_entry_and_one_exit(book: VisitorBook):
    visitor = book.register(REQUEST, NOW)
    assert book.decide(visitor.code, at(NOW), "out").granted  # left first (came in elsewhere): allowed once
    assert book.decide(visitor.code, at(NOW), "in").granted
    assert not book.decide(visitor.code, at(NOW), "in").granted
    assert not book.decide(visitor.code, at(NOW), "out").granted


def test_an_expired_pass_is_refused_even_unused(book: VisitorBook):
    visitor = book.register(REQUEST, NOW)
    assert visitor.expires_at == NOW + timedelta(hours=4)
    late = book.decide(visitor.code, at(NOW + timedelta(hours=4)))
    assert late is not None and (late.granted, late.reason) == (False, Reason.EXPIRED)
    assert book.uses(visitor.code) == (False, False)


def test_an_untrusted_clock_flags_the_grant_and_still_proves_expiry(book: VisitorBook):
    visitor = book.register(REQUEST, NOW)
    flagged = book.decide(visitor.code, at(NOW, trusted=False))
    assert flagged.granted and flagged.flags == {Flag.CLOCK_UNTRUSTED}
    expired = book.decide(visitor.code, at(NOW + timedelta(hours=5), trusted=False))
    assert (expired.granted, expired.reason) == (False, Reason.EXPIRED)


@pytest.mark.parametrize("policy", list(UntrustedClockPolicy))
def test_a_clock_behind_the_issue_time_follows_the_untrusted_clock_policy(
    book: VisitorBook, policy: UntrustedClockPolicy
):
    """As for a signed pass's ``valid_from``: a Pi booted at a time saved before the pass was
    issued cannot tell how old the pass is, so ``deny`` refuses it and ``grant_and_flag`` lets it in."""
    visitor = book.register(REQUEST, NOW)
    rebooted = at(NOW - timedelta(hours=2), trusted=False)
    decision = book.decide(visitor.code, rebooted, untrusted_clock=policy)
    assert decision is not None and decision.flags == {Flag.CLOCK_UNTRUSTED}
    if policy is UntrustedClockPolicy.DENY:
        assert (decision.granted, decision.reason) == (False, Reason.NOT_YET_VALID)
        assert book.uses(visitor.code) == (False, False)
    else:
        assert decision.granted and book.uses(visitor.code) == (True, False)


def test_an_untrusted_clock_past_the_issue_time_grants_under_either_policy(book: VisitorBook):
    visitor = book.register(REQUEST, NOW)
    strict = book.decide(
        visitor.code, at(NOW + timedelta(hours=1), trusted=False), "in", UntrustedClockPolicy.DENY
    )
    assert strict.granted and strict.flags == {Flag.CLOCK_UNTRUSTED}
    late = book.decide(
        visitor.code, at(NOW + timedelta(hours=4), trusted=False), "out", UntrustedClockPolicy.DENY
    )
    assert (late.granted, late.reason) == (False, Reason.EXPIRED)


def test_the_gate_judges_visitor_passes_by_its_signed_pass_clock_policy(book: VisitorBook):
    """``[passes] untrusted_clock = "deny"`` reaches the visitor book through the gate's decision."""
    trust = TrustStore(SigningKey.generate().verify_key, "longtan")

    def gate(policy: UntrustedClockPolicy | None) -> GateDecider:
        passes = None
        if policy is not None:
            passes = GateState(
                trust=trust, revocation=RevocationState(trust), policy=GatePolicy(untrusted_clock=policy)
            )
        decider = GateDecider(AllowList(frozenset()), passes)
        decider.visitors = book
        return decider

    rebooted = at(NOW - timedelta(hours=2), trusted=False)
    strict = gate(UntrustedClockPolicy.DENY).decide(book.register(REQUEST, NOW).code, rebooted)
    assert (strict.granted, strict.reason, strict.flags) == (
        False,
        Reason.NOT_YET_VALID,
        {Flag.CLOCK_UNTRUSTED},
    )
    for lenient in (gate(UntrustedClockPolicy.GRANT_AND_FLAG), gate(None)):
        decision = lenient.decide(book.register(REQUEST, NOW).code, rebooted)
        assert decision.granted and decision.flags == {Flag.CLOCK_UNTRUSTED}


def test_codes_it_did_not_issue_are_left_to_the_rest_of_the_decision(book: VisitorBook):
    assert book.decide(new_code(), at(NOW)) is None  # right shape, not ours
    assert book.decide("104729", at(NOW)) is None
    assert book.decide(MARKER + "0" * 40, at(NOW)) is None


def test_the_file_keeps_no_code_and_survives_a_restart(tmp_path: Path):
    book = VisitorBook(tmp_path / "v.db", now=NOW)
    visitor = book.register(REQUEST, NOW)
    assert book.decide(visitor.code, at(NOW)).granted
    book.close()
    raw = b"".join(path.read_bytes() for path in tmp_path.glob("v.db*"))
    assert visitor.code.encode() not in raw
    again = VisitorBook(tmp_path / "v.db", now=NOW)
    try:
        assert again.uses(visitor.code) == (True, False)
        assert again.decide(visitor.code, at(NOW)).granted
        assert not again.decide(visitor.code, at(NOW)).granted
    finally:
        again.close()


def test_personal_data_is_deleted_a_day_after_expiry(book: VisitorBook, tmp_path: Path):
    old = book.register(REQUEST, NOW - timedelta(days=3))
    book.register(REQUEST, NOW)
    assert len(book) == 1
    assert book.uses(old.code) is None
    with sqlite3.connect(tmp_path / "visitors.db") as db:
        assert db.execute("SELECT count(*) FROM visitors").fetchone()[0] == 1


def test_personal_data_is_deleted_at_start_without_a_registration(tmp_path: Path):
    book = VisitorBook(tmp_path / "v.db", now=NOW - timedelta(days=3))
    old = book.register(REQUEST, NOW - timedelta(days=3))
    book.close()
    again = VisitorBook(tmp_path / "v.db", now=NOW)
    try:
        assert len(again) == 0 and again.uses(old.code) is None
    finally:
        again.close()


def test_personal_data_is_deleted_while_deciding_at_most_once_a_minute(book: VisitorBook):
    old = book.register(REQUEST, NOW - timedelta(days=1, hours=4, seconds=30))  # kept until NOW - 30 s
    book.decide("104729", at(NOW + timedelta(seconds=30)))  # the last purge (at start) was 30 s ago
    assert book.uses(old.code) == (False, False)
    book.decide("104729", at(NOW + timedelta(minutes=1)))  # any credential will do
    deadline = time.monotonic() + 5  # the purge runs beside the decision, not in its way
    while book.uses(old.code) is not None and time.monotonic() < deadline:
        time.sleep(0.01)
    assert book.uses(old.code) is None and len(book) == 0


def test_the_event_masks_the_phone_and_carries_no_code(book: VisitorBook):
    visitor = book.register(REQUEST, NOW)
    data = visitor.event_data()
    assert data["phone"] == "*******8000"
    assert visitor.code not in str(data)
    assert data["code_hash"] == visitor.code_hash and len(data["code_hash"]) == 64
    assert data["expires"] == "2026-11-29T14:00:00Z"


@pytest.mark.parametrize(
    ("field", "value", "problem"),
    [
        ("name", "", FieldProblem.REQUIRED),
        ("name", "   ", FieldProblem.REQUIRED),
        ("name", None, FieldProblem.NOT_TEXT),
        ("name", 42, FieldProblem.NOT_TEXT),
        ("name", "x" * 65, FieldProblem.TOO_LONG),
        ("name", "bad\x00name", FieldProblem.CONTROL_CHARS),
        ("unit", "3-2\n501", FieldProblem.CONTROL_CHARS),
        ("phone", "call me", FieldProblem.PHONE_CHARS),
        ("phone", "1234", FieldProblem.PHONE_DIGITS),
        ("phone", "1" * 16, FieldProblem.PHONE_DIGITS),
        ("reason", "", FieldProblem.REQUIRED),
        ("guard", "", FieldProblem.REQUIRED),
    ],
)
def test_bad_fields_are_named(field: str, value: object, problem: FieldProblem):
    fields = {"name": "a", "unit": "b", "phone": "13800138000", "reason": "c", "guard": "d", field: value}
    with pytest.raises(VisitorError) as caught:
        VisitorRequest.check(**fields)
    assert (caught.value.field, caught.value.problem) == (field, problem)


@given(st.text(max_size=30))
def test_masking_never_shows_more_than_four_digits(phone: str):
    masked = mask_phone(phone)
    assert sum(c.isdigit() for c in masked) <= 4
    assert set(masked) <= set("*0123456789")


def test_the_visitor_qr_is_a_full_qr_code_that_scanners_read_back():
    import io

    import zxingcpp
    from PIL import Image

    from edge.guard.screen import visitor_qr

    code = new_code()
    qr = visitor_qr(code)
    assert not qr.is_micro and qr.mode == "numeric"
    png = io.BytesIO()
    qr.save(png, kind="png", scale=6, border=4)
    results = zxingcpp.read_barcodes(Image.open(io.BytesIO(png.getvalue())))
    assert [r.text for r in results] == [code]
