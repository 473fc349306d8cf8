"""The door state machine, driven by hand with an explicit clock."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest
from pydantic import ValidationError

from drivers.cards import CardRead, CardRejected, CardRejectReason, KeyPress, ReaderKind
from edge.door import (
    DoorCommandError,
    DoorEventType,
    DoorMachine,
    DoorOutputs,
    DoorSettings,
    RemoteRefusal,
    remote_unlock_seconds,
)
from protocol.messages import Command, Event

S = 1_000_000_000
T0 = 100 * S
SETTINGS = DoorSettings(unlock_s=5, max_unlock_s=20, prealarm_s=10, held_open_s=15, feedback_s=1)

E = DoorEventType


def types(events) -> list[DoorEventType]:
    return [e.type for e in events]


@pytest.fixture
def door() -> DoorMachine:
    machine = DoorMachine(SETTINGS)
    assert types(machine.start(T0, door_closed=True)) == [E.LOCKED]
    return machine


def grant(door: DoorMachine, t: int):
    return door.access(granted=True, now_ns=t, credential="em4100:01000734E0", reason="granted", reader="r1")


def test_a_grant_unlocks_for_the_unlock_time_then_relocks(door):
    events = grant(door, T0)
    assert types(events) == [E.ACCESS_GRANTED, E.UNLOCKED]
    assert events[1].data == {
        "cause": "grant",
        "seconds": 5.0,
        "extended": False,
        "credential": "em4100:01000734E0",
    }
    assert door.outputs == DoorOutputs(unlocked=True, green=True)
    assert door.next_deadline_ns() == T0 + 5 * S
    assert door.tick(T0 + 5 * S - 1) == []
    (locked,) = door.tick(T0 + 5 * S)
    assert locked.type is E.LOCKED and locked.data == {"cause": "timeout", "unlocked_for_s": 5.0}
    assert door.outputs == DoorOutputs()


def test_an_authorised_opening_relocks_at_once_and_closing_is_reported(door):
    grant(door, T0)
    events = door.door(closed=False, now_ns=T0 + 2 * S)
    assert types(events) == [E.OPENED, E.LOCKED]
    assert events[0].data == {"cause": "grant"} and events[1].data["cause"] == "opened"
    assert not door.unlocked
    (closed,) = door.door(closed=True, now_ns=T0 + 5 * S)
    assert closed.type is E.CLOSED
    assert closed.data == {"open_for_s": 3.0, "forced": False, "held_open": False}


def test_without_relock_on_open_the_door_stays_unlocked_until_the_timer():
    door = DoorMachine(SETTINGS.model_copy(update={"relock_on_open": False}))
    door.start(T0, door_closed=True)
    grant(door, T0)
    assert types(door.door(closed=False, now_ns=T0 + S)) == [E.OPENED]
    assert door.unlocked
    assert types(door.tick(T0 + 5 * S)) == [E.LOCKED]


def test_opening_while_locked_is_forced_and_alarms_until_closed(door):
    (forced,) = door.door(closed=False, now_ns=T0 + S)
    assert forced.type is E.FORCED and forced.at_ns == T0 + S
    assert door.outputs == DoorOutputs(red=True, buzzer=True)
    (closed,) = door.door(closed=True, now_ns=T0 + 3 * S)
    assert closed.data["forced"] is True
    assert door.outputs == DoorOutputs()


def test_an_opening_after_the_unlock_ran_out_is_forced_even_without_a_tick(door):
    grant(door, T0)
    events = door.door(closed=False, now_ns=T0 + 6 * S)  # no tick since the grant
    assert types(events) == [E.LOCKED, E.FORCED]
    assert events[0].at_ns == T0 + 5 * S  # the relock is dated when it happened, not when noticed


def test_held_open_warns_then_alarms_and_closing_clears_it(door):
    grant(door, T0)
    door.door(closed=False, now_ns=T0 + S)
    assert door.next_deadline_ns() == T0 + 11 * S
    (warning,) = door.tick(T0 + 11 * S)
    assert warning.type is E.HELD_OPEN_WARNING and warning.data == {"open_for_s": 10.0}
    assert door.outputs.buzzer and not door.outputs.red
    (alarm,) = door.tick(T0 + 16 * S)
    assert alarm.type is E.HELD_OPEN and alarm.data == {"open_for_s": 15.0}
    assert door.outputs.red and door.outputs.buzzer
    (closed,) = door.door(closed=True, now_ns=T0 + 20 * S)
    assert closed.data == {"open_for_s": 19.0, "forced": False, "held_open": True}
    assert door.outputs == DoorOutputs()
    assert door.tick(T0 + 100 * S) == []


def test_a_late_tick_fires_everything_due_in_time_order(door):
    grant(door, T0)
    door.door(closed=False, now_ns=T0 + S)
    events = door.tick(T0 + 60 * S)
    assert types(events) == [E.HELD_OPEN_WARNING, E.HELD_OPEN]
    assert [e.at_ns for e in events] == [T0 + 11 * S, T0 + 16 * S]


def test_held_open_stages_can_be_turned_off():
    door = DoorMachine(SETTINGS.model_copy(update={"prealarm_s": None, "held_open_s": None}))
    door.start(T0, door_closed=True)
    door.door(closed=False, now_ns=T0)
    assert door.next_deadline_ns() is None
    assert types(door.tick(T0 + 3600 * S)) == []


def test_the_exit_button_unlocks(door):
    events = door.exit_pressed(T0)
    assert types(events) == [E.EXIT_PRESSED, E.UNLOCKED]
    assert events[1].data["cause"] == "exit"
    assert types(door.door(closed=False, now_ns=T0 + S)) == [E.OPENED, E.LOCKED]


def test_a_denial_shows_red_and_beeps_briefly_and_does_not_unlock(door):
    events = door.access(granted=False, now_ns=T0, credential="wiegand26:1:2", reason="unknown")
    assert types(events) == [E.ACCESS_DENIED]
    assert events[0].data == {"credential": "wiegand26:1:2", "reason": "unknown", "reader": ""}
    assert door.outputs == DoorOutputs(red=True, buzzer=True)
    door.tick(T0 + S)
    assert door.outputs == DoorOutputs()


def test_tamper_is_reported_on_change_only(door):
    assert types(door.tamper(active=True, now_ns=T0)) == [E.TAMPER]
    assert door.tamper(active=True, now_ns=T0 + S) == []
    assert door.outputs.red
    assert types(door.tamper(active=False, now_ns=T0 + 2 * S)) == [E.TAMPER_CLEARED]
    assert not door.outputs.red


def test_repeated_grants_never_hold_the_lock_past_its_maximum(door):
    for i in range(10):  # a grant every 4 s keeps extending the unlock...
        events = grant(door, T0 + i * 4 * S)
        if door.unlocked:
            assert events[-1].data["extended"] is (i % 5 != 0)
    # ...but never beyond 20 s of continuous release: it relocked at T0+20 s and restarted
    locks = [e for e in door.tick(T0 + 100 * S)]
    assert types(locks) == [E.LOCKED]
    assert locks[0].data["unlocked_for_s"] <= 20.0


def test_remote_unlock_and_lock(door):
    events = door.remote_unlock(seconds=3, now_ns=T0, command_id="c1")
    assert events[0].data == {"cause": "remote", "seconds": 3.0, "extended": False, "command_id": "c1"}
    (locked,) = door.remote_lock(now_ns=T0 + S)
    assert locked.data["cause"] == "remote"
    with pytest.raises(DoorCommandError) as info:
        door.remote_unlock(seconds=21, now_ns=T0 + 2 * S)
    assert info.value.reason is RemoteRefusal.BAD_DURATION
    with pytest.raises(ValueError):
        door.remote_unlock(seconds=float("nan"), now_ns=T0 + 2 * S)
    assert not door.unlocked


def test_a_watchdog_cut_is_believed_and_reported(door):
    grant(door, T0)
    events = door.relay_cut(now_ns=T0 + S, on_for_s=21.0)
    assert types(events) == [E.RELAY_WATCHDOG, E.LOCKED]
    assert events[0].data == {"on_for_s": 21.0} and events[1].data["cause"] == "watchdog"
    assert not door.unlocked


def test_starting_with_the_door_open_reports_it_and_times_it():
    door = DoorMachine(SETTINGS)
    events = door.start(T0, door_closed=False, tampered=True)
    assert types(events) == [E.LOCKED, E.OPENED, E.TAMPER]
    assert events[1].data == {"cause": "start"}
    assert types(door.tick(T0 + 15 * S)) == [E.HELD_OPEN_WARNING, E.HELD_OPEN]


def test_a_door_without_a_contact_relocks_on_the_timer_only():
    door = DoorMachine(SETTINGS)
    door.start(T0, door_closed=None)
    assert door.door_open is None
    grant(door, T0)
    assert types(door.tick(T0 + 5 * S)) == [E.LOCKED]


def test_time_never_runs_backwards_inside_the_machine(door):
    grant(door, T0)
    door.tick(T0 + 6 * S)
    (forced,) = door.door(closed=False, now_ns=T0)  # a stale timestamp is taken as "now"
    assert forced.type is E.FORCED and forced.at_ns == T0 + 6 * S


def test_readings_become_events_but_pin_pad_keys_never_do(door):
    card = CardRead(ReaderKind.EM4100, 0x01000734E0, 40, "01000734E0", None, T0, "r1")
    (read,) = door.reading(card, now_ns=T0)
    assert read.type is E.CARD_READ and read.data["credential"] == "em4100:01000734E0"
    bad = CardRejected(
        ReaderKind.WIEGAND, CardRejectReason.PARITY, "even parity wrong", 26, "1" * 26, T0, "r2"
    )
    (rejected,) = door.reading(bad, now_ns=T0)
    assert rejected.type is E.CARD_REJECTED and rejected.data["reason"] == "parity"
    assert door.reading(KeyPress("7", 8, "10000111", T0), now_ns=T0) == []


def test_every_event_type_is_a_valid_protocol_event_type():
    for kind in DoorEventType:
        Event(
            id=uuid.uuid4().hex,
            site="s1",
            gate="g1",
            boot=uuid.uuid4().hex,
            seq=1,
            time=datetime.now(UTC),
            clock_trusted=True,
            type=kind.value,
        )


def test_settings_must_be_consistent():
    with pytest.raises(ValidationError, match="max_unlock_s"):
        DoorSettings(unlock_s=40, max_unlock_s=30)
    with pytest.raises(ValidationError, match="prealarm_s"):
        DoorSettings(prealarm_s=30, held_open_s=30)
    with pytest.raises(ValidationError):
        DoorSettings(unlock_s=0)
    assert DoorSettings().relay_max_on_s > DoorSettings().max_unlock_s


# -- remote unlock commands -------------------------------------------------------------------

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def command(expires_in_s: float = 30, **args) -> Command:
    return Command(
        id=uuid.uuid4().hex,
        name="unlock",
        args=args,
        issued_at=NOW,
        expires_at=NOW + timedelta(seconds=expires_in_s),
    )


def check(cmd: Command, *, retained: bool = False, trusted: bool = True, now: datetime = NOW) -> float:
    return remote_unlock_seconds(cmd, retained=retained, now=now, clock_trusted=trusted, settings=SETTINGS)


def test_a_fresh_remote_unlock_is_accepted_with_its_duration():
    assert check(command()) == SETTINGS.unlock_s
    assert check(command(seconds=12)) == 12.0


@pytest.mark.parametrize(
    "cmd, kwargs, reason",
    [
        (command(), {"retained": True}, RemoteRefusal.RETAINED),
        (command(), {"trusted": False}, RemoteRefusal.CLOCK_UNTRUSTED),
        (command(), {"now": NOW + timedelta(seconds=30)}, RemoteRefusal.EXPIRED),
        (command(expires_in_s=3600), {}, RemoteRefusal.EXPIRY_TOO_FAR),
        (command(seconds=0), {}, RemoteRefusal.BAD_DURATION),
        (command(seconds=21), {}, RemoteRefusal.BAD_DURATION),
        (command(seconds=True), {}, RemoteRefusal.BAD_DURATION),
        (command(seconds="5"), {}, RemoteRefusal.BAD_DURATION),
        (command(seconds=float("inf")), {}, RemoteRefusal.BAD_DURATION),
    ],
)
def test_remote_unlocks_that_must_be_refused(cmd, kwargs, reason):
    with pytest.raises(DoorCommandError) as info:
        check(cmd, **kwargs)
    assert info.value.reason is reason
    assert isinstance(info.value, ValueError)
