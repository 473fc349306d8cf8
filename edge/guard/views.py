"""What the screen shows for a decision: a JSON-ready dict, built without any I/O but a stat.

Kept apart from the server so the mapping (reason keys, the "check by hand" flags, the
photo) is tested without a browser.
"""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from edge.decision import Decision
from protocol.passes import Reason

DIGEST_RE = re.compile(r"^[0-9a-f]{32}$")
"""A photo digest as the screen names it: 16 bytes (``protocol.passes.format.photo_digest``) in hex."""


def photo_view(digest: str | None, photo_dir: Path | None) -> dict[str, Any] | None:
    """``None`` when the credential has no photo; otherwise its digest and a URL if this gate has the file."""
    if not digest:
        return None
    digest = digest.lower()
    if not DIGEST_RE.match(digest):
        return {"digest": None, "url": None}
    present = photo_dir is not None and (photo_dir / f"{digest}.jpg").is_file()
    return {"digest": digest, "url": f"/photo/{digest}.jpg" if present else None}


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def decision_view(
    decision: Decision,
    *,
    kind: str,
    reader: str,
    visitor: bool,
    card_photo: str | None,
    photo_dir: Path | None,
    idle_s: float,
) -> dict[str, Any]:
    """The screen message for an access decision at one of the gate's readers."""
    reason = decision.reason.value
    if visitor and decision.reason is Reason.REPLAYED:
        reason = "visitor_spent"
    role = None
    holder = unit = None
    photo_digest = card_photo
    if decision.holder is not None:
        holder, unit = decision.holder.holder, decision.holder.unit
        role = decision.holder.role.name.lower()
        photo_digest = decision.holder.photo_digest.hex() if decision.holder.photo_digest else None
    elif decision.card_holder is not None:
        holder, unit = decision.card_holder, decision.card_unit
        role = "visitor" if visitor else None
    return {
        "kind": "decision",
        "id": uuid.uuid4().hex,
        "at": _now(),
        "granted": decision.granted,
        "reason": reason,
        "flags": sorted(flag.value for flag in decision.flags),
        "check_by_hand": bool(decision.flags),
        "credential": "visitor" if visitor else kind,
        "reader": reader,
        "holder": holder,
        "unit": unit,
        "role": role,
        "photo": photo_view(photo_digest, photo_dir),
        "detail": decision.detail,
        "idle_after_s": idle_s,
    }


def manual_view(
    guard: str, reason: str, note: str, *, unlocked_for_s: float | None, idle_s: float
) -> dict[str, Any]:
    """The screen message for a guard's let-through: green, and says who did it."""
    return {
        "kind": "manual",
        "id": uuid.uuid4().hex,
        "at": _now(),
        "granted": True,
        "reason": "manual",
        "manual_reason": reason,
        "note": note,
        "guard": guard,
        "flags": [],
        "check_by_hand": False,
        "unlocked_for_s": unlocked_for_s,
        "photo": None,
        "idle_after_s": idle_s,
    }


def alarm_view(door_event: str, *, idle_s: float) -> dict[str, Any]:
    """The screen message for a door alarm (forced, held open, tamper…): red, and says which."""
    return {
        "kind": "alarm",
        "id": uuid.uuid4().hex,
        "at": _now(),
        "granted": False,
        "reason": "alarm",
        "door": door_event,
        "flags": [],
        "check_by_hand": True,
        "photo": None,
        "idle_after_s": idle_s,
    }


def duty_view(outcome: Any, *, idle_s: float) -> dict[str, Any]:
    """The screen message for a staff or patrol check (edge/duty.py): its own colour, never "granted"."""
    data = outcome.data
    event = outcome.event_type.replace(
        ".", "_"
    )  # duty_check_in, duty_check_out, duty_refused, patrol_checkin
    return {
        "kind": "duty",
        "id": uuid.uuid4().hex,
        "at": _now(),
        "granted": False,
        "reason": event,
        "event": event,
        "refusal": data.get("reason") if outcome.event_type == "duty.refused" else None,
        "person": data.get("person"),
        "holder": outcome.name or data.get("name") or None,
        "method": data.get("method"),
        "reader": data.get("reader"),
        "rostered": data.get("rostered"),
        "on_duty_s": data.get("on_duty_s"),
        "flags": [],
        "check_by_hand": outcome.event_type == "duty.refused",
        "photo": None,
        "idle_after_s": idle_s,
    }
