"""``gatepost console …``: run the console, watch what it stores, prove nothing is missing.

``tail`` and ``stats`` open the store read-only, so they can run beside a live console
(SQLite's WAL lets readers and the writer proceed together) and can never change it.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from console.store import EventStore, GateStats, StoredEvent, StoreStats

_POLL_S = 0.25
_REPORT_S = 60.0
_FIELD_CHARS = 40


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    console = subparsers.add_parser("console", help="the central console that stores every event")
    commands = console.add_subparsers(dest="console_command", required=True)

    run = commands.add_parser("run", help="store events from the broker until SIGINT or SIGTERM")
    run.add_argument("--config", "-c", type=Path, required=True, help="the console's TOML configuration")
    run.add_argument(
        "--workers",
        type=int,
        default=None,
        help="ingest processes (overrides [ingest] workers; docs/storage.md)",
    )
    run.set_defaults(func=_run)

    prune = commands.add_parser("prune", help="delete events and rejections older than [store] retain_days")
    prune.add_argument("--config", "-c", type=Path, required=True, help="the console's TOML configuration")
    prune.add_argument("--dry-run", action="store_true", help="count what would be deleted, delete nothing")
    prune.set_defaults(func=_prune)

    tail = commands.add_parser("tail", help="print the newest stored events, optionally following new ones")
    tail.add_argument("--db", required=True, help="the console's event store (a path or postgresql://…)")
    tail.add_argument("--follow", "-f", action="store_true", help="keep printing events as they are stored")
    tail.add_argument("--limit", "-n", type=int, default=20, help="how many recent events to show first")
    tail.set_defaults(func=_tail)

    stats = commands.add_parser("stats", help="per-gate counts, missing sequence numbers and rejections")
    stats.add_argument("--db", required=True, help="the console's event store (a path or postgresql://…)")
    stats.add_argument("--json", action="store_true", help="print JSON instead of a table")
    stats.set_defaults(func=_stats)

    publish = commands.add_parser(
        "publish-passes",
        help="publish a site's signed trust bundle and revocation list to its gates (retained)",
    )
    publish.add_argument("--config", "-c", type=Path, required=True, help="the console's TOML configuration")
    publish.add_argument("--site", required=True, help="the site whose gates receive the documents")
    publish.add_argument("--public", type=Path, required=True, help="the site office's public/ folder")
    publish.set_defaults(func=_publish_passes)

    from console.web.serve import add_user_parser

    add_user_parser(commands)

    from console.roster.cli import add_roster_parser

    add_roster_parser(commands)

    from console.store_backup import add_backup_parsers

    add_backup_parsers(commands)

    gate = commands.add_parser("gate", help="gates out of service: retire one (its integrations go with it)")
    gate_actions = gate.add_subparsers(dest="gate_command", required=True)
    for action, text in (
        ("retire", "take a gate out of service: its Home Assistant entities are removed; its events stay"),
        ("reinstate", "put a retired gate back in service"),
        ("list", "list retired gates"),
    ):
        sub = gate_actions.add_parser(action, help=text)
        sub.add_argument("--config", "-c", type=Path, required=True, help="the console's TOML configuration")
        if action != "list":
            sub.add_argument("gate", help="SITE/GATE")
        sub.set_defaults(func=_gate, gate_action=action)

    from console.district.cli import add_parser as add_district_parser

    add_district_parser(commands)

    check = commands.add_parser(
        "check-config", help="validate a configuration; name each bad file line and key"
    )
    check.add_argument("file", type=Path)
    check.set_defaults(func=_check)

    enroll = commands.add_parser(
        "enroll", help="make this console's TLS key (it stays here) and a signing request"
    )
    enroll.add_argument("--config", "-c", type=Path, required=True)
    enroll.add_argument("--renew", action="store_true", help="a new key; the old one works until --install")
    enroll.add_argument(
        "--install", type=Path, nargs="+", metavar="CERT", help="the certificates `broker sign` wrote"
    )
    enroll.set_defaults(func=_enroll)


def _enroll(args: argparse.Namespace) -> int:
    from console.config import load_config
    from protocol.configfile import EXIT_BAD_CONFIG, load_or_report
    from protocol.enrolment import run
    from protocol.identity import console_identity

    config = load_or_report(load_config, args.config)
    if config is None:
        return EXIT_BAD_CONFIG
    username = config.mqtt.username or console_identity(config.name)
    return run(config.mqtt, args.config, username, renew=args.renew, install_files=args.install or [])


# -- run / check-config ------------------------------------------------------------------


def _publish_passes(args: argparse.Namespace) -> int:
    from console.config import ConfigError, load_config
    from console.documents import PublishError, publish_documents
    from protocol.errors import ProtocolError
    from protocol.identity import ConsoleConnection

    try:
        config = load_config(args.config)
        brokers = config.mqtt.endpoints()
    except (ConfigError, ProtocolError, OSError) as exc:
        print(f"gatepost console publish-passes: {exc}", file=sys.stderr)
        return 2
    # Retained state lives on each broker: a gate reads the documents from the one it is on
    # (docs/failover.md), so a revocation must reach every broker of the site.
    failed = 0
    for endpoint in brokers:
        where = f" on {endpoint.host}:{endpoint.port}" if len(brokers) > 1 else ""
        try:
            sent = publish_documents(
                endpoint.for_connection(ConsoleConnection.PUBLISH), args.site, args.public
            )
        except (PublishError, ProtocolError, OSError) as exc:
            print(f"gatepost console publish-passes{where}: {exc}", file=sys.stderr)
            failed += 1
            continue
        for document, size in sent.items():
            print(f"published {document.value} for site {args.site}{where} ({size} bytes, retained)")
    return 2 if failed else 0


def _gate(args: argparse.Namespace) -> int:
    import getpass

    from console.audit import AuditLog
    from console.config import load_config
    from console.db import Database, DatabaseError
    from console.gate_retirement import GateRetirements
    from protocol.configfile import EXIT_BAD_CONFIG, load_or_report
    from protocol.errors import ProtocolError
    from protocol.topics import validate_name

    config = load_or_report(load_config, args.config)
    if config is None:
        return EXIT_BAD_CONFIG
    try:
        with Database(config.store.target) as db:
            retirements = GateRetirements(db)
            if args.gate_action == "list":
                for row in retirements.all():
                    print(f"{row.site}/{row.gate}  retired {row.retired_at} by {row.by}")
                return 0
            site, _, gate = args.gate.partition("/")
            validate_name(site, "site")
            validate_name(gate, "gate")
            by = f"cli:{getpass.getuser()}"
            if args.gate_action == "retire":
                changed = retirements.retire(site, gate, by=by)
                what = "retired" if changed else "was already retired"
            else:
                changed = retirements.reinstate(site, gate)
                what = "reinstated" if changed else "was not retired"
            if changed:
                AuditLog(db).record(by, f"gate.{args.gate_action}", f"{site}/{gate}", address="cli")
    except (DatabaseError, ProtocolError) as exc:
        print(f"gatepost console gate {args.gate_action}: {exc}", file=sys.stderr)
        return 1 if isinstance(exc, DatabaseError) else 2
    print(f"{site}/{gate} {what}")
    if changed and args.gate_action == "retire":
        print(
            "a running console removes its Home Assistant entities within seconds; "
            f"its broker account stays until `gatepost broker remove gate.{site}.{gate}`"
        )
    return 0


def _check(args: argparse.Namespace) -> int:
    from console.config import load_config
    from console.db import display_url
    from protocol.configfile import EXIT_BAD_CONFIG, load_or_report

    config = load_or_report(load_config, args.file)
    if config is None:
        return EXIT_BAD_CONFIG
    sites = "all sites" if config.site == "+" else f"site {config.site}"
    print(f"{args.file}: ok (console {config.name}, {sites}, store {display_url(config.store.target)})")
    return 0


def _run(args: argparse.Namespace) -> int:
    import logging

    from console.brokers import BrokerIngest
    from console.config import load_config
    from console.ingest import (
        MAX_WORKERS,
        Ingestor,
        IngestWorkers,
        WorkerSpec,
        share_group_name,
        sweep_worker_sessions,
    )
    from console.retention import RetentionPolicy, RetentionTimer
    from console.store import EventStore, StoreError
    from console.supervision import console_parts, console_status
    from gatepost.sdnotify import Notifier
    from gatepost.stopping import StopSignals
    from gatepost.supervision import Supervisor
    from protocol.configfile import EXIT_BAD_CONFIG, load_or_report

    notifier = Notifier.from_environment()  # before the ingest workers could inherit it
    config = load_or_report(load_config, args.config)
    if config is None:
        return EXIT_BAD_CONFIG
    logging.basicConfig(
        level=config.log.level, format="%(asctime)s console %(levelname)s %(name)s: %(message)s"
    )
    try:
        endpoint = config.mqtt.endpoint()
    except OSError as exc:
        print(f"cannot read the broker password: {exc}", file=sys.stderr)
        return 1
    try:
        store = EventStore(config.store.target)  # migrated here, before any worker opens it
    except StoreError as exc:
        print(f"cannot open the event store: {exc}", file=sys.stderr)
        return 1
    workers = args.workers if args.workers is not None else config.ingest.workers
    if not 1 <= workers <= MAX_WORKERS:
        print(f"--workers must be 1..{MAX_WORKERS}, not {workers}", file=sys.stderr)
        return 2
    from console.store_backup import start_backup_timer, take_run_lock

    run_lock = take_run_lock(config.store.target)  # noqa: F841 - `console restore` refuses while it is held

    if config.mqtt.failover and workers > 1:
        print(
            "[mqtt] failover and --workers/[ingest] workers > 1 do not go together yet: "
            "one ingestor per broker (docs/failover.md)",
            file=sys.stderr,
        )
        return 2

    stop = StopSignals()
    ingestor: Ingestor | IngestWorkers | BrokerIngest
    if workers > 1 and store.db.dialect == "sqlite":
        logging.getLogger("gatepost.console").warning(
            "%d ingest workers on SQLite: it admits one writer at a time, so a second worker "
            "adds little (1.0-1.5x one, docs/BENCHMARKS.md); PostgreSQL scales further",
            workers,
        )
    if config.mqtt.failover:
        ingestor = BrokerIngest(  # one ingestor per broker of the site, one store (console/brokers.py)
            config.mqtt.endpoints(),
            store,
            name=config.name,
            limits=config.integrity.limits(),
            site=config.site,
            batch_max=config.ingest.batch_max,
            batch_wait_s=config.ingest.batch_wait_s,
            share_group=share_group_name(config.name, endpoint.password),
        )
    elif workers > 1:
        spec = WorkerSpec(
            endpoint,
            str(config.store.target),
            name=config.name,
            site=config.site,
            batch_max=config.ingest.batch_max,
            batch_wait_s=config.ingest.batch_wait_s,
            log_level=config.log.level,
            limits=config.integrity.limits(),
        )
        ingestor = IngestWorkers(spec, workers)  # sweeps stale worker sessions on start
    else:
        try:
            sweep_worker_sessions(endpoint, keep=1)
        except Exception as exc:  # the broker may be down at start; paho will keep trying below
            logging.getLogger("gatepost.console").info("did not clear old worker sessions: %s", exc)
        ingestor = Ingestor(
            endpoint,
            store,
            name=config.name,
            site=config.site,
            batch_max=config.ingest.batch_max,
            batch_wait_s=config.ingest.batch_wait_s,
            share_group=share_group_name(config.name, endpoint.password),
            limits=config.integrity.limits(),
        )
    retention = RetentionTimer(
        store,
        RetentionPolicy(
            config.store.retain_days, config.store.retain_rejections_days, batch=config.store.prune_batch
        ),
    )
    log = logging.getLogger("gatepost.console")
    from console.web.serve import start_web

    try:
        web = start_web(config, store, endpoint)
    except Exception as exc:  # storing events matters more than the web pages: carry on without them
        log.error("the web console did not start: %s", exc)
        print(f"gatepost console: the web console did not start: {exc}", file=sys.stderr)
        web = None
    if web is not None:
        ingestor.on_commit = web.poke  # live pages update at once, not at the next poll
    homeassistant = _homeassistant(config, store, endpoint, web, ingestor)
    district = _district_feed(config, store)
    if district is not None:
        from console.homeassistant import chain  # one on_commit for every listener

        ingestor.on_commit = chain(ingestor.on_commit, district.poke)
    gaps = _gap_watch(config, store, web)
    from console.card_sync import start_card_publisher

    publishers: list[Any] = []
    metrics = None
    if config.metrics.listen:
        from console.metrics import ConsoleMetrics

        health = web.ctx.health.board if web is not None and web.ctx.health is not None else None
        metrics = ConsoleMetrics(store, ingestor=ingestor, health=health)
        metrics.serve(config.metrics.listen)  # a metrics port in use is logged, not fatal
    supervisor = Supervisor(notifier, console_parts(ingestor, web), lambda: console_status(ingestor))
    backups = None
    try:
        backups = start_backup_timer(config)
        ingestor.start()
        retention.start()
        if gaps is not None:
            gaps.start()
        if district is not None:
            district.start()
        # The card list is retained state on each broker: a gate reads it from the one it is on.
        brokers = config.mqtt.endpoints() if config.mqtt.failover else [endpoint]
        publishers = [p for p in (start_card_publisher(config, e) for e in brokers) if p is not None]
        publishers += _duty_parts(config, store, web, brokers)
        supervisor.ready()  # the store is open and ingest is subscribed or trying
        reported = ingestor.counters
        while not stop.wait(_REPORT_S):
            if ingestor.counters != reported:  # a heartbeat for the operator, quiet when idle
                reported = ingestor.counters
                log.info("%s", reported)
    finally:
        if metrics is not None:
            metrics.close()
        supervisor.stopping()
        if backups is not None:
            backups.stop()
        if homeassistant is not None:
            homeassistant.stop()
        for publisher in publishers:
            publisher.stop()
        if gaps is not None:
            gaps.stop()
        if district is not None:
            district.stop()
        if web is not None:
            web.stop()
        retention.stop()
        ingestor.stop()
        store.close()
    return 0


def _homeassistant(config: Any, store: EventStore, endpoint: Any, web: Any, ingestor: Any) -> Any:
    """Home Assistant discovery (console/homeassistant.py) when enabled; its failure leaves ingest running."""
    import logging

    if not config.homeassistant.enabled:
        return None
    from console.homeassistant import chain, start_homeassistant
    from console.ingest import ANNOUNCE_ALL
    from protocol.topics import console_status_topic

    status = console_status_topic(ANNOUNCE_ALL if config.site == "+" else config.site)
    try:
        bridge = start_homeassistant(config, store, endpoint, web, console_status=status)
    except Exception as exc:
        logging.getLogger("gatepost.console").error("Home Assistant discovery did not start: %s", exc)
        return None
    if bridge is not None:
        ingestor.on_commit = chain(ingestor.on_commit, bridge.poke)
    return bridge


def _district_feed(config: Any, store: EventStore) -> Any:
    """The district push feed (console/district/) when ``[district.mqtt]`` is configured, else None."""
    import logging

    section = config.district
    if section is None or section.mqtt is None:
        return None
    from console.district.mqtt_feed import MqttFeed
    from console.district.runner import DistrictRunner

    try:
        endpoint = section.mqtt.endpoint()
    except OSError as exc:  # events are still stored; the feed resumes from its cursor once fixed
        logging.getLogger("gatepost.console").error("the district feed is off: %s", exc)
        return None
    feed = MqttFeed(endpoint, inflight=section.mqtt.inflight, ack_timeout_s=section.mqtt.ack_timeout_s)
    return DistrictRunner(store, section, feed)


def _duty_parts(config: Any, store: EventStore, web: Any, brokers: list[Any]) -> list[Any]:
    """Duty sheets to the gates (console/duty_sheets.py) and the understaffed alarm; each ``stop()``s.

    Either failing to start is logged and leaves the rest of the console running: events
    are still stored, and attendance is read from them whenever the page is asked.
    """
    import logging

    from console.duty_sheets import start_duty_sheets
    from console.roster.attendance_watch import start_understaffed_watch

    parts: list[Any] = []
    for endpoint in brokers:  # retained state on each broker, like the card list
        try:
            parts.append(start_duty_sheets(config, store.db, endpoint))
        except Exception as exc:
            logging.getLogger("gatepost.console").error("duty sheets are off: %s", exc)
    watch = start_understaffed_watch(config, store, web)
    if watch is not None:
        parts.append(watch)
    return parts


def _gap_watch(config: Any, store: EventStore, web: Any) -> Any:
    """The gap watch (console/gaps.py) with its alarms, told to the web console's live pages if any."""
    import logging

    from console.alarms import AlarmBook
    from console.gaps import GapWatch

    try:
        alarms = AlarmBook(store.db)
    except Exception as exc:  # the gaps are still kept for ``console stats``
        logging.getLogger("gatepost.console").error("gap alarms are off: %s", exc)
        alarms = None
    return GapWatch(
        store,
        alarms,
        alarm_after_s=config.integrity.gap_alarm_after_s,
        interval_s=config.integrity.gap_check_s,
        on_alarm=web.publish_alarm if web is not None else None,
    )


