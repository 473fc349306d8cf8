"""``gatepost demo``: a whole compound on this machine, with nothing to configure.

It starts a real mosquitto from ``broker/``'s configuration, the console, and three gate
agents, each reading a virtual serial scanner on a pseudo-terminal into which simulated
residents type their passes (with the odd visitor and the odd burst of scanner garbage),
and shows the console's live tail.  ``--duration`` bounds the run; Ctrl-C stops it.
Either way the gates stop first, then the console and the broker, nothing is left
running, and the console's per-gate counts are printed at the end.
"""

from __future__ import annotations

import argparse
import shutil
import signal
import sys
import tempfile
import threading
import time
from pathlib import Path
from types import FrameType


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    demo = subparsers.add_parser("demo", help="run a simulated compound: broker, console, three gates")
    demo.add_argument(
        "--duration", type=float, default=None, help="stop after this many seconds (default: Ctrl-C)"
    )
    demo.add_argument(
        "--rate", type=float, default=40.0, help="arrivals per minute at each gate (default 40)"
    )
    demo.add_argument("--gates", default="north,east,south", help="comma-separated checkpoint gate names")
    demo.add_argument(
        "--doors", default="building-3", help="comma-separated building doors with card readers ('' for none)"
    )
    demo.add_argument("--cameras", default="west", help="comma-separated camera gates ('' for none)")
    demo.add_argument("--site", default="longtan")
    demo.add_argument(
        "--state", type=Path, default=None, help="keep everything in this folder (default: a temporary one)"
    )
    demo.add_argument("--seed", type=int, default=None, help="seed the arrivals for a repeatable run")
    demo.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from gatepost.processes import Child, gatepost_command
    from simulator.scenario import ArrivalScenario
    from simulator.site import SimulatedSite

    root = args.state or Path(tempfile.mkdtemp(prefix="gatepost-demo-"))
    keep = args.state is not None
    gates = [gate.strip() for gate in args.gates.split(",") if gate.strip()]
    doors = [door.strip() for door in args.doors.split(",") if door.strip()]
    cameras = [camera.strip() for camera in args.cameras.split(",") if camera.strip()]
    site = SimulatedSite(
        root, site=args.site, gates=gates, door_gates=doors, camera_gates=cameras, signed_passes=True
    )
    stop = threading.Event()

    def _stop(_signum: int, _frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGINT, _stop)
    signal.signal(signal.SIGTERM, _stop)
    tail: Child | None = None
    scenario: ArrivalScenario | None = None
    print(
        f"gatepost demo: site {args.site}, gates {', '.join(gates)}, doors {', '.join(doors) or 'none'},"
        f" cameras {', '.join(cameras) or 'none'};"
        f" state in {root}",
        flush=True,
    )
    try:
        site.start()
        print(
            f"  broker   127.0.0.1:{site.broker.port} (logs {root / 'broker'})\n"
            f"  console  {site.console_db}\n"
            f"  gates    logs in {root / 'logs'}\n"
            "  Ctrl-C stops everything.\n",
            flush=True,
        )
        tail = Child(
            "tail", gatepost_command("console", "tail", "--db", str(site.console_db), "--follow")
        ).start(stdout=sys.stdout)
        assert site.office is not None
        corpus = site.office.corpus
        refused = [code for codes in corpus.refused.values() for code in codes[:1]]  # each reason alike
        scenario = ArrivalScenario(
            site.scanners,
            corpus.genuine,
            rate_per_min=args.rate,
            seed=args.seed,
            visitor_share=0.15,
            refused=refused,
        )
        scenario.start()
        deadline = None if args.duration is None else time.monotonic() + args.duration
        while not stop.is_set():
            if deadline is not None and time.monotonic() >= deadline:
                break
            for child in [site.console, *site.agents.values()]:
                if child is not None and not child.running:
                    print(
                        f"gatepost demo: {child.name} exited; its log:\n{child.log_tail()}", file=sys.stderr
                    )
                    stop.set()
            stop.wait(0.2)
    finally:
        print("\ngatepost demo: stopping gates, console and broker…", flush=True)
        if scenario is not None:
            scenario.stop()
        # Let the last scans reach the console before the gates stop.
        time.sleep(1.0)
        site.stop()
        if tail is not None:
            tail.stop(timeout=3)
    stats = Child("stats", gatepost_command("console", "stats", "--db", str(site.console_db)))
    stats.start(stdout=sys.stdout).wait(30)
    if scenario is not None:
        counts = scenario.log.counts()
        typed = sum(n for (_gate, kind), n in counts.items() if kind != "garbage")
        print(
            f"gatepost demo: {typed} passes presented, {sum(counts.values()) - typed} bursts of scanner garbage"
        )
    if not keep:
        shutil.rmtree(root, ignore_errors=True)
    return 0
