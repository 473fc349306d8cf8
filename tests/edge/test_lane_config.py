"""``[[lane]]`` and ``[lpr]`` in the gate's file: a good one loads; each mistake names file, line and key."""

from __future__ import annotations

from pathlib import Path

import pytest

from edge.config import load_config
from protocol.configfile import ConfigError

GOOD = """\
site = "site1"
gate = "carpark"

[door.pins]
relay = 17

[[lane]]
name = "car-in"
direction = "in"
barrier = { open = 5, close = 6, loop = 13, pulse_s = 0.4 }
camera = { source = "/dev/video0", region = [120, 200, 400, 240], confirm = 2 }

[lpr]
listen = "0.0.0.0:8089"

[[lpr.cameras]]
name = "hik-in"
lane = "car-in"
format = "hikvision"
username = "camera"
password_file = "lpr-password"
"""


def write(tmp_path: Path, text: str) -> Path:
    (tmp_path / "lpr-password").write_text("secret\n")
    path = tmp_path / "gate.toml"
    path.write_text(text)
    return path


def test_a_lane_with_its_camera_and_an_lpr_camera_loads(tmp_path):
    config = load_config(write(tmp_path, GOOD))
    (lane,) = config.lane
    assert (lane.name, lane.direction, lane.barrier.pulse_s, lane.camera.region) == (
        "car-in",
        "in",
        0.4,
        (120, 200, 400, 240),
    )
    camera = config.lpr.cameras[0]
    assert camera.password_file == tmp_path / "lpr-password" and camera.password() == "secret"


@pytest.mark.parametrize(
    ("change", "line", "words"),
    [
        (('direction = "in"', 'direction = "sideways"'), 9, "lane.0.direction"),
        (("pulse_s = 0.4", "pulse_s = 30"), 10, "lane.0.barrier.pulse_s"),
        (("close = 6", "close = 5"), 10, "lane.0.barrier"),
        (("loop = 13, ", ""), 7, "lane.0"),  # a camera gated by the loop needs the loop wired
        (("open = 5", "open = 17"), None, "door"),  # the door's relay pin
        (('lane = "car-in"', 'lane = "car-out"'), None, "not a [[lane]]"),
        (('format = "hikvision"', 'format = "dahua"'), 19, "lpr.cameras.0.format"),
        (("region = [120, 200, 400, 240]", "region = [120, 200, 4, 240]"), 11, "lane.0.camera"),
    ],
)
def test_each_mistake_is_named_by_line_and_key(tmp_path, change, line, words):
    old, new = change
    assert old in GOOD
    with pytest.raises(ConfigError) as raised:
        load_config(write(tmp_path, GOOD.replace(old, new)))
    text = str(raised.value)
    assert "gate.toml" in text
    assert words in text, text
    if line is not None:
        assert raised.value.issues[0].line == line, text


# -- relay-off puts the barrier's command lines off too -------------------------------------


def test_relay_off_puts_every_barrier_line_off_from_another_process(tmp_path):
    import os
    import subprocess
    import sys

    from edge.relay_off import RelayLine, Unusable, lane_lines
    from simulator.pins import DIR_VARIABLE, read_level

    assert lane_lines({}) == []
    raw = {
        "gpio": {"pin_factory": "mockfile"},
        "lane": [{"barrier": {"open": 5, "close": "GPIO6", "relay_active_high": False}}],
    }
    assert lane_lines(raw) == [RelayLine(5, False, "mockfile"), RelayLine("GPIO6", False, "mockfile")]
    assert isinstance(lane_lines({"lane": [{"barrier": {}}]}), Unusable)
    config = tmp_path / "gate.toml"
    config.write_text(
        'site = "s"\ngate = "g"\n[gpio]\npin_factory = "mockfile"\n'
        '[[lane]]\nname = "car-in"\ndirection = "in"\nbarrier = { open = 5, close = 6 }\n'
    )
    pins = tmp_path / "pins"
    done = subprocess.run(
        [sys.executable, "-m", "gatepost", "edge", "relay-off", "--config", str(config)],
        env={**os.environ, DIR_VARIABLE: str(pins)},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "barrier relay 5 off" in done.stdout and "no [door]" in done.stdout
    for pin in ("GPIO5", "GPIO6"):
        level = read_level(pins, pin)
        assert level is not None and not level.high  # active-high relay board: off is low
