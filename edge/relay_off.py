"""``gatepost edge relay-off``: put the lock relay off after the agent has gone, however it went.

On Raspberry Pi kernels a GPIO output keeps its level when the process that drove it
dies (raspberrypi/linux pull request 6117; ``dtparam=strict_gpiod`` restores the upstream
behaviour, where a released line becomes an input).  The relay watchdog is a thread of
the agent, so a SIGKILL, a segfault, the OOM killer or a watchdog restart while the door
is released would leave it released.  The unit runs this as ``ExecStopPost=``, which
systemd runs after the main process has ended for any reason: it drives the relay line
to its de-energised level — locked for a fail-secure strike, released for a fail-safe
maglock, the state each is wired to fail to — and exits.

It is the first thing to run after a crash, so it is kept small and forgiving: it reads
only ``[gpio] pin_factory`` and ``[door.pins] relay`` / ``relay_active_high`` from the
file (not the whole validated configuration: a broken file elsewhere must not keep a
door open), imports nothing of gatepost's but this module, and a gate without a door is
not an error.  It writes the level and releases the line again.  Whether the level then
holds depends on the kernel: without ``strict_gpiod`` it does; with it the line becomes
an input and the relay board's own pull decides (docs/door.md, wiring).
"""

from __future__ import annotations

import argparse
import sys
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_BAD_CONFIG = 2


@dataclass(frozen=True, slots=True)
class RelayLine:
    """The lock relay's line, as far as putting it off needs to know."""

    pin: int | str
    active_high: bool
    pin_factory: str | None

    @property
    def off_high(self) -> bool:
        """The line's level when the relay is de-energised: low for an active-high board."""
        return not self.active_high


@dataclass(frozen=True, slots=True)
class Unusable:
    """Why the file does not say which line to put off."""

    reason: str


def relay_line(raw: dict[str, Any]) -> RelayLine | Unusable | None:
    """The relay line from a parsed gate configuration; ``None`` when the gate has no door."""
    door = raw.get("door")
    if door is None:
        return None
    pins = door.get("pins") if isinstance(door, dict) else None
    if not isinstance(pins, dict) or "relay" not in pins:
        return Unusable("[door.pins] has no relay")
    pin = pins["relay"]
    if isinstance(pin, bool) or not isinstance(pin, int | str):
        return Unusable(f"[door.pins] relay must be a pin number or name, not {pin!r}")
    active_high = pins.get("relay_active_high", True)  # the DoorPins default
    if not isinstance(active_high, bool):
        return Unusable(f"[door.pins] relay_active_high must be true or false, not {active_high!r}")
    gpio = raw.get("gpio", {})
    factory = gpio.get("pin_factory") if isinstance(gpio, dict) else None
    if factory is not None and not isinstance(factory, str):
        return Unusable(f"[gpio] pin_factory must be a name, not {factory!r}")
    return RelayLine(pin, active_high, factory)


def lane_lines(raw: dict[str, Any]) -> list[RelayLine] | Unusable:
    """The barrier command lines of every ``[[lane]]``: a pulse cut short by a crash must not stay on.

    A held level on a barrier controller's open input means "stay open" on most of them.
    """
    lanes = raw.get("lane", [])
    if not isinstance(lanes, list):
        return Unusable("[[lane]] must be an array of tables")
    gpio = raw.get("gpio", {})
    factory = gpio.get("pin_factory") if isinstance(gpio, dict) else None
    if factory is not None and not isinstance(factory, str):
        return Unusable(f"[gpio] pin_factory must be a name, not {factory!r}")
    found: list[RelayLine] = []
    for index, lane in enumerate(lanes):
        barrier = lane.get("barrier") if isinstance(lane, dict) else None
        if not isinstance(barrier, dict) or "open" not in barrier:
            return Unusable(f"lane {index}: [lane.barrier] has no open pin")
        active_high = barrier.get("relay_active_high", True)
        if not isinstance(active_high, bool):
            return Unusable(f"lane {index}: relay_active_high must be true or false, not {active_high!r}")
        for key in ("open", "close"):
            pin = barrier.get(key)
            if pin is None:
                continue
            if isinstance(pin, bool) or not isinstance(pin, int | str):
                return Unusable(f"lane {index}: barrier {key} must be a pin number or name, not {pin!r}")
            found.append(RelayLine(pin, active_high, factory))
    return found


def read_relay_line(path: Path) -> RelayLine | Unusable | None:
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        return Unusable(f"cannot read {path}: {exc}")
    return relay_line(raw)


def _read_lane_lines(path: Path) -> list[RelayLine] | Unusable:
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        return Unusable(f"cannot read {path}: {exc}")
    return lane_lines(raw)


def _pin_factory(name: str | None) -> Any:
    """The gpiozero factory called ``name`` (as :func:`drivers.door_io.make_pin_factory`, without pydantic)."""
    if name is None:
        return None  # gpiozero's own choice, as the agent makes it
    from importlib.metadata import entry_points

    for entry in entry_points(group="gpiozero_pin_factories"):
        if entry.name == name.lower():
            return entry.load()()
    raise LookupError(f"unknown pin factory {name!r}")


def drive_off(line: RelayLine, factory: Any = None) -> None:
    """Write the de-energised level to the relay line, then release it."""
    from gpiozero import DigitalOutputDevice

    owned = factory is None
    if owned:
        factory = _pin_factory(line.pin_factory)
    try:
        relay = DigitalOutputDevice(
            line.pin, active_high=line.active_high, initial_value=False, pin_factory=factory
        )
        relay.close()
    finally:
        if owned and factory is not None:
            factory.close()


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", "-c", type=Path, required=True, help="the gate's TOML configuration")


def command(argv: list[str]) -> int:
    """``gatepost edge relay-off`` without the rest of the command line's parsers."""
    parser = argparse.ArgumentParser(
        prog="gatepost edge relay-off", description=(__doc__ or "").splitlines()[0]
    )
    add_arguments(parser)
    return main(parser.parse_args(argv).config)


def main(config: Path) -> int:
    line = read_relay_line(config)
    lanes = _read_lane_lines(config)
    if isinstance(lanes, Unusable):
        print(f"gatepost edge relay-off: {config}: {lanes.reason}", file=sys.stderr)
        return EXIT_BAD_CONFIG
    for lane_line in lanes:
        try:
            drive_off(lane_line)
        except Exception as exc:
            print(
                f"gatepost edge relay-off: could not put barrier relay {lane_line.pin} off: {exc}",
                file=sys.stderr,
            )
            return EXIT_FAILED
        print(f"barrier relay {lane_line.pin} off (line {'high' if lane_line.off_high else 'low'})")
    if line is None:
        print(f"{config}: no [door]: no lock relay to put off")
        return EXIT_OK
    if isinstance(line, Unusable):
        print(f"gatepost edge relay-off: {config}: {line.reason}", file=sys.stderr)
        return EXIT_BAD_CONFIG
    try:
        drive_off(line)
    except Exception as exc:  # the pin factory cannot start, the line is held by another process
        print(f"gatepost edge relay-off: could not put relay {line.pin} off: {exc}", file=sys.stderr)
        return EXIT_FAILED
    print(f"lock relay {line.pin} off (line {'high' if line.off_high else 'low'})")
    return EXIT_OK
