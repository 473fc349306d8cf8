"""``gatepost demo``: a whole compound on this machine, with nothing to configure.

It starts a real mosquitto from ``broker/``'s configuration, the console, and three gate
agents, each reading a virtual serial scanner on a pseudo-terminal into which simulated
residents type their passes (with the odd visitor and the odd burst of scanner garbage),
and shows the console's live tail.  ``--duration`` bounds the run; Ctrl-C stops it.
Either way the gates stop first, then the console and the broker, nothing is left
running, and the console's per-gate counts are printed at the end.

So that the flow charts and staffing advice have something to show at once, the demo
first writes ``--history-days`` of simulated past into the console's store (marked
``"simulated": true``, see :mod:`simulator.history`), and the live arrivals follow a
compressed day (``--day-seconds``): the evening peak comes round every minute, and the
live stream visibly swells with it.  The live events themselves are real events from
the real gates with real timestamps; only their *rate* follows the simulated clock.
"""

from __future__ import annotations

import argparse
import json
import re
import secrets
import shutil
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

if TYPE_CHECKING:
    from gatepost.demo_office import DemoOffice
    from gatepost.demo_patrol import DemoPatrol
    from simulator.present_page import PresentPage
    from simulator.site import SimulatedSite


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    demo = subparsers.add_parser("demo", help="run a simulated compound: broker, console, three gates")
    demo.add_argument(
        "--duration", type=float, default=None, help="stop after this many seconds (default: Ctrl-C)"
    )
    demo.add_argument(
        "--rate",
        type=float,
        default=40.0,
        help="arrivals per minute at each gate, the mean over the compressed day (default 40)",
    )
    demo.add_argument(
        "--day-seconds",
        type=float,
        default=60.0,
        help="play a simulated day (with the evening peak) in this many seconds, then the next;"
        " 0 for a flat rate (default 60)",
    )
    demo.add_argument(
        "--history-days",
        type=int,
        default=28,
        help="simulated past days written into the console's store first, for the flow charts (default 28)",
    )
    demo.add_argument(
        "--web",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="serve the web console on a free port with a demo admin user (default: on)",
    )
    demo.add_argument(
        "--guard-screen",
        default=None,
        metavar="GATE",
        help="the gate whose guard screen is served (default: the first gate; '' for none)",
    )
    demo.add_argument(
        "--timezone",
        default="Asia/Shanghai",
        help="the site's clock for the daily profile (default Asia/Shanghai)",
    )
    demo.add_argument("--gates", default="north,east,south", help="comma-separated checkpoint gate names")
    demo.add_argument(
        "--doors", default="building-3", help="comma-separated building doors with card readers ('' for none)"
    )
    demo.add_argument(
        "--osdp-doors",
        default="building-7",
        help="comma-separated building doors whose readers are on an OSDP bus, secure channel on ('' for none)",
    )
    demo.add_argument("--cameras", default="west", help="comma-separated camera gates ('' for none)")
    demo.add_argument(
        "--lanes",
        default="carpark",
        help="comma-separated vehicle entrances with barrier lanes ('' for none)",
    )
    demo.add_argument("--site", default="longtan")
    demo.add_argument(
        "--state", type=Path, default=None, help="keep everything in this folder (default: a temporary one)"
    )
    demo.add_argument("--seed", type=int, default=None, help="seed the arrivals for a repeatable run")
    demo.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from gatepost.demo_office import DemoOffice, configure_gates, start_present_page
    from gatepost.demo_patrol import PatrolGuard
    from gatepost.processes import Child, gatepost_command
    from gatepost.stopping import StopSignals
    from simulator.day import CompressedDay, DayClock, ProfiledArrivals
    from simulator.osdp import OsdpPeople
    from simulator.passes import ScreenshotReplays
    from simulator.scenario import ArrivalScenario
    from simulator.site import SimulatedSite

    gates = [gate.strip() for gate in args.gates.split(",") if gate.strip()]
    doors = [door.strip() for door in args.doors.split(",") if door.strip()]
    cameras = [camera.strip() for camera in args.cameras.split(",") if camera.strip()]
    osdp_doors = [door.strip() for door in args.osdp_doors.split(",") if door.strip()]
    lanes = [lane.strip() for lane in args.lanes.split(",") if lane.strip()]
    guard_gate = (gates[:1] or [""])[0] if args.guard_screen is None else args.guard_screen.strip()
    if guard_gate and guard_gate not in [*gates, *doors, *cameras, *osdp_doors, *lanes]:
        print(f"gatepost demo: --guard-screen {guard_gate!r} is not one of the demo's gates", file=sys.stderr)
        return 2
    if args.day_seconds < 0 or args.history_days < 0:
        print("gatepost demo: --day-seconds and --history-days cannot be negative", file=sys.stderr)
        return 2
    try:
        ZoneInfo(args.timezone)
    except (ZoneInfoNotFoundError, ValueError):
        print(f"gatepost demo: --timezone {args.timezone!r} is not a known time zone", file=sys.stderr)
        return 2
    root = args.state or Path(tempfile.mkdtemp(prefix="gatepost-demo-"))
    keep = args.state is not None
    office = DemoOffice.open_or_create(root, site=args.site, timezone=args.timezone)
    site = SimulatedSite(
        root,
        site=args.site,
        gates=gates,
        door_gates=doors,
        camera_gates=cameras,
        osdp_gates=osdp_doors,
        lane_gates=lanes,
        office=office,
    )
    stop = threading.Event()  # set by the main loop: a signal handler must not take its lock
    signals = StopSignals()
    tail: Child | None = None
    scenario: ArrivalScenario | None = None
    clock: DayClock | None = None
    replays: ScreenshotReplays | None = None
    osdp_people: list[OsdpPeople] = []
    patrol: DemoPatrol | None = None
    guard: PatrolGuard | None = None
    present: PresentPage | None = None
    exits: list[Any] = []
    print(
        f"gatepost demo: site {args.site}, gates {', '.join(gates)}, doors {', '.join(doors) or 'none'},"
        f" cameras {', '.join(cameras) or 'none'}, OSDP doors {', '.join(osdp_doors) or 'none'},"
        f" vehicle lanes {', '.join(lanes) or 'none'};"
        f" state in {root}",
        flush=True,
    )
    try:
        # The vehicle lanes' past is drawn as the vehicle entrance's (simulator/history.py).
        history = (
            _write_history(args, site, gates, [*doors, *osdp_doors], [*cameras, *lanes])
            if args.history_days > 0
            else False
        )
        _configure_flow(site, args.timezone)
        _register_vehicles(site)
        screens = _configure_screens(site, web=args.web, guard_gate=guard_gate, office=office)
        patrol = _prepare_patrol(args, site, gates, osdp_doors) if args.web else None
        # the OSDP door takes the card list too: the patrol guard's duty card reaches it (demo_patrol.py)
        configure_gates(
            site, [*gates, *cameras], _set_table, doors=[*doors, *osdp_doors], timezone=args.timezone
        )
        _start_site(site)
        if gates:
            present, screens.present_url = start_present_page(site, office, screens.web_url)
        screens.watch(lambda line: print(line, flush=True), stop)
        print(
            f"  broker   TLS 127.0.0.1:{site.broker.tls_port} (client certificates, CA {site.broker.ca.ca_cert}),"
            f" plain loopback :{site.broker.port} (logs {root / 'broker'})\n"
            f"  console  {site.console_db}\n"
            f"  gates    logs in {root / 'logs'}\n"
            f"{_describe_office(office, root)}"
            f"{screens.describe()}"
            "  Ctrl-C stops everything.\n",
            flush=True,
        )
        tail_args = ["--limit", "0"] if history else []  # the live stream, not yesterday's last events
        tail = Child(
            "tail",
            gatepost_command("console", "tail", "--db", str(site.console_db), "--follow", *tail_args),
        ).start(stdout=sys.stdout)
        assert site.office is not None
        corpus = site.office.corpus
        refused = [code for codes in corpus.refused.values() for code in codes[:1]]  # each reason alike
        if args.day_seconds > 0:
            day = CompressedDay(args.day_seconds, args.rate)
            print(
                f"  live     a simulated day every {args.day_seconds:g} s from {day.start_hour:02.0f}:00:"
                f" {args.rate:g}/min per gate on average, {day.peak_per_min():.0f}/min at the evening peak\n",
                flush=True,
            )
            scenario = ProfiledArrivals(
                site.scanners, corpus.genuine, day, seed=args.seed, visitor_share=0.15, refused=refused
            )
            clock = DayClock(scenario, lambda line: print(line, flush=True))
        else:
            scenario = ArrivalScenario(
                site.scanners,
                corpus.genuine,
                rate_per_min=args.rate,
                seed=args.seed,
                visitor_share=0.15,
                refused=refused,
            )
        scenario.start()
        if clock is not None:
            clock.start()
        for door in osdp_doors:  # residents' cards at the OSDP readers, a stranger's now and then
            bus = site.osdp_bus(door)
            osdp_people.append(OsdpPeople(bus.readers, site.cards[:50], seed=args.seed).start())
        if patrol is not None and osdp_doors:  # the patrol guard walks the OSDP door's readers
            readers = {reader.name: reader for reader in site.osdp_bus(osdp_doors[0]).readers}
            guard = PatrolGuard(readers, patrol, ZoneInfo(args.timezone)).start()
        if gates:  # a resident's phone at the first gate, and a friend's screenshot of it
            replays = ScreenshotReplays(site.office, site.scanners[gates[0]], every_s=15.0)
            replays.start()
        exits = _exit_traffic(site)
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
            if signals.wait(0.2):
                stop.set()
    finally:
        print("\ngatepost demo: stopping gates, console and broker…", flush=True)
        if clock is not None:
            clock.stop()
        if scenario is not None:
            scenario.stop()
        if replays is not None:
            replays.stop()
        for people in osdp_people:
            people.stop()
        if guard is not None:
            guard.stop()
        if present is not None:
            present.stop()
        for traffic in exits:
            traffic.stop()
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
    if replays is not None and replays.shown:
        print(
            f"gatepost demo: a phone pass shown {sum(r == 'granted' for _, r in replays.shown)} times live"
            f" and {sum(r == 'replayed' for _, r in replays.shown)} times as a screenshot (refused: replayed)"
        )
    if not keep:
        shutil.rmtree(root, ignore_errors=True)
    return 0


