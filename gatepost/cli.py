"""The one command, ``gatepost``: parse arguments and hand over to the part that is asked for.

Each part (edge, console, broker, simulator, demo) registers its own sub-commands and
imports its heavy modules only when one of them runs, so ``gatepost --help`` is instant
and a gate never loads the console's code.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from gatepost import __version__


def build_parser() -> argparse.ArgumentParser:
    from broker.cli import add_parser as add_broker
    from console.cli import add_parser as add_console
    from console.passes.cli import add_parser as add_pass
    from deploy.cli import add_parser as add_deploy
    from edge.cli import add_parser as add_edge
    from gatepost.demo import add_parser as add_demo
    from gatepost.sim_gate import add_parser as add_sim_gate

    parser = argparse.ArgumentParser(
        prog="gatepost",
        description="Edge software for checkpoint hardware: gates that decide locally and lose nothing.",
    )
    parser.add_argument("--version", action="version", version=f"gatepost {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    add_demo(commands)
    add_sim_gate(commands)
    add_edge(commands)
    add_console(commands)
    add_pass(commands)
    add_broker(commands)
    add_deploy(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    words = list(sys.argv[1:] if argv is None else argv)
    if words[:2] == ["edge", "relay-off"]:
        # The first thing systemd runs after the agent died with the door released: straight
        # there, without importing every command's parser (pydantic and the protocol models).
        from edge.relay_off import command

        return command(words[2:])
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
