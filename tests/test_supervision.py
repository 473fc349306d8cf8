"""Liveness: the watchdog pings stop exactly when a part has shown no progress for the deadline."""

from __future__ import annotations

import threading
import time
from concurrent.futures import Future

from gatepost.sdnotify import Notifier
from gatepost.supervision import NEVER, Check, FutureProbe, InFlight, Liveness, Supervisor, ThreadsAlive
from simulator.service import NotifySocket


def test_in_flight_is_fine_idle_and_stale_while_a_call_hangs():
    tracker = InFlight("decision")
    assert tracker.progress_at(100.0) == 100.0  # nothing in flight
    with tracker:
        started = time.monotonic()
        with tracker:  # nested on one thread: counted once, from the outermost
            pass
        assert started - 0.1 <= tracker.progress_at(time.monotonic()) <= started + 0.1
    assert tracker.progress_at(200.0) == 200.0

    release = threading.Event()
    entered = threading.Event()

    def hang() -> None:
        with tracker:
            entered.set()
            release.wait(5)

    thread = threading.Thread(target=hang)
    thread.start()
    entered.wait(5)
    liveness = Liveness([tracker], deadline_s=1.0)
    assert liveness.wedged() == []
    assert [w.name for w in liveness.wedged(time.monotonic() + 2.0)] == ["decision"]
    release.set()
    thread.join()
    assert liveness.wedged(time.monotonic() + 2.0) == []


def test_future_probe_waits_for_an_answer_and_counts_a_failure_as_one():
    asked: list[Future[int]] = []

    def ask() -> Future[int]:
        asked.append(Future())
        return asked[-1]

    probe = FutureProbe("outbox-writer", ask)
    assert probe.progress_at(10.0) == 10.0 and len(asked) == 1
    assert probe.progress_at(15.0) == 10.0  # unanswered: progress stays at the question
    assert len(asked) == 1  # one question at a time
    asked[0].set_exception(OSError("disk full"))  # an answer all the same
    assert probe.progress_at(16.0) == 16.0 and len(asked) == 2


def test_check_and_threads_alive():
    passing = [True]
    check = Check("door", lambda: passing[0])
    assert check.progress_at(1.0) == 1.0
    passing[0] = False
    assert check.progress_at(5.0) == 1.0
    passing[0] = True
    assert check.progress_at(6.0) == 6.0
    assert ThreadsAlive("readers", lambda: False).progress_at(1.0) == NEVER


def test_supervisor_pings_only_while_every_part_moves():
    alive = [True]
    with NotifySocket() as listener:
        notifier = Notifier(listener.address, watchdog_usec=1_000_000)
        supervisor = Supervisor(notifier, [Check("writer", lambda: alive[0])], lambda: "backlog 7")
        assert supervisor.tick()
        ping = listener.wait_for("WATCHDOG", "1")
        assert ping is not None and ping.fields["STATUS"] == "backlog 7"
        alive[0] = False
        assert supervisor.tick()  # silent for less than the deadline so far
        time.sleep(1.1)
        before = time.monotonic()
        assert not supervisor.tick()
        wedged = listener.wait_for("STATUS", after=before)
        assert wedged is not None and wedged.fields["STATUS"].startswith("WEDGED: writer")
        assert "WATCHDOG" not in wedged.fields
        alive[0] = True
        assert supervisor.tick()
        supervisor.stopping()
        assert listener.wait_for("STOPPING", "1") is not None


def test_supervisor_without_a_service_manager_does_nothing():
    supervisor = Supervisor(Notifier(None), [], lambda: "x")
    supervisor.ready()
    assert supervisor.liveness is None
    supervisor.stopping()