def _prune(args: argparse.Namespace) -> int:
    from console.config import load_config
    from console.db import DatabaseError
    from console.retention import RetentionPolicy, prune
    from console.store import EventStore
    from protocol.configfile import EXIT_BAD_CONFIG, load_or_report

    config = load_or_report(load_config, args.config)
    if config is None:
        return EXIT_BAD_CONFIG
    policy = RetentionPolicy(
        config.store.retain_days, config.store.retain_rejections_days, batch=config.store.prune_batch
    )
    try:
        with EventStore(config.store.target) as store:
            result = prune(store, policy, dry_run=args.dry_run)
    except DatabaseError as exc:
        print(f"gatepost console prune: {exc}", file=sys.stderr)
        return 1
    print(result.describe())
    return 0


# -- tail --------------------------------------------------------------------------------


def _clean(value: object) -> str:
    """Scanner input is untrusted: never let it put escape sequences on an operator's terminal."""
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    text = "".join(ch if ch.isprintable() else f"\\x{ord(ch):02x}" for ch in text)
    return text if len(text) <= _FIELD_CHARS else text[: _FIELD_CHARS - 1] + "…"


def format_event(event: StoredEvent) -> str:
    """One readable line: time, site/gate, seq, type, then the fields that matter."""
    stamp = event.time.replace("T", " ").rstrip("Z")[:23]
    mark = " " if event.clock_trusted else "?"
    data = dict(event.data)
    head: list[str] = []
    if "granted" in data:
        head.append("GRANTED" if data.pop("granted") is True else "DENIED")
    fields = [f"{key}={_clean(value)}" for key, value in data.items() if value not in (None, "", {}, [])]
    return f"{stamp}{mark} {event.site}/{event.gate} #{event.seq} {event.type} {' '.join(head + fields)}".rstrip()