def _start_site(site: SimulatedSite) -> None:
    """Broker, console, then the gates once the console has subscribed.

    A gate's first events (started, clock, scanner connected) published before the
    console's subscription exists would wait for the gate's resend timer (15 s) to reach
    the store; a short demo could end before that and show them missing.
    """
    site.start_broker()
    console = site.start_console()
    if not site.wait_console_online(timeout=30):
        print("gatepost demo: the console did not come online; its log ends:", file=sys.stderr)
        print(console.log_tail(2000), file=sys.stderr)
    for gate in [*site.gates, *site.door_gates, *site.camera_gates, *site.osdp_gates, *site.lane_gates]:
        site.start_gate(gate)


def _register_vehicles(site: SimulatedSite) -> None:
    """The residents' cars in the console's card list, which carries them to the vehicle lanes."""
    if not site.lane_gates:
        return
    from console.credentials import CardRegistry

    site.console_config()
    with CardRegistry(site.card_registry) as registry:
        registry.put(site.vehicles.card_entries())


def _exit_traffic(site: SimulatedSite) -> list[Any]:
    """Residents driving out through each entrance's exit lane, seen by its (simulated) LPR camera."""
    from simulator.lpr_camera import ExitTraffic

    started = []
    for gate in site.lane_gates:
        traffic = ExitTraffic(site.lpr_client(gate), list(site.vehicles.residents))
        traffic.start()
        started.append(traffic)
    return started


