"""Past days of a simulated site, written into the console's store as the gates would have sent them.

The console's flow charts and staffing advice read weeks of events; a demo that starts
with an empty store has nothing to show for minutes.  This writes N days (28 by default)
of what the daily profile (:mod:`simulator.day`) says happened at each gate, as real
:class:`protocol.Event` envelopes — the ``access.scan`` data the gate agent writes, plus
door exit presses and the odd scanner garbage — through :meth:`EventStore.commit`, the
same path the ingestor uses, so every rollup the store keeps is fed as for live events.

What makes it safe beside live gates:

- every event says ``"simulated": true`` in its data;
- each gate and day is its own *history boot*, with a boot id derived from site, gate and
  date (``blake2b`` of ``history/…``), so it can never equal a live agent's random boot;
- event ids are derived from site, gate, date and position in the day, so writing the
  same history again stores nothing new;
- sequence numbers run 1…N per gate across the history's days, as a gate's would, and
  :func:`edge.outbox.continue_numbering` lets the live gate carry on at N+1 — so ``console stats`` still
  shows 0 missing and no conflicts once live events arrive.
"""

from __future__ import annotations

import hashlib
import random
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta, tzinfo
from typing import Any, Protocol
from zoneinfo import ZoneInfo

from protocol import Event
from simulator.day import Direction, GateKind, Passage, day_passages

HOLDERS = ["王小明", "李华", "张伟", "刘洋", "陈静", "杨帆", "赵磊", "黄丽", "周杰", "吴敏", "孙强", "郭芳"]
"""The simulated office's names (simulator/passes.py) and a few more."""

DENIED_REASONS: tuple[tuple[str, float, bool], ...] = (
    ("unknown", 0.45, False),
    ("expired", 0.2, True),
    ("bad_signature", 0.15, False),
    ("revoked", 0.1, True),
    ("wrong_site", 0.1, True),
)
"""(reason, share of denials, whether the gate read the pass): a pass whose signature verified
names its holder in the event; one that did not is reported by its code."""

ROLES: tuple[tuple[str, float], ...] = (("resident", 0.88), ("service_worker", 0.05), ("visitor", 0.07))
"""Who passes a checkpoint: mostly residents, some service workers (water, milk, newspapers)
with real-name photo passes, some visitors with day passes."""


class EventSink(Protocol):
    """What history needs of a store: :class:`console.store.EventStore` has it."""

    def commit(self, events: Sequence[Event] = ...) -> Any: ...


@dataclass(frozen=True, slots=True)
class HistoryGate:
    """A gate whose past is simulated: its name, kind and volume relative to the profile."""

    name: str
    kind: GateKind
    scale: float = 1.0
    reader: str = ""

    @property
    def reader_name(self) -> str:
        if self.reader:
            return self.reader
        return {GateKind.DOOR: "card-reader", GateKind.VEHICLE: "camera"}.get(self.kind, "scanner")


@dataclass(frozen=True, slots=True)
class HistoryPlan:
    """Which days, where, and how: ``days`` whole local days ending the day before ``until``."""

    site: str
    gates: tuple[HistoryGate, ...]
    days: int = 28
    until: date | None = None
    """The first day *not* written (default: today in ``timezone``), so today is left to live gates."""
    timezone: str = "Asia/Shanghai"
    seed: int = 1
    denied_share: float = 0.05
    garbage_share: float = 0.01
    residents: int = 400

    @property
    def zone(self) -> tzinfo:
        return ZoneInfo(self.timezone)

    def day_list(self) -> list[date]:
        until = self.until or datetime.now(self.zone).date()
        return [until - timedelta(days=n) for n in range(self.days, 0, -1)]


@dataclass
class HistoryResult:
    generated: int = 0
    new: int = 0
    duplicate: int = 0
    seconds: float = 0.0
    last_seq: dict[str, int] = field(default_factory=dict)
    """Per gate, the history's last sequence number: where the live gate should carry on."""
    by_type: dict[str, int] = field(default_factory=dict)


def site_gates(
    gates: Sequence[str], doors: Sequence[str] = (), cameras: Sequence[str] = ()
) -> tuple[HistoryGate, ...]:
    """The demo's gates as history sees them: the first checkpoint is the main entrance.

    Side entrances get half its volume; a camera gate stands for the vehicle entrance (a
    driver holds the pass up to the camera); a door is one building's.
    """
    return (
        *(HistoryGate(name, GateKind.PEDESTRIAN, 1.0 if i == 0 else 0.5) for i, name in enumerate(gates)),
        *(HistoryGate(name, GateKind.VEHICLE) for name in cameras),
        *(HistoryGate(name, GateKind.DOOR) for name in doors),
    )


def _hex32(*parts: object) -> str:
    return hashlib.blake2b("/".join(str(p) for p in parts).encode(), digest_size=16).hexdigest()


def history_boot(site: str, gate: str, day: date) -> str:
    """The boot id of one gate's simulated day: stable, and never a live agent's uuid4."""
    return _hex32("gatepost-history-boot", site, gate, day.isoformat())


@dataclass(frozen=True, slots=True)
class _Resident:
    serial: int
    holder: str
    unit: str
    card: str
    role: str
    photo: str | None


def _residents(count: int, seed: int) -> list[_Resident]:
    rng = random.Random(f"gatepost-history-residents/{seed}")
    people = []
    for serial in range(1, count + 1):
        role = rng.choices([r for r, _ in ROLES], [w for _, w in ROLES])[0]
        people.append(
            _Resident(
                serial=serial,
                holder=rng.choice(HOLDERS),
                unit=f"{rng.randint(1, 9)}-{rng.randint(1, 4)}-{rng.randint(1, 6)}0{rng.randint(1, 4)}",
                card=f"wiegand26:13:{1000 + 37 * serial}",
                role=role,
                photo=_hex32("photo", seed, serial) if role == "service_worker" else None,
            )
        )
    return people


