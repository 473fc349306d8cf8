"""``gatepost edge …``: run a gate agent, or check its configuration before deploying it."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
from pathlib import Path
from types import FrameType


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


def _check(args: argparse.Namespace) -> int:
    from edge.config import load_config
    from protocol.configfile import ConfigError

    try:
        config = load_config(args.file)
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return 2
    print(f"{args.file}: ok (site {config.site}, gate {config.gate}, {len(config.scanners)} scanner(s))")
    return 0


def _run(args: argparse.Namespace) -> int:
    from edge.agent import GateAgent
    from edge.config import load_config
    from gatepost import __version__
    from protocol.configfile import ConfigError

    try:
        config = load_config(args.config)
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return 2
    logging.basicConfig(
        level=config.log.level,
        format=f"%(asctime)s {config.gate} %(levelname)s %(name)s: %(message)s",
    )
    try:
        agent = GateAgent(config, version=__version__)
    except OSError as exc:
        print(f"cannot start gate {config.site}/{config.gate}: {exc}", file=sys.stderr)
        return 1

    def _stop(signum: int, _frame: FrameType | None) -> None:
        agent.stop(reason=signal.Signals(signum).name.lower())

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    agent.start()
    while not agent.wait(0.5):
        pass
    return 0
