"""Alarm rules from real events in the real store, and acknowledgement through the page."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from console.alarms import AlarmBook, AlarmKind, AlarmRules
from console.web.hub import Watcher
from tests.console.web.web_support import Web, login, make_event, make_status, post_form

T0 = datetime(2026, 11, 29, 18, 0, tzinfo=UTC)


def _denied(seq: int, seconds: float, gate: str = "north"):
    return make_event("s1", gate, seq, at=T0 + timedelta(seconds=seconds), granted=False, reason="unknown")


def _started(web: Web) -> Watcher:
    """The app's watcher with its state loaded from the store and its thread stopped: the test steps it."""
    watcher = web.app.state.watcher
    watcher.start()
    watcher.stop()
    watcher.outages.hold_s = 0  # no broker outage here: an offline raises at the step that reads it
    return watcher


def test_door_and_outbox_events_raise_alarms_once_each(web: Web):
    watcher = web.app.state.watcher
    watcher.start()
    watcher.stop()  # cursor now at the (empty) store's end
    events = [
        make_event("s1", "door-3", 1, "door.forced"),
        make_event("s1", "door-3", 2, "door.held_open", open_for_s=31.0),
        make_event("s1", "door-3", 3, "door.tamper"),
        make_event("s1", "north", 1, "outbox.overflow", dropped=12),
        make_event("s1", "north", 2, "access.scan", granted=True, reason="granted"),
        make_event("s1", "door-3", 4, "door.closed", open_for_s=40.0, forced=True, held_open=True),
    ]
    web.store.commit(events)
    while watcher.step_events():
        pass
    alarms = web.ctx.alarms.list()
    assert sorted(a.kind for a in alarms) == sorted(
        ["door.forced", "door.held_open", "door.tamper", "outbox.overflow"]
    )
    held = next(a for a in alarms if a.kind == "door.held_open")
    assert held.detail == {"open_for_s": 31.0} and held.gate == "door-3"
    # Reading the same events again (a restart before the cursor was saved) raises nothing new.
    assert web.ctx.alarms.observe_events(web.store.events_after(0)) == []
    assert web.ctx.alarms.open_count() == 4


def test_a_burst_of_denials_at_one_gate_raises_one_alarm(web: Web):
    book = AlarmBook(web.ctx.db, AlarmRules(denials=5, window_s=60))
    spread = [_denied(i, i * 20.0) for i in range(1, 6)]  # 5 denials over 80 s: no burst
    assert book.observe_events(spread) == []
    burst = [_denied(10 + i, 200 + i * 5.0) for i in range(5)]  # 5 in 20 s
    other_gate = [_denied(i, 200 + i, gate="south") for i in range(1, 5)]  # only 4 there
    raised = book.observe_events([*other_gate, *burst])
    assert [(a.kind, a.gate, a.detail["denials"]) for a in raised] == [(AlarmKind.DENIED_BURST, "north", 5)]
    assert raised[0].event_id == burst[-1].id
    granted = make_event("s1", "north", 30, granted=True, reason="granted", at=T0 + timedelta(seconds=230))
    assert book.observe_events([granted, _denied(31, 231)]) == []  # the window starts afresh


def test_the_burst_threshold_comes_from_the_configuration(web_factory):
    web = web_factory(alarm_denials=3, alarm_window_s=10)
    raised = web.ctx.alarms.observe_events([_denied(i, i) for i in range(1, 4)])
    assert len(raised) == 1 and raised[0].detail["window_s"] == 10


def test_a_gate_going_offline_raises_an_alarm(web: Web):
    watcher = _started(web)
    web.store.commit(statuses=[make_status("s1", "north", "online", backlog=0)])
    watcher.step_statuses()
    assert web.ctx.alarms.list() == []
    web.store.commit(statuses=[make_status("s1", "north", "offline")])
    watcher.step_statuses()
    alarms = web.ctx.alarms.list()
    assert [(a.kind, a.gate) for a in alarms] == [("gate.offline", "north")]
    watcher.step_statuses()  # the same status again: no second alarm
    assert len(web.ctx.alarms.list()) == 1


