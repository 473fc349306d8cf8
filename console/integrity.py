"""A lying gate lies only about itself, and only within bounds: the ingest guard.

A gate's MQTT credentials let whoever holds them publish anything on that gate's own
topics: the broker's ACL and the console's topic/envelope check (console/ingest.py
``parse_message``) already stop it speaking for another gate.  This module bounds what
it can do to the console's picture of *itself*, checking each event and status before
it is committed.  Every check is a dictionary lookup and a few comparisons per event;
the only database reads are one index probe per gate per process (its highest stored
sequence number) and, for an event numbered at or below that, one probe per batch and
gate (is that number already stored under another id?).

=====================  =====================================================  ================================
what                   rule                                                   then
=====================  =====================================================  ================================
dated in the future    ``time`` more than ``clock_skew_s`` after the console   stored flagged ``FUTURE``
                       received it                                            (quarantined), acknowledged
back-dated             a new sequence number dated more than ``clock_skew_s``  stored flagged ``BACKDATED``
                       before an event the gate numbered earlier; or a         (out of the flow), acknowledged
                       number already stored under another id
flood                  more than ``flood_per_min`` events of one gate dated    stored flagged ``FLOOD`` (in the
                       in the same minute                                     flow, and in ``flow_flagged``)
absurd sequence jump   ``seq`` more than ``seq_jump_max`` above the gate's     refused (:class:`Implausible`
                       highest stored one                                     ``seq_jump``), not acknowledged
stale status           older (by its own ``time``) than the one believed,     refused ``stale_status``
                       for the same run of the gate
status from the        ``time`` more than ``clock_skew_s`` ahead              refused ``future_status``
future
status left behind     from another broker than the believed one, and not     dropped quietly (the gate moved
on another broker      newer than it                                          on, console/brokers.py)
=====================  =====================================================  ================================

Why these bounds:

- A gate numbers its events in the order it takes them, with one clock.  A number
  above every stored one dated well before a stored one is impossible for a gate whose
  clock runs forward; a gate whose clock stepped back (a Raspberry Pi booting on
  fake-hwclock) produces exactly such events, and their times are guesses that would
  land in the wrong hour of the flow anyway.
- A gate cannot have more events unacknowledged than its outbox holds (``[outbox]
  capacity``, 200,000 by default), and the console acknowledges only what it stored,
  so every number between the highest stored and a new one is in the gate's outbox:
  a jump beyond the capacity is not a gate's.  Refused, not acknowledged: a real gate
  keeps the event, so nothing is lost, and the operator sees the alarm.  (A console
  whose store was restored from an old backup is the honest way to see such a jump:
  raise ``seq_jump_max`` until the gates have caught up.)
- People pass a checkpoint lane one every two seconds at most, five events each with
  the door's; 600 a minute is four times that.  A gate's backlog replayed after an
  outage keeps its original times, so it spreads over its own minutes and is no flood.
  With several ingest workers each one counts only its share, so the budget per gate
  is that many times larger.

Nothing here drops an event a genuine gate took: an event is refused only when no
genuine gate can have sent it, and a refused one is not acknowledged, so the gate
keeps it.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum

from console.store import EventFlag, EventStore, Rejection
from protocol import Event, GateState, GateStatus
from protocol.errors import Rejection as Refusal
from protocol.topics import GateTopics

log = logging.getLogger("gatepost.console.integrity")

__all__ = ["Implausible", "ImplausibleInput", "IngestGuard", "IntegrityLimits", "Verdict"]

_MINUTE = 60
_FUTURE, _BACKDATED, _FLOOD = int(EventFlag.FUTURE), int(EventFlag.BACKDATED), int(EventFlag.FLOOD)
_NOT_FACT = _FUTURE | _BACKDATED
"""Plain ints in the per-event loop: ``IntFlag`` arithmetic costs a microsecond an operation."""
_FLOOD_MINUTES_KEPT = 64
"""Event-time minutes remembered per gate for the flood budget (a replayed backlog visits many)."""
_RUNNING = (GateState.ONLINE.value, GateState.DEGRADED.value)
"""A connected gate's states: ``degraded`` is ``online`` with a disk refusing writes."""


class Implausible(StrEnum):
    """Why the console refused a message no genuine gate can have sent.  Stable strings (``rejections.reason``)."""

    SEQ_JUMP = "seq_jump"
    STALE_STATUS = "stale_status"
    FUTURE_STATUS = "future_status"


