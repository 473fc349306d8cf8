"""Properties of the door state machine over arbitrary sequences of inputs, commands and ticks.

Hypothesis generates the sequences; each step advances the clock by a random amount
(0 included, so simultaneous inputs happen) and applies one input.  Ticks are just one
more input, so sequences where the timer thread ran late or not at all are covered.
"""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from edge.door import DoorEventType, DoorMachine, DoorSettings

S = 1_000_000_000
MS = 1_000_000
E = DoorEventType

ACTIONS = st.one_of(
    st.tuples(st.just("grant")),
    st.tuples(st.just("deny")),
    st.tuples(st.just("exit")),
    st.tuples(st.just("remote_unlock"), st.floats(0.001, 30.0)),
    st.tuples(st.just("remote_lock")),
    st.tuples(st.just("open")),
    st.tuples(st.just("close")),
    st.tuples(st.just("tamper"), st.booleans()),
    st.tuples(st.just("tick")),
    st.tuples(st.just("relay_cut")),
)
STEPS = st.lists(st.tuples(st.integers(0, 12_000).map(lambda ms: ms * MS), ACTIONS), max_size=60)
SETTINGS = st.builds(
    lambda unlock, extra, relock, pre, held: DoorSettings(
        unlock_s=unlock,
        max_unlock_s=unlock + extra,
        relock_on_open=relock,
        prealarm_s=pre,
        held_open_s=None if pre is None or held is None else pre + held,
    ),
    st.floats(0.1, 10.0),
    st.floats(0.0, 20.0),
    st.booleans(),
    st.none() | st.floats(0.5, 20.0),
    st.none() | st.floats(0.5, 20.0),
)


class Reference:
    """The lock, and nothing else, modelled the simplest way: an unlocked-until time."""

    def __init__(self, cfg: DoorSettings) -> None:
        self.cfg = cfg
        self.until: int | None = None
        self.since = 0

    def locked(self, t: int) -> bool:
        return self.until is None or t >= self.until

    def unlock(self, t: int, seconds: float) -> None:
        if self.locked(t):
            self.since, self.until = t, None
        limit = self.since + round(self.cfg.max_unlock_s * S)
        until = min(t + round(seconds * S), limit)
        self.until = until if self.until is None else max(self.until, until)

    def lock(self) -> None:
        self.until = None


def run(cfg: DoorSettings, steps, door_closed: bool = True):
    door = DoorMachine(cfg)
    ref = Reference(cfg)
    t = 1_000 * S
    log = [(t, "start", door.start(t, door_closed=door_closed))]
    is_open = not door_closed
    for dt, action in steps:
        t += dt
        name = action[0]
        was_locked = ref.locked(t)
        if name == "grant":
            events = door.access(granted=True, now_ns=t, credential="c", reason="granted")
            ref.unlock(t, cfg.unlock_s)
        elif name == "deny":
            events = door.access(granted=False, now_ns=t, credential="c", reason="unknown")
        elif name == "exit":
            events = door.exit_pressed(t)
            ref.unlock(t, cfg.unlock_s)
        elif name == "remote_unlock":
            seconds = min(action[1], cfg.max_unlock_s)
            events = door.remote_unlock(seconds=seconds, now_ns=t)
            ref.unlock(t, seconds)
        elif name == "remote_lock":
            events = door.remote_lock(now_ns=t)
            ref.lock()
        elif name == "open":
            events = door.door(closed=False, now_ns=t)
            if not is_open and not was_locked and cfg.relock_on_open:
                ref.lock()
        elif name == "close":
            events = door.door(closed=True, now_ns=t)
        elif name == "tamper":
            events = door.tamper(active=action[1], now_ns=t)
        elif name == "relay_cut":
            events = door.relay_cut(now_ns=t)
            ref.lock()
        else:
            events = door.tick(t)
        log.append((t, (name, was_locked, is_open), events))
        if name == "open":
            is_open = True
        elif name == "close":
            is_open = False
        assert door.unlocked == (not ref.locked(t)), (name, t)
    return door, log, t


@settings(max_examples=400, deadline=None)
@given(cfg=SETTINGS, steps=STEPS)
def test_the_lock_is_never_released_past_its_maximum(cfg, steps):
    door, log, t_end = run(cfg, steps)
    max_ns = round(cfg.max_unlock_s * S)
    on_since = None
    for t, _, events in log:
        for event in events:
            assert event.at_ns <= t  # nothing is dated in the future
            if event.type is E.UNLOCKED and not event.data["extended"]:
                assert on_since is None
                on_since = event.at_ns
            elif event.type is E.LOCKED and on_since is not None:
                assert event.at_ns - on_since <= max_ns
                on_since = None
        if on_since is not None:
            assert t - on_since < max_ns  # observed unlocked: still within the maximum
    door.tick(t_end + max_ns)
    assert not door.unlocked and not door.outputs.unlocked


@settings(max_examples=400, deadline=None)
@given(cfg=SETTINGS, steps=STEPS, start_closed=st.booleans())
def test_forced_open_fires_exactly_when_the_door_opens_while_locked(cfg, steps, start_closed):
    _, log, _ = run(cfg, steps, door_closed=start_closed)
    for t, what, events in log[1:]:
        name, was_locked, was_open = what
        forced = [e for e in events if e.type is E.FORCED]
        if name == "open" and not was_open:
            assert len(forced) == 1 if was_locked else not forced, (t, was_locked)
            if forced:
                assert forced[0].at_ns == t
        else:
            assert not forced


@settings(max_examples=400, deadline=None)
@given(cfg=SETTINGS, steps=STEPS, start_closed=st.booleans())
def test_every_opening_and_closing_is_reported_once(cfg, steps, start_closed):
    _, log, _ = run(cfg, steps, door_closed=start_closed)
    opened_at_start = sum(e.type is E.OPENED for e in log[0][2])
    assert opened_at_start == (0 if start_closed else 1)
    for _, what, events in log[1:]:
        name, _, was_open = what
        openings = [e for e in events if e.type in (E.OPENED, E.FORCED)]
        closings = [e for e in events if e.type is E.CLOSED]
        changed = (name == "open" and not was_open) or (name == "close" and was_open)
        if name == "open":
            assert len(openings) == (1 if changed else 0)
        else:
            assert not openings
        assert len(closings) == (1 if name == "close" and changed else 0)


@settings(max_examples=200, deadline=None)
@given(cfg=SETTINGS, steps=STEPS)
def test_held_open_alarms_only_while_open_and_in_order(cfg, steps):
    _, log, _ = run(cfg, steps)
    is_open, warned, alarmed = False, False, False
    for _, _what, events in log[1:]:
        for event in events:
            if event.type in (E.OPENED, E.FORCED):
                is_open, warned, alarmed = True, False, False
            elif event.type is E.CLOSED:
                assert event.data["held_open"] == alarmed
                is_open = False
            elif event.type is E.HELD_OPEN_WARNING:
                assert is_open and not warned and not alarmed
                warned = True
            elif event.type is E.HELD_OPEN:
                assert is_open and warned and not alarmed
                alarmed = True