def test_the_retained_offline_status_received_again_raises_no_second_alarm(web: Web):
    """The broker re-sends a gate's retained will at every subscribe: stored again, at a new time."""
    watcher = _started(web)
    offline = make_status("s1", "north", "offline")
    web.store.commit(statuses=[offline])
    watcher.step_statuses()
    web.store.commit(statuses=[offline])  # the ingestor reconnected
    watcher.step_statuses()
    assert [a.kind for a in web.ctx.alarms.list()] == ["gate.offline"]


def test_a_restart_takes_the_stored_state_as_the_one_before(web_factory):
    first = web_factory()
    offline = make_status("s1", "north", "offline")
    watcher = _started(first)
    first.store.commit(statuses=[offline])
    watcher.step_statuses()
    assert first.ctx.alarms.open_count() == 1
    again = web_factory()  # the console restarted on the same store ...
    watcher = _started(again)
    again.store.commit(statuses=[offline])  # ... and its ingestor stored the re-sent will
    watcher.step_statuses()
    assert again.ctx.alarms.open_count() == 1
    again.store.commit(statuses=[make_status("s1", "north", "online")])
    watcher.step_statuses()
    again.store.commit(statuses=[offline])  # back, then gone again: a new outage
    watcher.step_statuses()
    (alarm,) = again.ctx.alarms.list(open_only=True)  # counted into the open one: one per kind and gate
    assert (alarm.kind, alarm.count) == ("gate.offline", 2)


def test_an_outage_while_the_console_was_down_raises_though_the_gate_was_offline_before(web_factory):
    """Offline, acknowledged; console down; the gate came back and went away again: a new will."""
    first = web_factory()
    watcher = _started(first)
    first.store.commit(statuses=[make_status("s1", "north", "offline", time=T0)])
    watcher.step_statuses()
    (alarm,) = first.ctx.alarms.list()
    first.ctx.alarms.acknowledge(alarm.row_id, "ana", "technician called")
    again = web_factory()  # restarted on the same store: the board shows the first outage
    watcher = _started(again)
    again.store.commit(statuses=[make_status("s1", "north", "offline", time=T0)])  # re-sent will
    watcher.step_statuses()
    assert again.ctx.alarms.open_count() == 0
    later = T0 + timedelta(hours=2)  # the will of the connection made after its return
    again.store.commit(statuses=[make_status("s1", "north", "offline", time=later)])
    watcher.step_statuses()
    assert [(a.kind, a.gate) for a in again.ctx.alarms.list(open_only=True)] == [("gate.offline", "north")]
    (row,) = [r for r in again.app.state.watcher.board.rows() if r.gate == "north"]
    assert row.state == "offline" and row.state_since is not None
    assert row.state_since == row.status_received_at  # offline since the new outage, not the old


def test_an_operator_acknowledges_with_a_note_and_it_is_audited(web: Web):
    web.add_user("ana")
    (alarm,) = web.ctx.alarms.observe_events([make_event("s1", "north", 1, "door.forced")])
    with web.client() as client:
        login(client, "ana")
        page = client.get("/alarms")
        assert "Door forced open" in page.text
        empty = post_form(client, f"/alarms/{alarm.row_id}/ack", {"note": "  "}, page="/alarms")
        assert empty.status_code == 400 and "note is required" in empty.text
        done = post_form(
            client, f"/alarms/{alarm.row_id}/ack", {"note": "guard checked: wind"}, page="/alarms"
        )
        assert done.status_code == 303
        again = post_form(client, f"/alarms/{alarm.row_id}/ack", {"note": "again"}, page="/alarms")
        assert again.status_code == 400 and "already acknowledged" in again.text
        assert "guard checked: wind" in client.get("/alarms?show=all").text
    stored = web.ctx.alarms.get(alarm.row_id)
    assert stored is not None and (stored.acked_by, stored.note) == ("ana", "guard checked: wind")
    entry = next(e for e in web.ctx.audit.entries() if e.action == "alarm.ack")
    assert entry.user == "ana" and entry.detail == {"note": "guard checked: wind"}