@dataclass
class _Screens:
    """Where the demo's web console and guard screen listen, and how to get in."""

    web_url: str | None = None
    web_user: str = "admin"
    web_password: str = ""
    web_note: str = ""
    guard_gate: str = ""
    guard_url: str | None = None
    guard_pin: str = ""
    guard_note: str = ""
    present_url: str | None = None

    def describe(self) -> str:
        lines = []
        if self.web_url:
            lines.append(
                f"  web      {self.web_url}  user {self.web_user}, password {self.web_password}{self.web_note}"
            )
        if self.guard_url:
            lines.append(
                f"  guard    {self.guard_url}  ({self.guard_gate}; guard PIN {self.guard_pin}){self.guard_note}"
            )
        if self.present_url:
            lines.append(
                f"  present  {self.present_url}  (demo only: hold a pass up to a simulated gate's scanner)"
            )
        return "".join(f"{line}\n" for line in lines)

    def watch(self, write: Callable[[str], None], stop: threading.Event, timeout_s: float = 30.0) -> None:
        """Say when each server answers ``/healthz``, or that it does not, without holding up the demo."""

        def run() -> None:
            deadline = time.monotonic() + timeout_s
            pending = {name: url for name, url in (("web", self.web_url), ("guard", self.guard_url)) if url}
            while pending and not stop.wait(0.3):
                for name, url in list(pending.items()):
                    try:
                        with urllib.request.urlopen(f"{url}healthz", timeout=1.0) as response:
                            ok = response.status == 200
                    except OSError:  # refused, timed out, or an HTTP error status
                        ok = False
                    if ok:
                        write(f"  {name:<8} {url} is up")
                        del pending[name]
                if time.monotonic() >= deadline:
                    for name, url in pending.items():
                        write(f"  {name:<8} {url} is not answering after {timeout_s:g} s; see the logs")
                    return

        threading.Thread(target=run, name="screens-ready", daemon=True).start()


