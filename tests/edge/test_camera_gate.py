"""A camera gate end to end: a generated video file, opened by OpenCV through the camera driver,
decoded, decided by the agent, and taken as events — the same decision as a serial scanner."""

from __future__ import annotations

import time
from pathlib import Path

from edge.agent import GateAgent
from edge.config import EdgeConfig
from protocol import decode_event
from simulator.camera import Presentation, SyntheticCamera, write_video

FPS = 15
RESIDENT = "104729000001"
VISITOR = "900000000002"


def test_passes_held_up_to_a_camera_are_decided_once_each(tmp_path: Path):
    camera = SyntheticCamera(
        [
            Presentation(0.3, (RESIDENT.encode(),), 1.2),
            Presentation(1.8, (VISITOR.encode(),), 1.0, "dark_mode"),
        ],
        width=640,
        height=480,
        fps=FPS,
        seed=3,
    )
    video = write_video(tmp_path / "gate.avi", camera, 3 * FPS)
    config = EdgeConfig.model_validate(
        {
            "site": "site1",
            "gate": "west",
            "mqtt": {"host": "127.0.0.1", "port": 9},  # no network: the gate decides alone
            "cameras": [{"name": "camera", "source": str(video)}],
            "outbox": {"path": str(tmp_path / "outbox.db")},
            "access": {"allow": [RESIDENT]},
            "clock": {"trust": "trusted"},
        }
    )
    agent = GateAgent(config)
    agent.start()
    try:
        deadline = time.monotonic() + 30
        scans: list = []
        while time.monotonic() < deadline and len(scans) < 2:
            events = [decode_event(row.body) for row in agent.outbox.pending(limit=1000)]
            scans = [event for event in events if event.type == "access.scan"]
            time.sleep(0.1)
        time.sleep(0.5)
        events = [decode_event(row.body) for row in agent.outbox.pending(limit=1000)]
        scans = [event for event in events if event.type == "access.scan"]
        # Each pass was in view for many frames: one scan each, never a partial payload.
        assert [(s.data["code"], s.data["granted"], s.data["reason"]) for s in scans] == [
            (RESIDENT, True, "granted"),
            (VISITOR, False, "unknown"),
        ]
        assert all(s.data["reader"] == "camera" for s in scans)
    finally:
        agent.stop(drain_s=0)