def _open_readonly(path: str | Path, *, wait: bool) -> tuple[EventStore | None, bool]:
    """The store, and whether we had to wait for a console to create it."""
    from console.store import EventStore, StoreError

    waited = False
    while True:
        try:
            return EventStore(path, readonly=True), waited
        except StoreError as exc:
            if not wait:
                print(f"gatepost console: {exc}", file=sys.stderr)
                return None, waited
            if not waited:
                print(f"gatepost console: waiting for {path} ({exc})", file=sys.stderr, flush=True)
        waited = True
        time.sleep(_POLL_S)  # --follow before the console has created its store


def _tail(args: argparse.Namespace) -> int:
    from console.follow import EventFollower

    store, waited = _open_readonly(args.db, wait=args.follow)
    if store is None:
        return 1
    try:
        if waited:  # the store is new since we started: every event in it is news
            last = 0
        else:
            events = store.last_events(max(args.limit, 0))
            last = events[-1].row_id if events else _last_row(store)
            _print(events)
        # through a follower: with several ingest workers on PostgreSQL an event can commit
        # after one with a higher row_id, and a plain "after the last one" would skip it
        follower = EventFollower(store, last)
        while args.follow:
            events, more = follower.read(1000)
            _print(events)
            if not more:
                time.sleep(_POLL_S)
    except BrokenPipeError:
        sys.stderr.close()  # reader went away (``| head``): not an error
    except KeyboardInterrupt:
        pass
    finally:
        store.close()
    return 0