def _configure_screens(
    site: SimulatedSite, *, web: bool, guard_gate: str, office: DemoOffice | None = None
) -> _Screens:
    """Switch on the web console (with a demo admin) and one gate's guard screen, on free ports.

    The demo writes these sections after the site's own configuration files, so the
    console and the gates run exactly what an installer would configure.  Fresh random
    credentials every run: the demo prints them and binds only to the loopback address.
    """
    from broker.launcher import free_port

    screens = _Screens()
    if web:
        port = free_port()
        lines = ["enabled = true", f'listen = "127.0.0.1:{port}"']
        if office is not None:  # the Passes pages issue and revoke from the office the gates trust
            lines.append(f"office = {json.dumps(str(office.folder))}")
            _set_table(
                site.console_config(),
                "cards",
                [
                    f"site = {json.dumps(office.site)}",
                    f"registry = {json.dumps(str(site.console_db.parent / 'cards.db'))}",
                    f"thumbnails = {json.dumps(str(site.console_db.parent / 'thumbnails'))}",
                ],
            )
        _set_table(site.console_config(), "web", lines)
        screens.web_url = f"http://127.0.0.1:{port}/"
        screens.web_password = secrets.token_urlsafe(9)
        _demo_admin(site, screens.web_user, screens.web_password)
    else:
        _set_table(site.console_config(), "web", ["enabled = false"])
    if guard_gate:
        from edge.guard.pin import hash_pin

        port = free_port()
        screens.guard_pin = f"{secrets.randbelow(10**6):06d}"
        lines = [
            "enabled = true",
            f'listen = "127.0.0.1:{port}"',
            f'pin_hash = "{hash_pin(screens.guard_pin)}"',
            'visitor_db = "visitors.db"',
        ]
        _set_table(site.gate_config(guard_gate), "guard_screen", lines)
        screens.guard_gate, screens.guard_url = guard_gate, f"http://127.0.0.1:{port}/"
    return screens


