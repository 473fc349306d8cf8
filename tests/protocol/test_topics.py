"""The topic tree: one subtree per gate, names that can never carry a wildcard."""

from __future__ import annotations

import pytest

from protocol import GateTopics, ProtocolError, TopicKind, parse_topic
from protocol.topics import all_sites_filter, console_status_topic, site_filter


def test_gate_topics_and_parse_are_inverse():
    topics = GateTopics("longtan", "north-1")
    for kind in TopicKind:
        ref = parse_topic(topics.topic(kind))
        assert (ref.site, ref.gate, ref.kind) == ("longtan", "north-1", kind)
    assert topics.event == "gatepost/v1/longtan/north-1/event"


@pytest.mark.parametrize("name", ["", "A", "a b", "a/b", "+", "#", "$console", "x" * 33, "-a"])
def test_illegal_names_are_refused(name: str):
    with pytest.raises(ProtocolError):
        GateTopics("site", name)


@pytest.mark.parametrize(
    "topic",
    [
        "gatepost/v1/s/g",
        "gatepost/v2/s/g/event",
        "gatepost/v1/s/g/evil",
        "gatepost/v1/S/g/event",
        "a/b/c/d/e",
    ],
)
def test_foreign_topics_are_refused(topic: str):
    with pytest.raises(ProtocolError):
        parse_topic(topic)


def test_filters():
    assert site_filter("longtan", TopicKind.EVENT) == "gatepost/v1/longtan/+/event"
    assert all_sites_filter(TopicKind.STATUS) == "gatepost/v1/+/+/status"
    assert console_status_topic("longtan") == "gatepost/v1/longtan/$console/status"
