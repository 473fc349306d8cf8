"""The guard screen's vehicle panel: the plate crop, and the guard's answer to a plate the lane held.

A plate that does not open the arm by itself — one character off a registered plate,
unknown, expired, blacklisted — is *held* on the screen with the crop the lane saw, so
that the guard, not the camera, decides what happens next:

- **correct**: the reading was wrong (the guard reads the crop and types the plate, or
  takes the registered plate it resembles with one tap); the corrected plate is decided
  again through the agent's one ``present()`` path, so it opens only if *that* plate is
  registered, and the lane is opened by the agent as for any decision;
- **register** a visitor vehicle with an expiry (:class:`edge.plate_decisions.VehicleBook`),
  then decide it again the same way;
- **open** by hand with a reason (``Lane.open``, which refuses when its fail-safe rules
  say no, e.g. a vehicle under the arm is not the question but the relay watchdog is);
- **refuse**.

Every action is recorded *first* — ``vehicle.guard`` or ``vehicle.registered`` through the
outbox, zero loss like every event — then acted on, so nothing the guard does is silent.
Actions that can open the arm need the guard PIN (:mod:`edge.guard.pin`); refusing does not.

Crops are kept in memory only (the last :data:`MAX_HELD`): the event carries its own copy
to the console, and the gate's SD card keeps no pictures of cars.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edge.decision import Decision
from edge.plate_decisions import VehicleBook, VehicleRequest, checked_plate
from edge.visitors import FieldProblem, VisitorError, clean_text
from protocol import events as ev
from protocol.passes import Reason

if TYPE_CHECKING:
    from edge.agent import Presented
    from edge.guard.screen import GuardScreen

log = logging.getLogger("gatepost.edge.guard")

MAX_HELD = 50
"""Plates the screen remembers for an answer; older ones can still be opened by hand."""
MAX_CROP_BYTES = 64 * 1024
OPEN_REASONS = ("resident_misread", "visitor", "delivery", "emergency", "maintenance", "other")
"""Why a guard opens the arm by hand; ``other`` needs a note."""
REFUSE_REASONS = ("not_registered", "blacklisted", "no_answer", "other")


@dataclass(frozen=True, slots=True)
class HeldPlate:
    """A plate decision the guard may answer."""

    id: str
    lane: str
    read: str
    reason: str
    resembles: str | None
    direction: str | None
    crop: bytes | None
    at: float


def vehicle_db_path(visitor_db: Path) -> Path:
    """Beside the visitor passes: ``visitors.db`` -> ``visitors-vehicles.db``."""
    return visitor_db.with_name(f"{visitor_db.stem}-vehicles{visitor_db.suffix or '.db'}")


class VehiclePanel:
    """Held plates, their crops, and the four guard actions on them."""

    def __init__(self, screen: GuardScreen) -> None:
        self.screen = screen
        self.host = screen.host
        self.book = VehicleBook(vehicle_db_path(screen.config.visitor_db))
        self.host.decider.vehicles = (
            self.book
        )  # GateDecider's plate decisions ask it (edge/plate_decisions.py)
        self._held: OrderedDict[str, HeldPlate] = OrderedDict()
        self._lock = threading.Lock()

    def close(self) -> None:
        self.book.close()

    # -- what the screen shows ------------------------------------------------------------

    def view(self, shown: Presented, decision: Decision) -> dict[str, Any]:
        """The vehicle part of a decision message: plate, crop URL, and the held id when the guard must answer."""
        crop = getattr(shown, "image", None)
        if not isinstance(crop, bytes | bytearray) or not crop or len(crop) > MAX_CROP_BYTES:
            crop = None
        held = HeldPlate(
            uuid.uuid4().hex,
            shown.reader,
            shown.code,
            decision.reason.value,
            decision.resembles,
            shown.direction,
            bytes(crop) if crop else None,
            time.monotonic(),
        )
        with self._lock:
            self._held[held.id] = held
            while len(self._held) > MAX_HELD:
                self._held.popitem(last=False)
        confidence = getattr(shown, "confidence", None)
        return {
            "plate": shown.code,
            "lane": shown.reader,
            "vehicle": decision.vehicle,
            "resembles": decision.resembles,
            "confidence": round(confidence, 3) if isinstance(confidence, float) else None,
            "crop": f"/crop/{held.id}.jpg" if held.crop else None,
            "held": None if decision.granted else held.id,
            "alarm": decision.reason is Reason.BLACKLISTED,
        }

    def crop(self, held_id: str) -> bytes | None:
        with self._lock:
            held = self._held.get(held_id)
        return held.crop if held is not None else None

    def _held_plate(self, body: dict[str, Any]) -> HeldPlate:
        held_id = body.get("held")
        with self._lock:
            held = self._held.get(held_id) if isinstance(held_id, str) else None
        if held is None:
            from edge.guard.screen import GuardActionError

            raise GuardActionError("plate_gone", 404, detail="no such plate on this screen (too old?)")
        return held

    # -- the guard's actions ------------------------------------------------------------------

    def _record(self, action: str, held: HeldPlate | None, guard: str, **data: Any) -> Any:
        return self.host.record(
            ev.VEHICLE_GUARD,
            {
                "action": action,
                "guard": guard,
                "lane": held.lane if held else data.pop("lane", None),
                "read": held.read if held else None,
                "decision": held.reason if held else None,
                **data,
            },
        )

    def _decide_again(self, held: HeldPlate, plate_text: str, credential: str) -> dict[str, Any]:
        """Present the guard's plate at the lane it was read at: the agent decides and opens."""
        from edge.agent import Presented

        decision = self.host.present(
            Presented(credential, "plate", held.lane, time.monotonic_ns(), plate_text, None, held.direction)  # type: ignore[arg-type]
        )
        if decision is None:
            return {"granted": None, "reason": "repeat"}
        return {"granted": decision.granted, "reason": decision.reason.value}

    def correct(self, body: dict[str, Any], address: str) -> dict[str, Any]:
        """The reading was wrong: record the guard's plate, then decide that plate at the lane."""
        held = self._held_plate(body)
        try:
            guard = clean_text("guard", body.get("guard"), 64)
            plate = checked_plate(body.get("plate"))
        except VisitorError as exc:
            raise _field_error(exc) from None
        if plate.text == held.read:
            raise _field_error(VisitorError("plate", FieldProblem.SAME_PLATE, "the same as the reading"))
        self.screen.check_pin(body.get("pin"), "vehicle_correct", address)
        event = self._record("correct", held, guard, plate=plate.text, resembled=plate.text == held.resembles)
        log.info("guard %s corrected %s to %s at %s", guard, held.read, plate.text, held.lane)
        result = self._decide_again(held, plate.text, plate.credential)
        return {"ok": True, "event_id": event.id if event is not None else None, **result}

    def register(self, body: dict[str, Any], address: str) -> dict[str, Any]:
        """Register a visitor vehicle (from a held plate, or typed), then decide it at the lane."""
        held = self._held_plate(body) if body.get("held") else None
        try:
            request = VehicleRequest.check(
                plate=body.get("plate") or (held.read if held else None),
                unit=body.get("unit"),
                note=body.get("note"),
                guard=body.get("guard"),
                hours=body.get("hours"),
                default_hours=self.screen.config.visitor_pass_hours,
            )
        except VisitorError as exc:
            raise _field_error(exc) from None
        self.screen.check_pin(body.get("pin"), "vehicle_register", address)
        reading = self.host.clock.now()
        vehicle = self.book.register(request, held.lane if held else "", reading.wall)
        event = self.host.record(ev.VEHICLE_REGISTERED, vehicle.event_data(), reading)
        log.info(
            "visitor vehicle %s registered by %s until %s", vehicle.plate, request.guard, vehicle.expires_at
        )
        result: dict[str, Any] = {"granted": None, "reason": None}
        if held is not None:
            result = self._decide_again(held, vehicle.plate.text, vehicle.plate.credential)
        return {
            "ok": True,
            "event_id": event.id if event is not None else None,
            "plate": vehicle.plate.text,
            "expires": vehicle.event_data()["expires"],
            **result,
        }

    def open(self, body: dict[str, Any], address: str) -> dict[str, Any]:
        """Open a lane's arm by hand with a reason: recorded first, then ``Lane.open``."""
        held = self._held_plate(body) if body.get("held") else None
        lanes: dict[str, Any] = getattr(self.host, "lanes", None) or {}
        lane_name = held.lane if held else body.get("lane")
        try:
            guard = clean_text("guard", body.get("guard"), 64)
            reason = body.get("reason")
            if not reason:
                raise VisitorError("reason", FieldProblem.REQUIRED, "required")
            if reason not in OPEN_REASONS:
                raise VisitorError("reason", FieldProblem.UNKNOWN_CHOICE, "not one of the choices")
            note_raw = body.get("note")
            note = clean_text("note", note_raw or "", 200) if (reason == "other" or note_raw) else ""
            if not isinstance(lane_name, str) or lane_name not in lanes:
                raise VisitorError("lane", FieldProblem.UNKNOWN_CHOICE, "no such lane at this gate")
        except VisitorError as exc:
            raise _field_error(exc) from None
        self.screen.check_pin(body.get("pin"), "vehicle_open", address)
        event = self._record("open", held, guard, lane=lane_name, reason=reason, note=note)
        cause = f"guard: {reason}" + (f" ({note})" if note else "")
        try:
            opened = bool(lanes[lane_name].open(cause, guard))
        except Exception:  # the lane says why in its own event; the guard must get an answer
            log.exception("lane %s could not open", lane_name)
            opened = False
        log.info("guard %s opened lane %s by hand (%s): %s", guard, lane_name, reason, opened)
        return {"ok": True, "event_id": event.id if event is not None else None, "opened": opened}

    def refuse(self, body: dict[str, Any], address: str) -> dict[str, Any]:
        """The guard turns the car away: recorded, nothing opens (so no PIN)."""
        held = self._held_plate(body)
        try:
            guard = clean_text("guard", body.get("guard"), 64)
            reason = body.get("reason") or "not_registered"
            if reason not in REFUSE_REASONS:
                raise VisitorError("reason", FieldProblem.UNKNOWN_CHOICE, "not one of the choices")
        except VisitorError as exc:
            raise _field_error(exc) from None
        event = self._record("refuse", held, guard, reason=reason)
        with self._lock:
            self._held.pop(held.id, None)
        return {"ok": True, "event_id": event.id if event is not None else None}


def _field_error(exc: VisitorError) -> Exception:
    from edge.guard.screen import GuardActionError

    return GuardActionError("field", 400, field=exc.field, problem=exc.problem.value, detail=exc.detail)
