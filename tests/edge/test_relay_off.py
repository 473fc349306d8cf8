"""The lock relay beyond the agent's life: ``gatepost edge relay-off`` as ExecStopPost=, and config.txt's boot level.

The relay line is watched across processes through the ``mockfile`` pin factory
(simulator/pins.py): every output level written, by any process, lands in a file with
its CLOCK_MONOTONIC time.  The agent runs as the unit's main process under
:class:`simulator.service.ServiceRun`, which reads ExecStart= and ExecStopPost= from
``systemd/gatepost-edge.service`` itself and runs the stop-post commands when the agent
ends, as systemd does.  What this proves ends at the pin write: not a GPIO line of a real
chip, nor a relay's contacts.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from edge.boot_config import STRICT_GPIOD, BootConfigError, bcm_number, boot_config_lines, render_boot_config
from edge.config import EdgeConfig
from edge.relay_off import RelayLine, Unusable, relay_line
from simulator.pins import read_level
from simulator.scanner import VirtualScanner
from simulator.service import NotifySocket, ServiceRun, Unit
from tests.edge.service_support import EDGE_UNIT, GRANTED, RELAY, child_env, unit_paths, write_gate_config
from tests.waiting import wait_until


@pytest.fixture
def scanner(tmp_path: Path) -> Iterator[VirtualScanner]:
    device = VirtualScanner(tmp_path / "dev" / "scanner", pace=False)
    yield device
    device.close()


def relay_off(config: Path, pins: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gatepost", "edge", "relay-off", "--config", str(config)],
        env={**os.environ, **child_env(pins)},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


# -- what relay-off reads ----------------------------------------------------------------


def test_relay_line_reads_only_what_it_needs():
    assert relay_line({"site": "s"}) is None  # no door: nothing to do
    raw = {
        "gpio": {"pin_factory": "lgpio"},
        "door": {"pins": {"relay": "GPIO17", "relay_active_high": False}},
    }
    line = relay_line(raw)
    assert line == RelayLine("GPIO17", False, "lgpio") and line.off_high
    assert relay_line({"door": {"pins": {"relay": 17}}}) == RelayLine(17, True, None)  # DoorPins' default
    # Errors elsewhere in the file do not matter; a relay it cannot name does.
    assert isinstance(relay_line({"door": {"pins": {}}}), Unusable)
    assert isinstance(relay_line({"door": {"pins": {"relay": True}}}), Unusable)
    assert isinstance(relay_line({"door": {"pins": {"relay": 17, "relay_active_high": "no"}}}), Unusable)


@pytest.mark.parametrize("active_high", [False, True])
def test_relay_off_drives_the_off_level_from_another_process(tmp_path, active_high):
    pins = tmp_path / "pins"
    config = write_gate_config(tmp_path / "gate", tmp_path / "tty", door=True, relay_active_high=active_high)
    done = relay_off(config, pins)
    assert done.returncode == 0, done.stderr
    level = read_level(pins, RELAY)
    assert level is not None and level.high is (not active_high)  # de-energised
    again = relay_off(config, pins)  # nothing holds the line, nothing changed: still fine
    assert again.returncode == 0, again.stderr


def test_relay_off_without_a_door_or_with_a_broken_file(tmp_path):
    plain = write_gate_config(tmp_path / "plain", tmp_path / "tty")
    done = relay_off(plain, tmp_path / "pins")
    assert done.returncode == 0 and "no [door]" in done.stdout
    broken = tmp_path / "broken.toml"
    broken.write_text("[door.pins\nrelay = 17\n")
    done = relay_off(broken, tmp_path / "pins")
    assert done.returncode == 2 and "cannot read" in done.stderr and "Traceback" not in done.stderr
    unknown = tmp_path / "unknown.toml"
    unknown.write_text('[gpio]\npin_factory = "nonesuch"\n[door.pins]\nrelay = 17\n')
    done = relay_off(unknown, tmp_path / "pins")
    assert done.returncode == 1 and "nonesuch" in done.stderr and "Traceback" not in done.stderr


# -- after the agent, however it ended -----------------------------------------------------


def run_door_gate(
    tmp_path: Path, scanner: VirtualScanner, notify: NotifySocket, **kwargs: float
) -> ServiceRun:
    pins = tmp_path / "pins"
    config = write_gate_config(tmp_path / "gate", scanner.link_path, door=True)
    run = ServiceRun(
        Unit.parse(EDGE_UNIT),
        unit_paths(config, tmp_path / "state"),
        notify=notify,
        env=child_env(pins),
        log_path=tmp_path / "agent.log",
        **kwargs,
    ).start()
    ready = notify.wait_for("READY", "1", timeout=30)
    assert ready is not None, (tmp_path / "agent.log").read_text()
    assert (
        read_level(pins, RELAY) is not None and read_level(pins, RELAY).high
    )  # active-low board: off is high

    def energised_now() -> bool:
        scanner.type(GRANTED)  # again until it lands: READY does not wait for the scanner's port to open
        return wait_until(
            lambda: (level := read_level(pins, RELAY)) is not None and not level.high, timeout=0.5
        )

    energised = wait_until(energised_now, timeout=15)
    assert energised, (tmp_path / "agent.log").read_text()
    return run


@pytest.mark.slow
def test_sigkill_with_the_door_released_puts_the_relay_off(tmp_path, scanner):
    with NotifySocket() as notify:
        run = run_door_gate(tmp_path, scanner, notify, watchdog_s=0)
        try:
            killed_at = run.kill(signal.SIGKILL)
            assert run.done.wait(60)
        finally:
            run.stop()
    level = read_level(tmp_path / "pins", RELAY)
    assert level is not None and level.high, "the lock line is back at its de-energised level"
    assert level.at_ns > killed_at
    assert run.result == "signal"
    [post] = run.stop_posts
    assert post.returncode == 0, post.output
    assert "relay-off" in post.argv and "relay GPIO17 off" in post.output
    print(f"SIGKILL to relay off: {(level.at_ns - killed_at) / 1e6:.0f} ms")


@pytest.mark.slow
def test_a_wedged_agent_is_killed_by_the_watchdog_and_the_relay_goes_off(tmp_path, scanner):
    """The whole chain: no progress, no pings, SIGABRT from the (stand-in) service manager, relay off."""
    import sqlite3

    with NotifySocket() as notify:
        run = run_door_gate(tmp_path, scanner, notify, watchdog_s=2.0)
        holder = sqlite3.connect(tmp_path / "gate" / "outbox.db", isolation_level=None, timeout=10)
        try:
            holder.execute("BEGIN EXCLUSIVE")  # the outbox cannot commit: its writer makes no progress
            assert run.done.wait(30), "the watchdog should have ended the agent"
        finally:
            holder.close()
            run.stop()
    assert run.result == "watchdog"
    level = read_level(tmp_path / "pins", RELAY)
    assert level is not None and level.high
    [post] = run.stop_posts
    assert post.returncode == 0, post.output


def test_a_clean_stop_runs_relay_off_too(tmp_path, scanner):
    with NotifySocket() as notify:
        run = run_door_gate(tmp_path, scanner, notify, watchdog_s=0)
        stopping_at = time.monotonic()
        run.stop()
        assert notify.wait_for("STOPPING", "1", after=stopping_at, timeout=5) is not None
    assert run.result == "success"
    assert [post.returncode for post in run.stop_posts] == [0]
    level = read_level(tmp_path / "pins", RELAY)
    assert level is not None and level.high


# -- config.txt ----------------------------------------------------------------------------


def door_config(relay: int | str, active_high: bool) -> EdgeConfig:
    return EdgeConfig.model_validate(
        {"site": "s1", "gate": "g1", "door": {"pins": {"relay": relay, "relay_active_high": active_high}}}
    )


def test_boot_lines_hold_the_relay_off_from_power_on():
    assert boot_config_lines(door_config("GPIO17", False)) == [STRICT_GPIOD, "gpio=17=op,dh"]
    assert boot_config_lines(door_config("BOARD11", True)) == [STRICT_GPIOD, "gpio=17=op,dl"]
    assert boot_config_lines(door_config(22, True)) == [STRICT_GPIOD, "gpio=22=op,dl"]
    assert boot_config_lines(EdgeConfig.model_validate({"site": "s1", "gate": "g1"})) == [STRICT_GPIOD]
    text = render_boot_config(door_config("J8:11", False))
    assert text.splitlines()[1:] == [STRICT_GPIOD, "gpio=17=op,dh"] and text.startswith(
        "# gatepost gate s1/g1"
    )


def test_a_pin_config_txt_cannot_name_is_refused():
    assert bcm_number("BCM27") == 27
    with pytest.raises(BootConfigError):
        bcm_number("BOARD1")  # the 3.3 V pin
    with pytest.raises(BootConfigError):
        boot_config_lines(door_config("GPIO40", False))


def test_boot_config_command(tmp_path):
    config = write_gate_config(tmp_path / "gate", tmp_path / "tty", door=True)
    done = subprocess.run(
        [sys.executable, "-m", "gatepost", "edge", "boot-config", str(config)],
        env={**os.environ, **child_env()},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[1:] == [STRICT_GPIOD, "gpio=17=op,dh"]
