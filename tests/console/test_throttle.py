"""The hashing throttle: one check at a time, a bounded rate, a bounded queue, one place per address."""

from __future__ import annotations

import threading
import time

import pytest

from console.throttle import HashThrottle, ThrottleBusy


class FakeClock:
    """Time that moves only when a waiter sleeps: the pacing is checked exactly, without waiting."""

    def __init__(self) -> None:
        self.now = 0.0
        self.lock = threading.Lock()

    def __call__(self) -> float:
        with self.lock:
            return self.now

    def sleep(self, seconds: float) -> None:
        with self.lock:
            self.now += seconds


def test_after_the_burst_turns_start_at_the_rate():
    clock = FakeClock()
    throttle = HashThrottle(rate=4.0, burst=2, clock=clock, sleep=clock.sleep)
    starts = []
    for i in range(6):
        with throttle.turn(f"10.0.0.{i}"):
            starts.append(clock())
    assert starts == [0.0, 0.0, 0.25, 0.5, 0.75, 1.0]


def test_a_second_check_from_one_address_and_a_full_queue_are_refused_at_once():
    throttle = HashThrottle(concurrency=1, waiting=2)
    inside = threading.Event()
    release = threading.Event()

    def hold(address: str) -> None:
        with throttle.turn(address):
            inside.set()
            release.wait(10)

    holder = threading.Thread(target=hold, args=("10.0.0.1",))
    holder.start()
    assert inside.wait(10)
    with pytest.raises(ThrottleBusy), throttle.turn("10.0.0.1"):  # the same address, while its first runs
        pass
    waiters = [threading.Thread(target=hold, args=(f"10.0.0.{i}",)) for i in (2, 3)]
    for waiter in waiters:
        waiter.start()
    deadline = time.monotonic() + 10
    while len(throttle._holders) < 3 and time.monotonic() < deadline:
        time.sleep(0.01)
    started = time.monotonic()
    with pytest.raises(ThrottleBusy), throttle.turn("10.0.0.4"):  # one running, two waiting: no fourth
        pass
    assert time.monotonic() - started < 0.5  # refused, not queued
    release.set()
    for thread in (holder, *waiters):
        thread.join(10)
    assert throttle.refused == 2
    with throttle.turn("10.0.0.1"):  # places are given back
        pass


def test_queued_checks_all_get_their_turn_one_at_a_time():
    throttle = HashThrottle(concurrency=1, rate=1000.0, burst=1000, waiting=20)
    order: list[int] = []
    running = 0
    most = 0
    lock = threading.Lock()
    gate = threading.Lock()
    gate.acquire()

    def check(i: int) -> None:
        nonlocal running, most
        with throttle.turn(f"10.0.1.{i}"):
            with lock:
                running += 1
                most = max(most, running)
                order.append(i)
            if i == 0:
                gate.acquire()  # the first holds its turn until every other is queued
            with lock:
                running -= 1

    threads = []
    for i in range(10):
        thread = threading.Thread(target=check, args=(i,))
        thread.start()
        threads.append(thread)
        deadline = time.monotonic() + 10
        while throttle._issued <= i and time.monotonic() < deadline:
            time.sleep(0.001)
    gate.release()
    for thread in threads:
        thread.join(10)
    assert sorted(order) == list(range(10)) and most == 1
