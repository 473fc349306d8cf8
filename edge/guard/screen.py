"""The guard screen's logic: what decisions look like on the screen, and the guard's two actions.

The agent calls :meth:`GuardScreen.show` after each access decision (next to the lights
and buzzer: the screen is the guard's answer too) and owns the lifecycle.  The two guard
actions are audited events that go through the outbox like every other event:

- a **manual let-through** records ``access.manual`` {guard, reason, note} *first*, then
  releases the lock like a remote unlock (``door.unlocked`` with ``cause: remote`` and the
  manual event's id as ``command_id``), so no opening by hand is ever silent;
- a **visitor registration** issues a code good at this gate only (:mod:`edge.visitors`)
  and records ``visitor.registered`` with the phone masked and no code.

Both need the guard PIN, counted per source address (:mod:`edge.guard.pin`); a wrong PIN
is a ``guard.pin_rejected`` event, and one that starts a pause also ``guard.pin_lockout``,
which the console raises an alarm for.  Bad input is a :class:`GuardActionError` with a
key the page translates, never an exception escaping.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import segno

from edge.decision import Decision
from edge.guard.live import Broadcaster
from edge.guard.pin import MIN_PIN_DIGITS, PinGate, PinOutcome
from edge.guard.server import ThreadedServer, parse_listen
from edge.guard.texts import MANUAL_REASONS, load_locales
from edge.guard.views import alarm_view, decision_view, duty_view, manual_view
from edge.visitors import FieldProblem, VisitorBook, VisitorError, VisitorRequest, clean_text, is_visitor_code
from protocol import events as ev
from protocol.passes import Reason

if TYPE_CHECKING:
    from edge.agent import Presented
    from edge.config import EdgeConfig, GuardScreenConfig

log = logging.getLogger("gatepost.edge.guard")

FIRE_ALARM_HOLD_S = 24 * 3600.0
"""How long the fire alarm stays on the guard screen at most: until it clears, in practice."""


class GateHost(Protocol):
    """What the screen needs from the agent (``edge.agent.GateAgent`` has all of it)."""

    config: EdgeConfig
    decider: Any
    door: Any
    feedback: Any
    clock: Any
    duty: Any
    """edge.duty.DutyDesk: the "On duty" panel and PIN check-ins."""

    def record(self, event_type: str, data: dict[str, Any], reading: Any = None) -> Any: ...

    def present(self, shown: Any) -> Any: ...


class GuardActionError(Exception):
    """A guard action refused: ``code`` is a key of the locales' ``error`` section."""

    def __init__(
        self,
        code: str,
        status: int,
        *,
        field: str | None = None,
        problem: str | None = None,
        detail: str = "",
        seconds: float | None = None,
    ) -> None:
        super().__init__(f"{code}: {field or ''} {detail}".strip())
        self.code = code
        self.status = status
        self.field = field
        self.problem = problem
        self.detail = detail
        self.seconds = seconds

    def body(self) -> dict[str, Any]:
        return {
            "error": self.code,
            "field": self.field,
            "problem": self.problem,
            "detail": self.detail,
            "seconds": self.seconds,
        }


def _field_error(exc: VisitorError) -> GuardActionError:
    return GuardActionError("field", 400, field=exc.field, problem=exc.problem.value, detail=exc.detail)


def group_code(code: str) -> str:
    """``8123 4567 8901 23``: easier to read out and type back."""
    return " ".join(code[i : i + 4] for i in range(0, len(code), 4))


def visitor_qr(code: str) -> segno.QRCode:
    """A full-size QR code (never Micro QR, which many scanners cannot read) in numeric mode."""
    return segno.make_qr(code, mode="numeric", error="m")