class ImplausibleInput(Refusal[Implausible], ValueError):
    """A well-formed message from a gate's own topic that the gate cannot truthfully have sent."""

    def __init__(self, reason: Implausible, detail: str, *, site: str, gate: str) -> None:
        self.site = site
        self.gate = gate
        super().__init__(reason, detail)

    def _describe(self) -> str:
        return f"{self.site}/{self.gate}: {self.reason.value}: {self.detail}"


@dataclass(frozen=True, slots=True)
class IntegrityLimits:
    """The bounds, from ``[integrity]`` in the console's configuration (console/config.py)."""

    clock_skew_s: float = 300.0
    seq_jump_max: int = 200_000
    flood_per_min: int = 600
    status_window_s: float = 60.0
    """How much older than the believed status a status of the same run may be: a gate arms
    its will just before it connects and announces ``online`` just after, so a genuine will
    is older than its own run's ``online`` by no more than a connect takes."""


@dataclass(slots=True)
class _GateTrack:
    """What the guard remembers of one gate between batches."""

    high_seq: int | None
    high_time: datetime | None
    minutes: dict[int, int] = field(default_factory=dict)


@dataclass(slots=True)
class _StatusTrack:
    boot: str
    time: datetime | None
    state: str
    broker: str | None = None
    """Which broker the believed status came from; None when read back from the store."""


@dataclass(frozen=True, slots=True)
class Verdict:
    """One batch as the guard judged it: what to store (with flags) and what to refuse."""

    events: list[Event]
    flags: list[int]
    refused: list[ImplausibleInput]

    @property
    def rejections(self) -> list[Rejection]:
        return [_rejection(exc, "event") for exc in self.refused]


def _rejection(exc: ImplausibleInput, kind: str) -> Rejection:
    topics = GateTopics(exc.site, exc.gate)
    return Rejection(topics.event if kind == "event" else topics.status, exc.reason.value, exc.detail)