class _GateDay:
    """Turns one gate's passages of one day into the events its agent would have taken."""

    def __init__(
        self, plan: HistoryPlan, gate: HistoryGate, day: date, residents: Sequence[_Resident], first_seq: int
    ) -> None:
        self.plan = plan
        self.gate = gate
        self.day = day
        self.residents = residents
        self.seq = first_seq - 1
        self.boot = history_boot(plan.site, gate.name, day)
        self.rng = random.Random(f"gatepost-history/{plan.seed}/{plan.site}/{gate.name}/{day.isoformat()}")
        self.reader = gate.reader_name
        self.events: list[Event] = []

    def build(self) -> list[Event]:
        passages = day_passages(self.gate.kind, self.day, self.plan.zone, self.rng, scale=self.gate.scale)
        for passage in passages:
            if self.gate.kind is not GateKind.DOOR and self.rng.random() < self.plan.garbage_share:
                # A half-read code just before the good read; never before the previous event.
                before = passage.at - timedelta(seconds=self.rng.uniform(0.5, 3.0))
                self._garbage(max(before, self.events[-1].time) if self.events else before)
            if self.gate.kind is GateKind.DOOR and passage.direction is Direction.OUT:
                self._add(passage.at, "door.exit_pressed", {})
            else:
                self._scan(passage)
        return self.events

    def _add(self, at: datetime, event_type: str, data: dict[str, Any]) -> None:
        self.seq += 1
        data["simulated"] = True
        self.events.append(
            Event(
                id=_hex32(
                    "gatepost-history-event", self.plan.site, self.gate.name, self.day, len(self.events)
                ),
                site=self.plan.site,
                gate=self.gate.name,
                boot=self.boot,
                seq=self.seq,
                time=at.astimezone(UTC),
                clock_trusted=True,
                type=event_type,
                data=data,
            )
        )

    def _scan(self, passage: Passage) -> None:
        rng = self.rng
        person = rng.choice(self.residents)
        card = self.gate.kind is GateKind.DOOR
        data: dict[str, Any] = {
            "credential": "card" if card else "pass",
            "code": None,
            "granted": True,
            "reason": "granted",
            "reader": self.reader,
        }
        if rng.random() < self.plan.denied_share:
            data["granted"] = False
            if card:
                data["reason"] = "unknown"  # a stranger's card: the allow-list does not know it
                data["code"] = f"wiegand26:{rng.randrange(200, 256)}:{rng.randrange(60000)}"
            else:
                reasons = DENIED_REASONS
                reason, _share, readable = rng.choices(reasons, [share for _, share, _ in reasons])[0]
                data["reason"] = reason
                if readable:
                    data.update(self._holder(person))
                else:
                    data["code"] = "".join(rng.choices("0123456789", k=227 if reason != "unknown" else 13))
        elif card:
            data["code"] = person.card  # the agent names a card by its credential
            data.update(holder=person.holder, unit=person.unit)
        else:
            data.update(self._holder(person))
        data["direction"] = passage.direction.value
        self._add(passage.at, "access.scan", data)

    @staticmethod
    def _holder(person: _Resident) -> dict[str, Any]:
        """The fields ``Decision.event_fields`` writes for a signed pass."""
        return {
            "serial": person.serial,
            "generation": 0,
            "holder": person.holder,
            "unit": person.unit,
            "role": person.role,
            "photo": person.photo,
        }

    def _garbage(self, at: datetime) -> None:
        reason, detail = self.rng.choice(
            [
                ("unprintable", "control characters in the line"),
                ("too_long", "line longer than 512 characters"),
                ("timeout", "no terminator within 0.5 s"),
            ]
        )
        length = self.rng.randrange(3, 600)
        self._add(
            at,
            "scanner.rejected",
            {"reader": self.reader, "reason": reason, "detail": detail, "length": length},
        )


def generate(plan: HistoryPlan) -> Iterator[tuple[HistoryGate, date, list[Event]]]:
    """Each gate's days in order, as (gate, day, events); seqs continue from day to day."""
    residents = _residents(plan.residents, plan.seed)
    for gate in plan.gates:
        seq = 1
        for day in plan.day_list():
            events = _GateDay(plan, gate, day, residents, seq).build()
            seq += len(events)
            yield gate, day, events


def write_history(store: EventSink, plan: HistoryPlan, *, batch: int = 20_000) -> HistoryResult:
    """Generate the plan's history and commit it in batches of about ``batch`` events.

    Idempotent: the same plan again finds every id stored and adds nothing.  A failed
    commit raises; the batches committed before it stay (each is whole).  Committing on
    a second thread while generating the next batch was tried and gained nothing: the
    store's commit holds the GIL for most of its time (JSON encoding, rollups).
    """
    started = time.perf_counter()
    result = HistoryResult()
    pending: list[Event] = []

    def flush() -> None:
        outcome = store.commit(pending)
        result.new += outcome.new
        result.duplicate += outcome.duplicate
        pending.clear()

    for gate, _day, events in generate(plan):
        result.generated += len(events)
        if events:
            result.last_seq[gate.name] = events[-1].seq
        for event in events:
            result.by_type[event.type] = result.by_type.get(event.type, 0) + 1
        pending.extend(events)
        if len(pending) >= batch:
            flush()
    if pending:
        flush()
    result.seconds = time.perf_counter() - started
    return result
