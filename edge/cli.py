"""``gatepost edge …``: run a gate agent, or check its configuration before deploying it."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from protocol.errors import GatepostError

if TYPE_CHECKING:
    from drivers.devices import SimulatedPeople
    from edge.config import EdgeConfig


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    edge = subparsers.add_parser("edge", help="the gate agent")
    commands = edge.add_subparsers(dest="edge_command", required=True)

    run = commands.add_parser("run", help="run the gate agent until SIGINT or SIGTERM")
    run.add_argument("--config", "-c", type=Path, required=True, help="the gate's TOML configuration")
    run.set_defaults(func=_run)

    check = commands.add_parser(
        "check-config", help="validate a configuration; name each bad file line and key"
    )
    check.add_argument("file", type=Path)
    check.set_defaults(func=_check)

    devices = commands.add_parser(
        "list-devices",
        help="the USB serial devices attached now, with the usb_serial or usb_path that pins each to a reader",
    )
    devices.add_argument("--sys", type=Path, default=Path("/sys"), help=argparse.SUPPRESS)
    devices.set_defaults(func=_list_devices)

    off = commands.add_parser(
        "relay-off",
        help="drive the lock relay to its de-energised level and exit (the unit's ExecStopPost=)",
    )
    from edge.relay_off import add_arguments

    add_arguments(off)
    off.set_defaults(func=_relay_off)

    boot = commands.add_parser(
        "boot-config", help="print the config.txt lines for this gate's relay line (for the installer)"
    )
    boot.add_argument("file", type=Path)
    boot.set_defaults(func=_boot_config)
    enroll = commands.add_parser(
        "enroll",
        help="make this gate's TLS key (it stays here) and a signing request for `gatepost broker sign`",
    )
    enroll.add_argument("--config", "-c", type=Path, required=True, help="the gate's TOML configuration")
    enroll.add_argument(
        "--renew", action="store_true", help="a new key and request; the old key works until --install"
    )
    enroll.add_argument(
        "--install", type=Path, nargs="+", metavar="CERT", help="put the signed certificate in place"
    )
    enroll.set_defaults(func=_enroll)

    pin = commands.add_parser(
        "hash-pin", help="ask for the gate's guard PIN twice and print its pin_hash line for [guard_screen]"
    )
    pin.set_defaults(func=_hash_pin)


def _list_devices(args: argparse.Namespace) -> int:
    from drivers.usb_serial import describe, list_usb_serial
    from edge.config import USB_LINK_DIR

    devices = list_usb_serial(args.sys)
    if not devices:
        print("no USB serial devices attached")
        return 0
    for line in describe(devices):
        print(line)
    print(
        f'\nIn the gate\'s configuration give a reader one of these, and url = "{USB_LINK_DIR}/<its name>";'
        "\ngatepost install writes the udev rule that makes that link."
    )
    return 0


def _hash_pin(_args: argparse.Namespace) -> int:
    from edge.guard.pin import main

    return main()


def _relay_off(args: argparse.Namespace) -> int:
    from edge.relay_off import main

    return main(args.config)


def _boot_config(args: argparse.Namespace) -> int:
    from edge.boot_config import BootConfigError, render_boot_config
    from edge.config import load_config
    from protocol.configfile import EXIT_BAD_CONFIG, load_or_report

    config = load_or_report(load_config, args.file)
    if config is None:
        return EXIT_BAD_CONFIG
    try:
        print(render_boot_config(config), end="")
    except BootConfigError as exc:
        print(f"{args.file}: {exc}", file=sys.stderr)
        return EXIT_BAD_CONFIG
    return 0


def _enroll(args: argparse.Namespace) -> int:
    from edge.config import load_config
    from protocol.configfile import EXIT_BAD_CONFIG, load_or_report
    from protocol.enrolment import run
    from protocol.identity import gate_identity

    config = load_or_report(load_config, args.config)
    if config is None:
        return EXIT_BAD_CONFIG
    username = config.mqtt.username or gate_identity(config.site, config.gate)
    return run(config.mqtt, args.config, username, renew=args.renew, install_files=args.install or [])


def _check(args: argparse.Namespace) -> int:
    from edge.config import config_warnings, load_config
    from protocol.configfile import EXIT_BAD_CONFIG, load_or_report

    config = load_or_report(load_config, args.file)
    if config is None:
        return EXIT_BAD_CONFIG
    for warning in config_warnings(args.file, config):
        print(warning, file=sys.stderr)
    print(f"{args.file}: ok (site {config.site}, gate {config.gate}, {len(config.scanners)} scanner(s))")
    return 0


def _run(args: argparse.Namespace) -> int:
    return run_gate(args.config)


def run_gate(config_path: Path) -> int:
    """Run the agent of ``config_path`` until SIGINT or SIGTERM; the exit status of ``edge run``."""
    from edge.agent import GateAgent
    from edge.config import load_config
    from edge.supervision import gate_parts, gate_status
    from gatepost import __version__
    from gatepost.sdnotify import Notifier
    from gatepost.stopping import StopSignals
    from gatepost.supervision import Supervisor
    from protocol.configfile import EXIT_BAD_CONFIG, load_or_report

    notifier = Notifier.from_environment()
    config = load_or_report(load_config, config_path)
    if config is None:
        return EXIT_BAD_CONFIG
    logging.basicConfig(
        level=config.log.level,
        format=f"%(asctime)s {config.gate} %(levelname)s %(name)s: %(message)s",
    )
    from edge.config import config_warnings

    for warning in config_warnings(config_path, config):
        logging.getLogger("gatepost.edge").warning("%s", warning)
    pin_factory = None
    if config.simulation is not None:
        from gpiozero.pins.mock import MockFactory

        pin_factory = MockFactory()  # shared with the simulated people below
    try:
        make_people = _simulated_people(config)
        agent = GateAgent(config, version=__version__, pin_factory=pin_factory)
    except (OSError, GatepostError) as exc:
        print(f"cannot start gate {config.site}/{config.gate}: {exc}", file=sys.stderr)
        return 1
    people = None if make_people is None else make_people(pin_factory)
    supervisor = Supervisor(notifier, gate_parts(agent), lambda: gate_status(agent))

    stop = StopSignals()
    agent.start()
    if people is not None:
        people.start()
    supervisor.ready()  # readers, door and outbox are up; the broker may come later
    while not agent.wait(0):  # the agent may also stop by itself (a fatal outbox error)
        if stop.wait(0.5):
            supervisor.stopping(f"stopping ({stop.name})")
            if people is not None:
                people.stop()
            agent.stop(reason=stop.name)
            break
    supervisor.stopping("stopped")
    return 0


def _simulated_people(config: EdgeConfig) -> Callable[[object], SimulatedPeople] | None:
    """People at this gate's door, on the agent's mock pins, when the configuration asks for them.

    Whoever registered them (the simulator, when imported) builds them; this module never
    names the simulator, so a production gate cannot load it.  The lookup comes before the
    agent is built, so a missing registration is refused before any pin is touched.
    """
    if config.simulation is None or config.door is None:
        return None
    from drivers.devices import door_people

    factory = door_people()
    door, reader, settings = config.door, config.wiegand[0], config.simulation.model_dump()
    return lambda pin_factory: factory(pin_factory, door.pins, reader.d0, reader.d1, settings)
