"""The guard's light and buzzer: a pattern for every reason, driven on gpiozero's mock pins."""

from __future__ import annotations

import time
from pathlib import Path

from gpiozero.pins.mock import MockFactory

from edge.agent import GateAgent, Presented
from edge.config import EdgeConfig
from edge.feedback import GRANTED, GRANTED_WITH_CAVEAT, LOOK_AT_IT, NOT_OURS, Light, pattern_for
from protocol.passes import Reason


def test_every_reason_has_an_unmistakable_pattern():
    for reason in Reason:
        denied = pattern_for(False, reason)
        assert denied.light is Light.RED and denied.beeps >= 1
    assert pattern_for(True, Reason.GRANTED) == GRANTED
    assert pattern_for(True, Reason.GRANTED, flagged=True) == GRANTED_WITH_CAVEAT
    assert pattern_for(False, Reason.UNKNOWN) == NOT_OURS
    for alarming in (Reason.BAD_SIGNATURE, Reason.REVOKED, Reason.REPLAYED):
        assert pattern_for(False, alarming) == LOOK_AT_IT


def test_the_agent_lights_green_or_red_without_waiting(tmp_path: Path):
    factory = MockFactory()
    config = EdgeConfig.model_validate(
        {
            "site": "s1",
            "gate": "north",
            "mqtt": {"host": "127.0.0.1", "port": 9},
            "outbox": {"path": str(tmp_path / "outbox.db")},
            "access": {"allow": ["123456789012"], "repeat_s": 0},
            "feedback": {"green": "GPIO24", "red": "GPIO25", "buzzer": "GPIO12"},
        }
    )
    agent = GateAgent(config, pin_factory=factory)
    green, red, buzzer = (factory.pin(n) for n in (24, 25, 12))
    agent.start()
    try:
        assert not (green.state or red.state or buzzer.state)  # all dark at start
        agent.present(Presented("123456789012", "pass", "scanner", time.monotonic_ns(), "123456789012"))
        time.sleep(0.05)
        assert green.state and not red.state and not buzzer.state
        agent.present(Presented("999", "pass", "scanner", time.monotonic_ns(), "999"))
        time.sleep(0.05)
        assert red.state and not green.state and buzzer.state
    finally:
        agent.stop(drain_s=0)