def _last_row(store: EventStore) -> int:
    newest = store.last_events(1)
    return newest[-1].row_id if newest else 0


def _print(events: list[StoredEvent]) -> None:
    if events:
        sys.stdout.write("".join(format_event(event) + "\n" for event in events))
        sys.stdout.flush()


# -- stats -------------------------------------------------------------------------------


def _stats(args: argparse.Namespace) -> int:
    store, _ = _open_readonly(args.db, wait=False)
    if store is None:
        return 1
    try:
        stats = store.stats()
    finally:
        store.close()
    if args.json:
        print(json.dumps(stats.to_dict(), indent=2))
    else:
        print(format_stats(stats))
    return 0


def _clock(text: str | None) -> str:
    """A stored UTC time as ``2026-11-29 10:31:07`` (what ``tail`` and the table show)."""
    return (text or "-").replace("T", " ").rstrip("Z")[:19]


def _gaps_cell(gate: GateStats) -> str:
    if not gate.open_gap_count:
        return "-"
    parts = [f"{a}-{b}" if b > a else str(a) for a, b in gate.open_gaps[:3]]
    more = gate.open_gap_count - len(parts)
    return ",".join(parts) + (f",+{more}" if more > 0 else "")


def _state_cell(gate: GateStats) -> str:
    """``online`` only when the console can vouch for it now; otherwise what it last knew, and since when."""
    if gate.state is None:
        return "-"
    state = gate.state + ("(contradicted offline)" if gate.status_contradicted else "")
    if gate.state_confirmed:
        return state
    if gate.state == "stopped" and gate.state_received_at:
        # the gate said so itself, with its backlog: true when said, whatever came after
        return f"stopped at {_clock(gate.state_received_at)}"
    since = _clock(gate.unconfirmed_since)
    return f"{state}? unconfirmed since {since}" if gate.unconfirmed_since else f"{state}? unconfirmed"


