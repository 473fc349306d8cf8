"""The resend tracker: an event lost mid-stream is sent again while later ones are acknowledged."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edge.resend import ResendTracker


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def tracker(clock: FakeClock, rto: float = 15.0, overtaken: float = 2.0) -> ResendTracker:
    return ResendTracker(rto, overtaken, clock=clock)


def test_nothing_is_due_before_a_deadline(clock):
    t = tracker(clock)
    for seq in range(1, 11):
        t.sent(seq)
    clock.advance(14.9)
    assert t.due() == []
    assert len(t) == 10


def test_an_event_overtaken_by_a_later_acknowledgement_is_due_after_the_short_wait(clock):
    t = tracker(clock)
    for seq in range(1, 101):
        t.sent(seq)
    clock.advance(0.05)
    t.acked([*range(1, 40), *range(41, 101)])  # 40 lost between gate and console
    assert t.due() == []
    clock.advance(1.9)
    assert t.due() == []
    clock.advance(0.2)
    assert t.due() == [40]
    assert not t.silent()


def test_a_lost_event_is_found_while_later_events_keep_flowing(clock):
    """The issue's hole: later events acknowledged, the lost one resent long before any reconnect."""
    t = tracker(clock)
    seq = 0
    resent: list[int] = []
    for _ in range(200):  # 20 s of a steady stream, 10 events a second, event 25 lost once
        for _ in range(1):
            seq += 1
            t.sent(seq)
        clock.advance(0.1)
        acked = [s for s in range(max(1, seq - 3), seq) if s != 25 and s in t]
        t.acked(acked)
        for due in t.due():
            resent.append(due)
            t.sent(due)
            clock.advance(0.01)
            t.acked([due])
    assert resent == [25]
    assert 25 not in t


def test_resends_of_a_lost_event_back_off_while_the_stream_flows(clock):
    """A message the console keeps refusing is offered again ever more rarely, not every 2 s for ever."""
    t = tracker(clock)
    t.sent(1)
    seq, times = 1, []
    while len(times) < 10:
        seq += 1
        t.sent(seq)
        clock.advance(0.5)
        t.acked([seq])
        if t.due() == [1]:
            times.append(clock.now)
            t.sent(1)
    gaps = [round(b - a) for a, b in itertools.pairwise(times)]
    assert gaps == [4, 8, 16, 32, 64, 128, 256, 300, 300]  # doubling from the 2 s wait, capped


def test_a_silent_console_is_probed_ever_more_rarely(clock):
    t = tracker(clock, rto=10.0)
    t.sent(1)
    t.sent(2)
    times = []
    for _ in range(7):
        while not (due := t.due()):
            clock.advance(0.5)
        assert len(due) == 1
        times.append(clock.now)
        t.sent(due[0])
    gaps = [round(b - a) for a, b in itertools.pairwise(times)]
    assert gaps == [10, 20, 40, 80, 160, 300]


def test_a_silent_console_gets_one_probe_not_the_whole_window(clock):
    t = tracker(clock, rto=15.0)
    for seq in range(1, 501):
        t.sent(seq)
    clock.advance(15.5)
    assert t.silent()
    assert t.due() == [1]
    t.sent(1)
    clock.advance(1.0)
    assert t.due() == []  # the others wait while the probe is out
    clock.advance(30.0)
    assert t.due() == [2]  # the next probe is the event sent longest ago


def test_when_the_console_speaks_again_queued_events_get_a_timeout_to_arrive(clock):
    """After an outage the console drains what the broker queued for it: no duplicate storm."""
    t = tracker(clock, rto=15.0)
    for seq in range(1, 501):
        t.sent(seq)
    clock.advance(20.0)
    assert t.due() == [1]
    t.sent(1)  # the probe
    clock.advance(5.0)
    t.acked([1])  # the first copy of 1 arrives: by Karn's rule it counts as the first send
    assert t.due() == []
    for seq in range(2, 400):  # the drain goes on, in order
        clock.advance(0.01)
        t.acked([seq])
        assert t.due() == []
    clock.advance(15.1)
    t.sent(501)  # the console is alive: new events are acknowledged
    clock.advance(0.01)
    t.acked([501])  # ... and overtakes the ones that never came
    assert t.due() == []
    clock.advance(2.1)
    assert t.due() == list(range(400, 501))  # sent again, oldest first


def test_acknowledging_a_resent_event_does_not_condemn_events_sent_between_its_copies(clock):
    t = tracker(clock)
    t.sent(1)
    for seq in range(2, 50):
        t.sent(seq)
    clock.advance(16.0)
    assert t.due() == [1]
    t.sent(1)
    clock.advance(0.01)
    t.acked([1])  # which copy? Unknown — so 2..49 are not taken for lost
    clock.advance(2.5)
    assert t.due() == []


def test_ranges_far_wider_than_the_window_cost_only_the_window(clock):
    t = tracker(clock)
    t.sent(10**15)
    assert t.acked_range(1, 10**18) == 1
    assert len(t) == 0