class IngestGuard:
    """Judges each batch before the ingest writer commits it (see the module's table)."""

    def __init__(self, store: EventStore, limits: IntegrityLimits | None = None) -> None:
        self.store = store
        self.limits = limits or IntegrityLimits()
        self._gates: dict[tuple[str, str], _GateTrack] = {}
        self._statuses: dict[tuple[str, str], _StatusTrack | None] = {}
        self.lock = threading.RLock()
        """Held by each ingestor sharing this guard (one per broker, console/brokers.py) around
        judging and committing a batch, so that the store's status is the one judged newest."""
        self.superseded = 0
        """Statuses dropped because the gate had already moved to another broker."""

    # -- events ----------------------------------------------------------------------

    def _track(self, site: str, gate: str) -> _GateTrack:
        track = self._gates.get((site, gate))
        if track is None:
            highest = self.store.highest_seq(site, gate)
            track = _GateTrack(*((highest[0], _parse(highest[1])) if highest else (None, None)))
            self._gates[site, gate] = track
        return track

    def check_events(self, events: Sequence[Event], now: datetime | None = None) -> Verdict:
        now = now or datetime.now(UTC)
        limits = self.limits
        skew = timedelta(seconds=limits.clock_skew_s)
        future = now + skew
        jump_max, flood_max = limits.seq_jump_max, limits.flood_per_min
        kept: list[Event] = []
        flags: list[int] = []
        refused: list[ImplausibleInput] = []
        reused = self._reused_seqs(events)
        gates = self._gates
        for event in events:
            track = gates[event.site, event.gate]  # made by _reused_seqs
            high = track.high_seq
            seq = event.seq
            if high is not None and seq > high + jump_max:
                refused.append(
                    ImplausibleInput(
                        Implausible.SEQ_JUMP,
                        f"seq {seq} is {seq - high:,} above the highest stored"
                        f" ({high}); no outbox holds more than {jump_max:,}",
                        site=event.site,
                        gate=event.gate,
                    )
                )
                continue
            at = event.time
            flag = 0
            if at > future:
                flag = _FUTURE
            else:
                if (reused and (event.site, event.gate, seq, event.id) in reused) or (
                    high is not None
                    and seq > high
                    and track.high_time is not None
                    and at < track.high_time - skew
                ):
                    flag = _BACKDATED
                minutes = track.minutes
                minute = int(at.timestamp()) // _MINUTE
                seen = minutes.get(minute, 0) + 1
                if seen > flood_max:
                    flag |= _FLOOD
                else:
                    minutes[minute] = seen
                    if len(minutes) > _FLOOD_MINUTES_KEPT:
                        del minutes[min(minutes)]
            if high is None or seq > high:
                track.high_seq = seq
            if not flag & _NOT_FACT and (track.high_time is None or at > track.high_time):
                track.high_time = at
            kept.append(event)
            flags.append(flag)
        return Verdict(kept, flags, refused)

    def _reused_seqs(self, events: Sequence[Event]) -> set[tuple[str, str, int, str]]:
        """Events numbered at or below their gate's highest stored seq whose number is already stored
        under another id (or given twice in this batch): a gate never reuses a number.

        A genuine resend has the same id, so it is a duplicate, not this; a genuine gap fill's
        number is not stored.  One query for the whole batch when it holds such events (per
        300 of them), whatever the number of gates; none in steady state.
        """
        low: list[Event] = []
        first_id: dict[tuple[str, str, int], str] = {}
        reused: set[tuple[str, str, int, str]] = set()
        gates = self._gates
        for event in events:
            key = (event.site, event.gate, event.seq)
            earlier = first_id.setdefault(key, event.id)
            if earlier != event.id:
                reused.add((*key, event.id))
            track = gates.get((event.site, event.gate)) or self._track(event.site, event.gate)
            if track.high_seq is not None and event.seq <= track.high_seq:
                low.append(event)
        if low:
            stored = self.store.ids_of_keys(sorted({(e.site, e.gate, e.seq) for e in low}))
            for event in low:
                ids = stored.get((event.site, event.gate, event.seq))
                if ids and event.id not in ids:
                    reused.add((event.site, event.gate, event.seq, event.id))
        return reused

    # -- statuses --------------------------------------------------------------------

    def check_statuses(
        self, statuses: Sequence[GateStatus], now: datetime | None = None, *, broker: str | None = None
    ) -> tuple[list[GateStatus], list[Rejection]]:
        """The statuses to believe, and the refusals of the others (see the module's table).

        Only the ingestor that reads statuses calls this (worker 0, or one ingestor per
        broker sharing this guard), so its memory of the believed status is the store's.

        ``broker`` names where the statuses came from when the console reads several.  A
        broker keeps the last status a gate left there: the ``online`` of a gate that has
        since moved on, or the will of the connection it lost.  A gate stamps the will of
        each connection just before making it and announces ``online`` just after, so what
        it says on the broker it moved to is always newer than anything it left behind; a
        status from another broker than the believed one's is believed only if newer, and
        otherwise dropped without a rejection, because nothing is wrong.
        """
        now = now or datetime.now(UTC)
        kept: list[GateStatus] = []
        refused: list[Rejection] = []
        for status in statuses:
            try:
                if not self._check_status(status, now, broker):
                    self.superseded += 1
                    log.debug(
                        "%s/%s: %s status from broker %s is older than the one believed; the gate moved on",
                        status.site,
                        status.gate,
                        status.state.value,
                        broker,
                    )
                    continue
            except ImplausibleInput as exc:
                refused.append(_rejection(exc, "status"))
                continue
            self._statuses[status.site, status.gate] = _StatusTrack(
                status.boot, status.time, status.state.value, broker
            )
            kept.append(status)
        return kept, refused

    def _check_status(self, status: GateStatus, now: datetime, broker: str | None = None) -> bool:
        """Raise when implausible; false when the status was left behind on another broker."""
        limits = self.limits
        key = (status.site, status.gate)
        if status.time is not None and status.time > now + timedelta(seconds=limits.clock_skew_s):
            raise ImplausibleInput(
                Implausible.FUTURE_STATUS,
                f"{status.state.value} status dated {status.time.isoformat()}, in the future",
                site=status.site,
                gate=status.gate,
            )
        if key not in self._statuses:
            self._statuses[key] = self._stored_status(*key)
        believed = self._statuses[key]
        if believed is None or believed.time is None or status.time is None:
            return True
        elsewhere = broker is not None and believed.broker is not None and believed.broker != broker
        if elsewhere and status.time <= believed.time:
            return False
        older = status.time < believed.time - timedelta(seconds=limits.status_window_s)
        same_run = status.boot == believed.boot
        ends_current_run = status.state is GateState.OFFLINE and believed.state in _RUNNING
        if older and (same_run or ends_current_run):
            raise ImplausibleInput(
                Implausible.STALE_STATUS,
                f"{status.state.value} status dated {status.time.isoformat()} is older than the"
                f" {believed.state} one believed ({believed.time.isoformat()})"
                + ("" if same_run else " and names an earlier run"),
                site=status.site,
                gate=status.gate,
            )
        return True

    def _stored_status(self, site: str, gate: str) -> _StatusTrack | None:
        rows = self.store.db.query(
            "SELECT boot, time, state FROM gate_status WHERE site = ? AND gate = ?", (site, gate)
        )
        if not rows:
            return None
        boot, time, state = rows[0]
        return _StatusTrack(boot, _parse(time) if time else None, state)


def _parse(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))