def _link_line(stats: StoreStats) -> str | None:
    """What the console could not see, in words: printed under the table whenever it is not confirmed."""
    link = stats.link
    if stats.confirmed:
        return None
    if link is None:
        return (
            "UNCONFIRMED: no console has recorded its broker connection in this store; the states above"
            " are as last received, and events the gates took since may still be held at them"
        )
    since = _clock(stats.unconfirmed_since)
    if link.state.value == "stopped":
        return (
            f"As of {since}, when the console stopped: a gate still running then may hold events"
            " taken since, counted in no figure here"
        )
    why = (
        f"the console lost its broker connection at {since}"
        if link.state.value == "lost"
        else f"the console's last word was at {since} (it died or hung)"
    )
    return (
        f"UNCONFIRMED since {since}: {why}; the states and held counts above are as last reported"
        " before that, and events the gates took since then are in no figure here"
        " (they are held in the gates' outboxes, or lost)"
    )


def format_stats(stats: StoreStats) -> str:
    header = ("SITE", "GATE", "EVENTS", "SEQS", "MISSING", "CONFLICTS", "GAPS", "HELD", "STATE", "LAST EVENT")
    rows: list[tuple[Any, ...]] = [
        (
            g.site,
            g.gate,
            g.count,
            f"{g.min_seq}-{g.max_seq}" if g.count else "-",
            g.missing,
            g.seq_conflicts,
            _gaps_cell(g),
            "-" if g.held is None else f"{g.held}@{_clock(g.held_reported_at)[11:]}",
            _state_cell(g),
            _clock(g.last_event_time),
        )
        for g in stats.gates
    ]
    table = [header, *[tuple(str(cell) for cell in row) for row in rows]]
    widths = [max(len(row[i]) for row in table) for i in range(len(header))]
    lines = [
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in table
    ]
    lines.append("")
    held = sum(1 for g in stats.gates if g.held is not None)
    lines.append(
        f"{stats.total_events} events from {len(stats.gates)} gates, {stats.total_missing} missing"
        + (f" ({stats.total_open_gaps} open gaps)" if stats.total_open_gaps else "")
        + (f", {stats.total_held} held at {held} gates as last reported" if held else "")
        + (
            ""
            if stats.confirmed or stats.link is None or stats.link.state.value == "stopped"
            else " (unconfirmed)"
        )
        + f"; {stats.total_rejections} rejected messages"
        + (
            ": " + ", ".join(f"{reason} {n}" for reason, n in stats.rejections.items())
            if stats.rejections
            else ""
        )
    )
    link = _link_line(stats)
    if link is not None and (stats.link is not None or any(g.state is not None for g in stats.gates)):
        lines.append(link)
    return "\n".join(lines)
