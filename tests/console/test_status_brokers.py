"""Which status the console believes when it reads two brokers: the newest, wherever it came from.

A gate that moved from broker A to broker B leaves its last status on A: the ``online``
of that connection, or the will A publishes when it notices the connection is gone
(possibly long after the gate is online on B).  The console must not show the gate
offline because of A; it must still show it offline when B publishes the gate's will.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest

from console.integrity import IngestGuard
from console.store import EventStore
from protocol import GateState, GateStatus

pytestmark = pytest.mark.timeout(30)

A, B = "10.0.0.1:8883", "10.0.0.2:8883"


def status(state: GateState, at: datetime, boot: str) -> GateStatus:
    return GateStatus(state=state, site="s", gate="g", boot=boot, time=at)


@pytest.fixture
def guard(tmp_path):
    with EventStore(tmp_path / "events.db") as store:
        yield IngestGuard(store)


def test_a_will_left_on_the_broker_the_gate_moved_from_is_not_believed(guard):
    boot = uuid.uuid4().hex
    t0 = datetime.now(UTC) - timedelta(seconds=20)
    on_a = status(GateState.ONLINE, t0, boot)
    will_a = status(
        GateState.OFFLINE, t0 - timedelta(milliseconds=5), boot
    )  # armed just before connecting to A
    will_b = status(GateState.OFFLINE, t0 + timedelta(seconds=3), boot)  # armed just before connecting to B
    on_b = status(GateState.ONLINE, t0 + timedelta(seconds=3, milliseconds=20), boot)

    assert guard.check_statuses([on_a], broker=A) == ([on_a], [])
    assert guard.check_statuses([on_b], broker=B) == ([on_b], [])
    # A notices the lost connection only now, after the gate is online on B: its will is old news.
    assert guard.check_statuses([will_a], broker=A) == ([], [])
    assert guard.superseded == 1
    # The gate then dies on B: B's will is believed, though older than B's own online.
    assert guard.check_statuses([will_b], broker=B) == ([will_b], [])
    # A restarted and sends its retained online again: still old news, and no rejection either.
    assert guard.check_statuses([on_a], broker=A) == ([], [])


def test_a_newer_status_from_the_other_broker_is_believed(guard):
    boot = uuid.uuid4().hex
    t0 = datetime.now(UTC) - timedelta(seconds=20)
    on_b = status(GateState.ONLINE, t0, boot)
    back_on_a = status(GateState.ONLINE, t0 + timedelta(seconds=5), boot)  # B died; the gate moved back
    assert guard.check_statuses([on_b], broker=B) == ([on_b], [])
    assert guard.check_statuses([back_on_a], broker=A) == ([back_on_a], [])
