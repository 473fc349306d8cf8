"""A long-running command stops promptly on SIGTERM or SIGINT, and says which."""

from __future__ import annotations

import signal
import subprocess
import sys
import time

import pytest

pytestmark = pytest.mark.timeout(30)

PROGRAM = """
import sys
from gatepost.stopping import StopSignals
stop = StopSignals()
print("ready", flush=True)
while not stop.wait(60):
    pass
print(stop.name, flush=True)
"""


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_stop_signal_ends_the_wait_at_once(signum: signal.Signals) -> None:
    child = subprocess.Popen([sys.executable, "-c", PROGRAM], stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout is not None and child.stdout.readline().strip() == "ready"
        sent = time.monotonic()
        child.send_signal(signum)
        assert child.wait(10) == 0
        assert time.monotonic() - sent < 2.0
        assert child.stdout.read().strip() == signum.name.lower()
    finally:
        child.kill()


def test_wait_times_out_when_no_signal_comes() -> None:
    from gatepost.stopping import StopSignals

    previous = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        stop = StopSignals()
        began = time.monotonic()
        assert stop.wait(0.3) is False and stop.name == ""
        assert 0.25 <= time.monotonic() - began < 2.0
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
