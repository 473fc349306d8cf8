"""Waiting for something another thread or process does: the tests' one polling loop."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def wait_until(predicate: Callable[[], T], timeout: float = 10.0, interval: float = 0.02) -> T:
    """Poll ``predicate`` until it returns something true or ``timeout`` seconds pass.

    Returns that value (so a test can wait for a list and use it), or the falsy one
    from a last look after the deadline: the timeout bounds a failing test, not a
    passing one, which goes on the moment the condition holds.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    return predicate()
