"""A vehicle lane end to end in one agent: a synthetic plate camera, the loop detector on mock
pins, the packaged plate model, the decision, the barrier pulse and the events."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest
from gpiozero.pins.mock import MockFactory

import simulator  # noqa: F401  (registers sim:// cameras)
from drivers.barrier import BarrierOutput
from edge.agent import GateAgent
from edge.config import EdgeConfig
from edge.credentials import CardStore
from protocol import decode_event
from protocol.credentials import CardEntry, encode_snapshot
from protocol.plates import parse_plate
from simulator.plates import LANE_REGION
from tests.waiting import wait_until

RESIDENT = "京A12345"
STRANGER = "粤B8D321"


def plate_store(path: Path, plates: list[str]) -> Path:
    """The gate's card list holding resident plates, as the console's sync leaves it."""
    with CardStore(path) as store:
        store.apply_snapshot_chunks(
            encode_snapshot(
                1, [CardEntry(parse_plate(p).credential, holder="车主", unit="3-101") for p in plates]
            )
        )
    return path


def lane_config(tmp_path: Path, **camera) -> EdgeConfig:
    return EdgeConfig.model_validate(
        {
            "site": "site1",
            "gate": "carpark",
            "mqtt": {"host": "127.0.0.1", "port": 9},  # no network: the gate decides alone
            "outbox": {"path": str(tmp_path / "outbox.db")},
            "access": {"repeat_s": 0.5},
            "cards": {"store": str(plate_store(tmp_path / "cards.db", [RESIDENT]))},
            "clock": {"trust": "trusted"},
            "metrics": {"listen": ""},
            "lane": [
                {
                    "name": "car-in",
                    "direction": "in",
                    "barrier": {"open": "GPIO5", "close": "GPIO6", "loop": "GPIO13", "pulse_s": 0.2},
                    "camera": {"source": "sim://plates?fps=10", "region": list(LANE_REGION), **camera},
                }
            ],
        }
    )


def events(agent: GateAgent) -> list:
    return [decode_event(row.body) for row in agent.outbox.pending(limit=1000)]


@pytest.mark.timeout(90)
def test_a_resident_car_opens_the_arm_once_and_a_stranger_does_not(tmp_path: Path):
    factory = MockFactory()
    agent = GateAgent(lane_config(tmp_path), pin_factory=factory)
    recogniser = agent.vehicles.recognisers["car-in"]
    camera = recogniser.camera._sim
    assert len(agent.vehicles.simulated) == 1  # the simulated loop detector follows the camera's cars
    agent.start()
    try:
        wait_until(lambda: camera.index > 20, timeout=20)
        assert recogniser.frames_recognised == 0  # an empty lane runs no recognition
        camera.arrive(RESIDENT, dwell_s=3.0)
        wait_until(lambda: any(e.type == "lane.closed" for e in events(agent)), timeout=30)
        camera.arrive(STRANGER, dwell_s=2.5, delay_s=0.5)
        wait_until(
            lambda: (
                sum(e.type == "access.scan" for e in events(agent)) >= 2
                and any(e.type == "lane.vehicle_left" for e in events(agent)[-3:])
            ),
            timeout=30,
        )
        opens = agent.lanes["car-in"].hardware.pulses(BarrierOutput.OPEN)
        seen = events(agent)
    finally:
        agent.stop(drain_s=0)
    scans = [e for e in seen if e.type == "access.scan"]
    assert [(s.data["plate"], s.data["granted"], s.data["credential"]) for s in scans] == [
        (RESIDENT, True, "plate"),
        (STRANGER, False, "plate"),
    ]
    resident = scans[0].data
    assert resident["direction"] == "in" and resident["reader"] == "car-in"
    assert (resident["holder"], resident["unit"]) == ("车主", "3-101")
    assert 0.8 <= resident["confidence"] <= 1.0
    crop = base64.b64decode(resident["crop"])
    assert crop[:2] == b"\xff\xd8" and len(crop) <= 12 * 1024
    assert opens == 1  # the stranger was denied: no pulse
    types = [e.type for e in seen]
    assert types.count("lane.opened") == 1
    closed = next(e for e in seen if e.type == "lane.closed")
    assert closed.data["cause"] == "passed"


@pytest.mark.timeout(90)
def test_a_car_one_character_off_a_registered_plate_goes_to_the_guard_not_through_the_arm(tmp_path: Path):
    factory = MockFactory()
    agent = GateAgent(lane_config(tmp_path), pin_factory=factory)
    camera = agent.vehicles.recognisers["car-in"].camera._sim
    agent.start()
    try:
        near = RESIDENT[:-1] + "6"  # 京A12346: a misread in glare, or a cloned plate made by hand
        camera.arrive(near, dwell_s=3.0, delay_s=0.5)
        wait_until(lambda: any(e.type == "lane.vehicle_left" for e in events(agent)), timeout=30)
        opens = agent.lanes["car-in"].hardware.pulses(BarrierOutput.OPEN)
        seen = events(agent)
    finally:
        agent.stop(drain_s=0)
    (scan,) = [e.data for e in seen if e.type == "access.scan"]
    assert (scan["plate"], scan["granted"], scan["reason"], scan["resembles"]) == (
        near,
        False,
        "plate_near_miss",
        RESIDENT,
    )
    assert opens == 0
    assert not any(e.type == "lane.opened" for e in seen)
