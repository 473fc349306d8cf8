"""What the screen is told about a decision: reason key, flags to check by hand, holder and photo."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from edge.decision import Decision
from edge.guard.views import decision_view, photo_view
from protocol.passes import Flag, Pass, Reason, Role, photo_digest

NOW = datetime(2026, 11, 29, 10, 0, tzinfo=UTC)
IMAGE = b"\xff\xd8 not really a jpeg"


def a_pass(photo: bytes | None) -> Pass:
    return Pass(
        kid=1,
        site_id=3,
        serial=77,
        holder="王小明",
        unit="3-2-501",
        role=Role.SERVICE_WORKER,
        zones=frozenset({0}),
        valid_from=NOW - timedelta(days=1),
        valid_until=NOW + timedelta(days=1),
        photo_digest=photo,
    )


def view(decision: Decision, photo_dir: Path | None = None, **kw) -> dict:
    args = {"kind": "pass", "reader": "scanner", "visitor": False, "card_photo": None, "idle_s": 8.0}
    args.update(kw)
    return decision_view(decision, photo_dir=photo_dir, **args)


def test_a_signed_pass_shows_its_holder_role_and_photo(tmp_path: Path):
    digest = photo_digest(IMAGE)
    (tmp_path / f"{digest.hex()}.jpg").write_bytes(IMAGE)
    shown = view(Decision(True, Reason.GRANTED, holder=a_pass(digest)), tmp_path)
    assert (shown["holder"], shown["unit"], shown["role"]) == ("王小明", "3-2-501", "service_worker")
    assert shown["photo"] == {"digest": digest.hex(), "url": f"/photo/{digest.hex()}.jpg"}
    assert shown["check_by_hand"] is False and shown["idle_after_s"] == 8.0


def test_a_photo_this_gate_does_not_have_is_a_placeholder_and_no_photo_is_none(tmp_path: Path):
    digest = photo_digest(IMAGE)
    assert view(Decision(True, Reason.GRANTED, holder=a_pass(digest)), tmp_path)["photo"] == {
        "digest": digest.hex(),
        "url": None,
    }
    assert view(Decision(True, Reason.GRANTED, holder=a_pass(None)), tmp_path)["photo"] is None
    assert view(Decision(True, Reason.GRANTED, holder=a_pass(digest)), None)["photo"]["url"] is None


def test_flags_ask_the_guard_to_check_by_hand():
    flagged = Decision(True, Reason.GRANTED, frozenset({Flag.STALE_REVOCATION_LIST, Flag.CLOCK_UNTRUSTED}))
    shown = view(flagged)
    assert shown["check_by_hand"] is True
    assert shown["flags"] == ["clock_untrusted", "stale_revocation_list"]


def test_a_spent_visitor_pass_has_its_own_reason():
    spent = Decision(False, Reason.REPLAYED, card_holder="刘女士", card_unit="3-2-501")
    shown = view(spent, visitor=True)
    assert (shown["reason"], shown["role"], shown["credential"]) == ("visitor_spent", "visitor", "visitor")
    assert view(Decision(False, Reason.REPLAYED))["reason"] == "replayed"


def test_a_photo_digest_that_is_not_hex_never_becomes_a_path(tmp_path: Path):
    assert photo_view("../../etc/passwd", tmp_path) == {"digest": None, "url": None}
    assert photo_view("", tmp_path) is None