class GuardScreen:
    """The screen of one gate: live decisions, manual let-through, visitor passes."""

    def __init__(self, host: GateHost, config: GuardScreenConfig, *, photo_dir: Path | None = None) -> None:
        assert config.pin_hash is not None  # the config refuses an enabled screen without one
        self.host = host
        self.config = config
        edge = host.config
        self.site, self.gate = edge.site, edge.gate
        photos = getattr(edge, "photos", None)
        self.photo_dir = photo_dir or config.photo_dir or (photos.dir if photos is not None else None)
        self.pins = PinGate(
            config.pin_hash,
            attempts=config.pin_attempts,
            lockout_s=config.pin_lockout_s,
            max_lockout_s=config.pin_lockout_max_s,
        )
        if self.pins.stored is not None and self.pins.stored.digits is None:
            log.warning(
                "guard screen: pin_hash does not record the PIN's length (made before PINs had %d digits):"
                " a shorter PIN no longer works; make a new one with gatepost edge hash-pin",
                MIN_PIN_DIGITS,
            )
        self.live = Broadcaster()
        self.texts = load_locales()
        self.visitors = VisitorBook(config.visitor_db, hours=config.visitor_pass_hours)
        host.decider.visitors = self.visitors  # GateDecider asks the book first (edge/decision.py)
        from edge.guard.vehicle_panel import VehiclePanel

        self.vehicles = VehiclePanel(self)
        from edge.guard.app import create_app

        self.app = create_app(self)
        self._server: ThreadedServer | None = None

    # -- lifecycle ------------------------------------------------------------------

    @property
    def url(self) -> str | None:
        if self._server is None:
            return None
        return f"http://{self._server.host}:{self._server.port}/"

    def start(self) -> None:
        """Serve; a port that cannot be bound is logged, and the gate goes on deciding without a screen."""
        host, port = parse_listen(self.config.listen)
        try:
            server = ThreadedServer(self.app, host, port)
            server.start()
        except (OSError, RuntimeError) as exc:
            log.error("guard screen not served on %s: %s", self.config.listen, exc)
            return
        self._server = server
        log.info("guard screen at %s", self.url)

    def stop(self) -> None:
        self.live.close()
        if self._server is not None:
            self._server.stop()
            self._server = None
        self.visitors.close()
        self.vehicles.close()

    # -- what the screen shows -----------------------------------------------------------

    def show(self, shown: Presented, decision: Decision) -> None:
        """Put a decision on every open page.  Never raises: the door has already answered."""
        try:
            visitor = shown.kind == "pass" and is_visitor_code(shown.credential)
            view = decision_view(
                decision,
                kind=shown.kind,
                reader=shown.reader,
                visitor=visitor,
                card_photo=decision.card_photo,
                photo_dir=self.photo_dir,
                idle_s=self.config.idle_s,
            )
            if shown.kind == "plate":
                view.update(self.vehicles.view(shown, decision))
                view["check_by_hand"] = view["check_by_hand"] or view["held"] is not None
            self.live.publish(view)
        except Exception:
            log.exception("guard screen could not show a decision")

    def show_duty(self, outcome: Any) -> None:
        """Put a staff or patrol check (edge/duty.py) on every open page.  Never raises."""
        try:
            self.live.publish(duty_view(outcome, idle_s=self.config.idle_s))
        except Exception:
            log.exception("guard screen could not show a duty check")

    def duty_panel(self) -> dict[str, Any]:
        """The "On duty" panel: who is rostered now (and checked in) and next, or "no roster"."""
        return self.host.duty.panel(self.host.clock.now().wall)

    def duty_pin(self, body: dict[str, Any], address: str) -> dict[str, Any]:
        """A staff member checks in or out with their personal PIN (not the guard PIN).

        The PIN is matched against the duty sheet's hashes, with the guard PIN's lockout
        per source; a wrong PIN is ``duty.refused`` ``wrong_pin``, the one that starts a
        pause also ``pin_lockout``, no sheet ``no_sheet`` (edge/duty.py).
        """
        from edge.duty import DutyPinError

        reading = self.host.clock.now()
        try:
            outcome = self.host.duty.pin(body.get("pin"), address, reading, person=body.get("person"))
        except DutyPinError as exc:
            raise GuardActionError(exc.code, exc.status, field="pin", seconds=exc.seconds) from None
        if self.host.feedback is not None:
            self.host.feedback.show(outcome.pattern)
        self.show_duty(outcome)
        return {
            "ok": True,
            "event": outcome.event_type,
            "event_id": outcome.event_id,
            "person": outcome.data.get("person"),
            "name": outcome.name,
            "on_duty_s": outcome.data.get("on_duty_s"),
        }

    def door_alarm(self, name: str) -> None:
        """Put a door alarm (``forced``, ``held_open``, ``tamper``…) on every open page.  Never raises.

        A fire alarm stays on the screen (and on any page opened meanwhile) until the
        ``fire_alarm_cleared`` message replaces it, or a decision does.
        """
        idle_s = FIRE_ALARM_HOLD_S if name == "fire_alarm" else self.config.idle_s
        try:
            self.live.publish(alarm_view(name, idle_s=idle_s))
        except Exception:
            log.exception("guard screen could not show a door alarm")

    def state(self) -> dict[str, Any]:
        """What a page that just connected should show: the last message while it is still current."""
        last, age = self.live.last()
        current = last is not None and age < float(last.get("idle_after_s", self.config.idle_s))
        return {
            "site": self.site,
            "gate": self.gate,
            "last": last if current else None,
            "age_s": round(age, 3) if current else None,
        }

    # -- guard actions ---------------------------------------------------------------

    def check_pin(self, pin: object, action: str, address: str) -> None:
        """Let a guard action through only with the PIN (the vehicle panel's actions call it too)."""
        self._check_pin(pin, action, address)

    def _check_pin(self, pin: object, action: str, address: str) -> None:
        check = self.pins.check(pin, address)
        if check.outcome is PinOutcome.OK:
            return
        if check.outcome is PinOutcome.TOO_SHORT:
            raise GuardActionError(check.outcome.value, 400, field="pin", detail=f"{MIN_PIN_DIGITS} digits")
        wrong = check.outcome is PinOutcome.WRONG or check.lockout_started
        if wrong:  # a wrong PIN, or the one that started a pause: recorded once each, waits are not
            data = {
                "action": action,
                "failures": check.failures,
                "locked_for_s": check.locked_for_s,
                "source": check.source.value,
                "address": check.address,
            }
            log.warning(
                "guard screen: wrong PIN for %s from %s (%d in a row)", action, check.address, check.failures
            )
            self.host.record(ev.GUARD_PIN_REJECTED, data)
            if check.lockout_started:
                log.warning(
                    "guard screen: guard actions from %s paused %.0f s", check.address, check.locked_for_s
                )
                self.host.record(ev.GUARD_PIN_LOCKOUT, data)
        status = 429 if check.outcome is PinOutcome.LOCKED else 403
        raise GuardActionError(check.outcome.value, status, field="pin", seconds=check.locked_for_s or None)

    def let_through(self, body: dict[str, Any], address: str) -> dict[str, Any]:
        """A guard lets someone through: check, record ``access.manual``, then release the lock."""
        try:
            guard = clean_text("guard", body.get("guard"), 64)
            reason = body.get("reason")
            if not reason:
                raise VisitorError("reason", FieldProblem.REQUIRED, "required")
            if reason not in MANUAL_REASONS:
                raise VisitorError("reason", FieldProblem.UNKNOWN_CHOICE, "not one of the choices")
            note_raw = body.get("note")
            note = clean_text("note", note_raw, 200) if (reason == "other" or note_raw) else ""
        except VisitorError as exc:
            raise _field_error(exc) from None
        self._check_pin(body.get("pin"), "manual", address)
        door = self.host.door
        reading = self.host.clock.now()
        event = self.host.record(
            ev.ACCESS_MANUAL,
            {"guard": guard, "reason": reason, "note": note, "door": door is not None},
            reading,
        )
        seconds: float | None = None
        if door is not None:
            settings = door.settings
            seconds = min(self.config.manual_unlock_s or settings.unlock_s, settings.max_unlock_s)
            door.remote_unlock(seconds, command_id=event.id if event is not None else "")
        if self.host.feedback is not None:
            from edge.feedback import pattern_for

            self.host.feedback.show(pattern_for(True, Reason.GRANTED))
        log.info("manual let-through by %s (%s)%s", guard, reason, "" if door else " (no door on this gate)")
        self.live.publish(manual_view(guard, reason, note, unlocked_for_s=seconds, idle_s=self.config.idle_s))
        return {"ok": True, "event_id": event.id if event is not None else None, "unlocked_for_s": seconds}

    def register_visitor(self, body: dict[str, Any], address: str) -> dict[str, Any]:
        """Issue a visitor pass for this gate and record ``visitor.registered``."""
        try:
            request = VisitorRequest.check(
                name=body.get("name"),
                unit=body.get("unit"),
                phone=body.get("phone"),
                reason=body.get("reason"),
                guard=body.get("guard"),
            )
        except VisitorError as exc:
            raise _field_error(exc) from None
        self._check_pin(body.get("pin"), "visitor", address)
        reading = self.host.clock.now()
        visitor = self.visitors.register(request, reading.wall)
        self.host.record(ev.VISITOR_REGISTERED, visitor.event_data(), reading)
        log.info(
            "visitor pass issued by %s for unit %s until %s", request.guard, request.unit, visitor.expires_at
        )
        qr = visitor_qr(visitor.code)
        data = visitor.event_data()
        return {
            "ok": True,
            "code": visitor.code,
            "code_grouped": group_code(visitor.code),
            "qr_svg": qr.svg_inline(border=2, dark="#000", light="#fff", omitsize=True),
            "name": data["name"],
            "unit": data["unit"],
            "phone": data["phone"],
            "expires": data["expires"],
            "gate": self.gate,
        }