def test_clear_forgets_everything(clock):
    t = tracker(clock)
    for seq in range(1, 5):
        t.sent(seq)
    t.clear()
    clock.advance(100)
    assert t.due() == []
    assert t.next_deadline() is None


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.one_of(
            st.tuples(st.just("send"), st.integers(1, 5)),
            st.tuples(st.just("ack"), st.lists(st.integers(0, 40), max_size=5)),
            st.tuples(st.just("wait"), st.floats(0.0, 400.0)),
            st.tuples(st.just("resend"), st.just(0)),
        ),
        max_size=60,
    )
)
def test_nothing_in_flight_is_forgotten(steps):
    """Whatever happens, an event still in flight becomes due within its longest back-off."""
    clock = FakeClock()
    t = tracker(clock, rto=5.0, overtaken=1.0)
    next_seq = 1
    for kind, arg in steps:
        if kind == "send":
            for _ in range(arg):
                t.sent(next_seq)
                next_seq += 1
        elif kind == "ack":
            t.acked([s for s in arg if s < next_seq])
        elif kind == "wait":
            clock.advance(arg)
        else:
            for seq in t.due():
                assert seq in t
                t.sent(seq)
    outstanding = {s for s in range(1, next_seq) if s in t}
    seen: set[int] = set()
    for _ in range(len(outstanding) + 2):
        clock.advance(301.0)
        for seq in t.due():
            assert seq in outstanding
            seen.add(seq)
            t.sent(seq)
    assert seen == outstanding
    deadline = t.next_deadline()
    assert (deadline is None) == (not outstanding)


def test_a_console_that_answers_a_probe_and_then_nothing_more_gets_the_rest_at_once(clock):
    """A console whose session was lost: the broker dropped what the gate sent meanwhile."""
    t = tracker(clock, rto=15.0)
    for seq in range(1, 53):
        t.sent(seq)
    clock.advance(15.0)
    assert t.due() == [1]
    t.sent(1)
    clock.advance(0.05)
    t.acked([1])  # alive, but it never had 2..52
    clock.advance(14.9)
    assert t.due() == []
    clock.advance(0.2)
    assert t.due() == list(range(2, 53))  # all of them, not one probe per 15 s
    for seq in range(2, 53):
        t.sent(seq)
    clock.advance(30.5)  # their second send: twice the wait
    assert len(t.due()) == 1  # silent again after that round: back to probing


def test_a_console_draining_with_several_workers_does_not_condemn_its_queue_as_overtaken(clock):
    """Two $share ingest workers after an outage: one acknowledges fresh events while the other
    still works through what the broker queued.  The queued events are not lost and must not be
    resent 2 s later (bench/fleet.py counted thousands of such copies); those the console never
    acknowledges are still resent once the drain's timeout has passed."""
    t = tracker(clock, rto=15.0)
    for seq in range(1, 301):
        t.sent(seq)  # published, queued at the broker while the console is down
    clock.advance(17.0)
    assert t.due() == [1]  # the silence: one probe
    t.sent(1)
    clock.advance(1.0)
    for seq in range(301, 311):
        t.sent(seq)  # the gate keeps scanning
    clock.advance(0.1)
    t.acked([301])  # worker 1: a fresh event, overtaking the whole queue
    clock.advance(0.1)
    t.acked(range(2, 40))  # worker 0: the queue, from its oldest
    for _ in range(40):
        clock.advance(0.25)
        assert t.due() == [], "the queue being drained is not resent"
    t.acked([*range(40, 290), *range(302, 311)])
    clock.advance(14.9)  # the queue's last acknowledgement was the last sign of it
    assert t.due() == []
    clock.advance(0.2)  # one timeout after it
    assert t.due() == [1, *range(290, 301)]  # never acknowledged: sent again, nothing forgotten


def test_a_long_drain_after_a_long_outage_sends_nothing_twice(clock):
    """A 10-minute console outage leaves minutes of queue at the broker; the console works
    through it in order.  While it does, the rest of the queue is behind, not lost: nothing is
    resent (1,000 gates once sent 160,388 copies of 120,842 queued events, each gate's queue
    timed out 15 s into a 112 s drain).  What never arrives is resent one timeout after the
    queue's last acknowledgement."""
    t = tracker(clock, rto=15.0)
    for seq in range(1, 121):
        t.sent(seq)
        clock.advance(5.0)  # 10 minutes of a gate's events, the console down
        for probe in t.due():
            t.sent(probe)
    probes = t.resends
    assert probes <= 6, "a silent console is probed, ever more rarely"
    for seq in range(1, 110):  # the drain: this gate's share of it, one every second
        clock.advance(1.0)
        t.acked([seq])
        if seq % 5 == 0:
            t.sent(1000 + seq)  # the gate keeps scanning: queued behind the drain too
        assert t.due() == [], f"resent while the queue drains (at {seq})"
    assert t.resends == probes
    clock.advance(14.9)
    assert t.due() == []
    clock.advance(0.2)
    fresh = [1000 + seq for seq in range(5, 110, 5)]
    assert t.due() == [*range(110, 121), *fresh]  # never came: sent again, nothing forgotten
