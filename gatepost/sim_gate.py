"""``gatepost sim-gate``: a gate agent with the simulator's devices registered.

``gatepost edge run`` never imports the simulator, so a configuration with ``sim://``
cameras or a ``[simulation]`` section is refused there.  The demo and the simulated
site start their gates through this command instead: it imports the simulator (which
registers its devices with :mod:`drivers.devices`) and then runs exactly ``edge run``.
"""

from __future__ import annotations

import argparse
from pathlib import Path


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    sim = subparsers.add_parser(
        "sim-gate", help="run a gate agent with simulated devices (sim:// cameras, [simulation] people)"
    )
    sim.add_argument("--config", "-c", type=Path, required=True, help="the gate's TOML configuration")
    sim.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    import simulator  # noqa: F401 - registers sim:// cameras and the door's simulated people
    from edge.cli import run_gate

    return run_gate(args.config)
