"""The reopen loop every reader shares, driven by a scripted device and a stop event that records its waits."""

from __future__ import annotations

import threading
import time

import pytest

from drivers.reconnect import Backoff, DeviceLost, describe, keep_reading


class RecordedStop(threading.Event):
    """A stop event whose waits are written down and return at once, so a backoff is seen without sleeping."""

    def __init__(self) -> None:
        super().__init__()
        self.waits: list[float | None] = []

    def wait(self, timeout: float | None = None) -> bool:
        self.waits.append(timeout)
        return self.is_set()


class ScriptedDevice:
    """Each open takes the next step of the script and does what it says.

    ``absent``: the open fails.  ``lost``: it opens, then the read fails.  ``ended``: it
    opens and the read returns (a file played out).  ``bug``: the read raises what no
    reader expects.  ``close``: the reader is closed while reading, so the read fails.
    ``closed-while-opening``: the reader is closed while the open is under way.
    """

    def __init__(self, stop: threading.Event, *script: str) -> None:
        self.stop = stop
        self.script = list(script)
        self.happened: list[tuple[object, ...]] = []
        self._opened = 0
        self._next = ""

    def open(self) -> int:
        step = self.script.pop(0)
        if step == "absent":
            raise OSError("no such device")
        if step == "closed-while-opening":
            self.stop.set()
        self._opened += 1
        self.happened.append(("open", self._opened))
        self._next = step
        return self._opened

    def read(self, device: int) -> None:
        self.happened.append(("read", device))
        if self._next == "lost":
            raise OSError("device gone")
        if self._next == "bug":
            raise RuntimeError("a bug")
        if self._next == "close":
            self.stop.set()
            raise OSError("read cut short")

    def close(self, device: int) -> None:
        self.happened.append(("close", device))

    def on_lost(self, error: Exception, opened: bool) -> None:
        self.happened.append(("lost", str(error), opened))

    def run(self, backoff: Backoff, *, reopen_at_end: bool = False) -> None:
        keep_reading(
            self.open,
            self.read,
            self.close,
            stop=self.stop,
            backoff=backoff,
            on_lost=self.on_lost,
            errors=(OSError,),
            reopen_at_end=reopen_at_end,
        )


FIXED = Backoff(1.0, 8.0, jitter=0.0)


def test_backoff_doubles_up_to_its_cap():
    assert [FIXED.delay(n) for n in range(1, 7)] == [1.0, 2.0, 4.0, 8.0, 8.0, 8.0]
    assert FIXED.delay(10_000) == 8.0  # a device away for days does not overflow


def test_backoff_jitter_only_ever_shortens_the_wait():
    backoff = Backoff(0.2, 5.0)
    delays = [backoff.delay(3) for _ in range(500)]
    assert all(0.75 * 0.8 <= d <= 0.8 for d in delays)
    assert len(set(delays)) > 1


def test_a_fixed_pause_is_a_backoff_from_one_value_to_itself():
    pause = Backoff(1.0, 1.0, jitter=0.0)
    assert {pause.delay(n) for n in range(1, 10)} == {1.0}


@pytest.mark.parametrize(
    ("min_s", "max_s", "jitter"), [(0, 1, 0.25), (-1, 1, 0.25), (2, 1, 0.25), (1, 2, 1.5)]
)
def test_bad_backoff_settings_are_refused(min_s, max_s, jitter):
    with pytest.raises(ValueError):
        Backoff(min_s, max_s, jitter)


def test_waits_grow_while_absent_and_start_again_from_the_shortest_after_a_device_that_worked():
    stop = RecordedStop()
    device = ScriptedDevice(stop, "absent", "absent", "absent", "lost", "absent", "close")
    device.run(FIXED)
    assert stop.waits == [1.0, 2.0, 4.0, 1.0, 2.0]
    assert device.happened == [
        ("lost", "no such device", False),
        ("lost", "no such device", False),
        ("lost", "no such device", False),
        ("open", 1),
        ("read", 1),
        ("lost", "device gone", True),  # reported before the device is closed
        ("close", 1),
        ("lost", "no such device", False),
        ("open", 2),
        ("read", 2),
        ("close", 2),  # the read the close cut short is not a lost device
    ]


def test_a_reader_closed_while_opening_closes_the_device_without_reading_it():
    stop = RecordedStop()
    device = ScriptedDevice(stop, "closed-while-opening")
    device.run(FIXED)
    assert device.happened == [("open", 1), ("close", 1)]
    assert stop.waits == []


def test_a_device_that_ends_finishes_the_loop_or_is_reopened_at_once():
    stop = RecordedStop()
    once = ScriptedDevice(stop, "ended")
    once.run(FIXED)
    assert once.happened == [("open", 1), ("read", 1), ("close", 1)]

    looped = ScriptedDevice(stop, "ended", "ended", "close")
    looped.run(FIXED, reopen_at_end=True)
    assert [event for event in looped.happened if event[0] == "open"] == [
        ("open", 1),
        ("open", 2),
        ("open", 3),
    ]
    assert stop.waits == []


def test_an_unexpected_error_is_a_bug_not_an_outage_and_still_closes_the_device():
    stop = RecordedStop()
    device = ScriptedDevice(stop, "bug")
    with pytest.raises(RuntimeError):
        device.run(FIXED)
    assert device.happened == [("open", 1), ("read", 1), ("close", 1)]


def test_device_lost_is_always_a_loss_and_other_errors_only_when_named():
    stop = RecordedStop()
    lost: list[tuple[str, bool]] = []

    def gone() -> int:
        if lost:
            stop.set()
        raise DeviceLost("cannot open /dev/video0")

    keep_reading(gone, print, print, stop=stop, backoff=FIXED, on_lost=lambda e, o: lost.append((str(e), o)))
    assert lost == [("cannot open /dev/video0", False), ("cannot open /dev/video0", False)]

    def refused() -> int:
        raise OSError("not named as an outage")

    with pytest.raises(OSError, match="not named"):
        keep_reading(refused, print, print, stop=threading.Event(), backoff=FIXED, on_lost=print)


def test_stop_is_prompt_in_the_middle_of_a_long_wait():
    stop = threading.Event()
    reported = threading.Event()

    def absent() -> int:
        raise OSError("unplugged")

    thread = threading.Thread(
        target=keep_reading,
        args=(absent, print, print),
        kwargs={
            "stop": stop,
            "backoff": Backoff(30.0, 60.0),
            "on_lost": lambda error, opened: reported.set(),
            "errors": (OSError,),
        },
    )
    thread.start()
    assert reported.wait(3)
    began = time.monotonic()
    stop.set()
    thread.join(3)
    assert not thread.is_alive()
    assert time.monotonic() - began < 1.0


def test_describe_is_never_empty_and_never_a_page():
    assert describe(OSError()) == "OSError"
    assert describe(OSError("  \n")) == "OSError"
    assert describe(OSError("x" * 500)) == "x" * 200 + "…"
    assert describe(ValueError("bad URL")) == "bad URL"
