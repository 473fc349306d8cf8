"""The gate's broker rotation: the next broker after each failure, round the list; one broker never moves."""

from __future__ import annotations

import pytest

from edge.failover import BrokerRotation
from protocol.mqtt import BrokerEndpoint, make_client

pytestmark = pytest.mark.timeout(30)

A, B, C = (BrokerEndpoint(f"10.0.0.{i}", 8883, "gate.s1.g1") for i in (1, 2, 3))


def test_each_failure_aims_the_next_connect_at_the_next_broker_round_the_list():
    rotation = BrokerRotation([A, B, C])
    client = make_client(A)
    rotation.start(client)
    assert (client.host, rotation.index) == ("10.0.0.1", 0)
    seen = []
    for _ in range(4):
        rotation.failed(client, "test")
        seen.append(client.host)
    assert seen == ["10.0.0.2", "10.0.0.3", "10.0.0.1", "10.0.0.2"]
    assert rotation.moves == 4 and rotation.current is B


def test_a_single_broker_is_retried_in_place():
    rotation = BrokerRotation([A])
    client = make_client(A)
    rotation.start(client)
    rotation.failed(client, "test")
    assert (client.host, rotation.moves, rotation.moved_at) == ("10.0.0.1", 0, None)


def test_a_gate_needs_a_broker():
    with pytest.raises(ValueError):
        BrokerRotation([])