def _configure_flow(site: SimulatedSite, timezone: str) -> None:
    """Give the console's flow charts the demo's time zone, the one the simulated history was written in.

    With the console's own default (Asia/Shanghai), any other ``--timezone`` would show the
    history's evening peak at the wrong hours.
    """
    # and open on yesterday: today's chart holds the live compressed day in one real hour
    _set_table(
        site.console_config(), "flow", [f"timezone = {json.dumps(timezone)}", 'open_on = "last_full_day"']
    )


def _prepare_patrol(
    args: argparse.Namespace, site: SimulatedSite, gates: list[str], osdp_doors: list[str]
) -> DemoPatrol:
    """Today's people, roster and patrol route in the console's database (gatepost/demo_patrol.py)."""
    from gatepost.demo_patrol import prepare

    door = (osdp_doors or gates or ["gate"])[0]
    patrol = prepare(
        site.console_db, site.card_registry, args.site, gates or [door], door, ZoneInfo(args.timezone)
    )
    print(
        f"  patrol   {patrol.shifts} shifts rostered today; route 'demo round' at {', '.join(patrol.stations)},"
        f" first round {patrol.first_round:%H:%M}, hourly: station 2 is late (patrol.late on the Alarms page;"
        " the rounds under Patrols)",
        flush=True,
    )
    return patrol


def _describe_office(office: DemoOffice, root: Path) -> str:
    """Where the site office is, and its root passphrase (see gatepost/demo_office.py for why it is printed)."""
    from gatepost.demo_office import PASSPHRASE_FILE

    made = "made now" if office.created else "from an earlier run"
    return (
        f"  office   {office.folder} ({made}; root passphrase {office.passphrase or '?'},"
        f" also in {root / PASSPHRASE_FILE})\n"
    )


def _set_table(path: Path, table: str, lines: list[str]) -> None:
    """Put ``[table]`` with ``lines`` into a TOML file the site wrote, replacing any it had."""
    text = re.sub(rf"(?m)^\[{re.escape(table)}\]\n(?:(?!\[).*\n?)*", "", path.read_text())
    path.write_text(text.rstrip("\n") + f"\n\n[{table}]\n" + "\n".join(lines) + "\n")


def _demo_admin(site: SimulatedSite, name: str, password: str) -> None:
    """The web console's admin for this run, in the console's own database (created if new)."""
    from console.db import Database
    from console.users import UserStore

    db = Database(site.console_db)
    try:
        users = UserStore(db)
        if users.get(name) is None:
            users.add(name, password, "admin")
        else:
            users.set_password(name, password)
    finally:
        db.close()


def _write_history(
    args: argparse.Namespace, site: SimulatedSite, gates: list[str], doors: list[str], cameras: list[str]
) -> bool:
    """Write the simulated past into the console's store before anything runs; False if it was skipped.

    A store that already holds events (``--state`` of an earlier run) is left alone: its
    gates have counted on from their history, and a second history would not fit their
    sequence numbers.  Each live gate's outbox is set to carry on where its history ends.
    """
    from console.store import EventStore
    from edge.outbox import continue_numbering
    from simulator.history import HistoryPlan, site_gates, write_history

    plan = HistoryPlan(
        site.site,
        site_gates(gates, doors, cameras),
        days=args.history_days,
        timezone=args.timezone,
        seed=1 if args.seed is None else args.seed,
    )
    with EventStore(site.console_db) as store:
        if store.last_events(1):
            print("  history  the store already holds events; no history written", flush=True)
            return False
        result = write_history(store, plan)
    for gate, last_seq in result.last_seq.items():
        continue_numbering(site.outbox_path(gate), last_seq)
    days = plan.day_list()
    print(
        f"  history  {result.generated:,} simulated events, {days[0]} to {days[-1]} ({plan.timezone}),"
        f" written in {result.seconds:.1f} s",
        flush=True,
    )
    return True
