"""When to send an unacknowledged event again: per-event deadlines, as TCP retransmits segments.

The gate deletes an event only when the console's Ack names it (edge/link.py).  An event
can go missing between the two without either side disconnecting: a ``$share`` ingest
worker killed while holding it, a broker queue that dropped it, a console that refused
it, a man in the middle.  Waiting for a reconnect to resend it could wait for ever, so
every event in flight has its own deadline, and two kinds of evidence set it:

* **Overtaken.**  The console acknowledged an event that was first sent *after* this one
  was last sent.  MQTT delivers one publisher's QoS 1 messages to one subscriber in order,
  so the missing one is almost certainly lost; it is resent after ``overtaken_s`` (a short
  allowance for ``$share`` workers committing their batches out of order), doubling per
  resend.  This is TCP's fast retransmit, with Karn's rule: an acknowledged event that was
  sent several times counts as sent at its *first* send, because nobody knows which copy
  the console stored.
* **Timeout.**  No such evidence: resend ``rto_s`` after the last send, doubling per
  resend up to ``max_s`` (TCP's retransmission timeout).

While the console acknowledges nothing at all for ``rto_s`` (stopped, or draining a deep
queue behind the broker), resending the whole window would only pile duplicates into the
broker's queue for it, so only one event is resent at a time, as a probe: of those whose
own deadline has passed, the one sent longest ago, at intervals that double from ``rto_s``
up to ``max_s``.  When
acknowledgements resume, every deadline is pushed to at least ``rto_s`` from then, so the
events still queued at the broker get a chance to arrive before being sent again; holes
among them show up as overtaken within a round trip.  If the console then falls silent
again, the broker had nothing more queued (a console whose session was lost, say): what
is still in flight is resent at once, not probed one by one.

The tracker is pure bookkeeping with an injectable clock: :class:`~edge.link.Link` tells
it what it sent and what was acknowledged, and asks what is due.
"""

from __future__ import annotations

import heapq
import itertools
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass

MAX_RESEND_AFTER_S = 300.0
"""Longest wait between two sends of one event."""


@dataclass(slots=True)
class _Flight:
    """One event in flight: how many times it went out and when it is due again."""

    first_tx: int
    last_tx: int
    last_sent: float
    deadline: float
    sends: int = 1
    overtaken: bool = False


class ResendTracker:
    """Per-event resend deadlines for the events a gate has published and not had acknowledged."""

    def __init__(
        self,
        rto_s: float,
        overtaken_s: float,
        *,
        max_s: float = MAX_RESEND_AFTER_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if rto_s <= 0 or overtaken_s <= 0 or max_s < rto_s:
            raise ValueError("resend times must be positive and max_s at least rto_s")
        self.rto_s = rto_s
        self.overtaken_s = overtaken_s
        self.max_s = max_s
        self._clock = clock
        self._flights: dict[int, _Flight] = {}
        self._deadlines: list[tuple[float, int]] = []  # (deadline, seq); stale entries skipped
        self._sends: deque[tuple[int, int]] = deque()  # (tx, seq) in send order; stale entries skipped
        self._tx = itertools.count(1)
        self._acked_floor = 0  # first_tx of the latest-sent event the console acknowledged
        self._last_ack = clock()
        self._answered = False  # the console answered after a silence: the next round is not a probe
        self._probes = 0  # probes sent during the current silence
        self._probe_at = 0.0  # no probe before this while the console is silent
        # The last silence: when it began and ended, and until when the events in flight at
        # its end are spared the overtaken rule because the console is seen draining them.
        self._silence = (0.0, 0.0)
        self._draining_until = 0.0
        self.resends = 0
        """Events sent again since start (the link's counter)."""

    def __len__(self) -> int:
        return len(self._flights)

    def __contains__(self, seq: object) -> bool:
        return seq in self._flights

    # -- what the link tells us -----------------------------------------------------------

    def clear(self) -> None:
        """Forget everything in flight: the link starts the stream again from the oldest row."""
        self._flights.clear()
        self._deadlines.clear()
        self._sends.clear()
        self._acked_floor = 0
        self._last_ack = self._clock()
        self._probes, self._probe_at, self._answered = 0, 0.0, False
        self._silence, self._draining_until = (0.0, 0.0), 0.0

    def sent(self, seq: int) -> None:
        """``seq`` went out (first time, or again)."""
        now = self._clock()
        tx = next(self._tx)
        flight = self._flights.get(seq)
        if flight is None:
            if not self._flights:
                self._last_ack = now  # an idle link is not a silent console
            flight = self._flights[seq] = _Flight(tx, tx, now, 0.0)
        else:
            flight.sends += 1
            flight.last_tx = tx
            flight.last_sent = now
            flight.overtaken = False
            self.resends += 1
        flight.deadline = now + self._backoff(self.rto_s, flight.sends)
        heapq.heappush(self._deadlines, (flight.deadline, seq))
        self._sends.append((tx, seq))

    def acked(self, seqs: Iterable[int]) -> int:
        """The console acknowledged ``seqs``; returns how many of them were in flight."""
        now = self._clock()
        resumed = bool(self._flights) and now - self._last_ack >= self.rto_s
        if resumed:
            self._silence = (self._last_ack, now)
        self._last_ack = now
        self._probes, self._probe_at = 0, 0.0
        self._answered = self._answered or resumed
        removed = 0
        floor = self._acked_floor
        began = self._silence[0]
        drained = False
        for seq in seqs:
            flight = self._flights.pop(seq, None)
            if flight is not None:
                removed += 1
                floor = max(floor, flight.first_tx)
                # Sent before the console had been silent for a timeout, or answered a timeout
                # or more after it was sent: it waited in the broker's queue for the console,
                # and the console is working through that queue.
                drained = (
                    drained or flight.last_sent < began + self.rto_s or now - flight.last_sent >= self.rto_s
                )
        if drained and self._draining_until < now + self.rto_s:
            # Each acknowledgement of a queued event says the rest of the queue is still on its
            # way: spare it for another timeout (a long outage's drain outlasts one by far).
            self._spare_the_queued(now + self.rto_s)
        if resumed:
            # Whatever is still queued at the broker now gets a round of the timeout to arrive.
            for seq, flight in self._flights.items():
                if flight.deadline < now + self.rto_s:
                    flight.deadline = now + self.rto_s
                    heapq.heappush(self._deadlines, (flight.deadline, seq))
        if floor > self._acked_floor:
            self._acked_floor = floor
            self._mark_overtaken(now)
        if len(self._deadlines) > 2 * len(self._flights) + 64:
            # Acknowledged events leave their entries behind; drop them before they pile up.
            self._deadlines = [(flight.deadline, seq) for seq, flight in self._flights.items()]
            heapq.heapify(self._deadlines)
        return removed

    def acked_range(self, first: int, last: int) -> int:
        """:meth:`acked` for a range, without walking a range far wider than the window."""
        if last - first < len(self._flights):
            return self.acked(range(first, last + 1))
        return self.acked([seq for seq in self._flights if first <= seq <= last])

    # -- what the link asks ---------------------------------------------------------------

    def due(self) -> list[int]:
        """Events to send again now, oldest first; while the console is silent, one probe at a time."""
        now = self._clock()
        probing = self._probing(now)
        if probing and now < self._probe_at:
            return []
        due: list[int] = []
        spared_until = self._draining_until if now < self._draining_until else 0.0
        while self._deadlines and self._deadlines[0][0] <= now:
            deadline, seq = heapq.heappop(self._deadlines)
            flight = self._flights.get(seq)
            if flight is None or flight.deadline != deadline:
                continue
            if spared_until:
                flight.deadline = spared_until  # still queued behind the drain: see _spare_the_queued
                heapq.heappush(self._deadlines, (spared_until, seq))
                continue
            due.append(seq)
        due.sort()
        if probing and due:
            # The one sent longest ago, so that over a long silence every event gets its turn.
            probe = min(due, key=lambda seq: (self._flights[seq].last_sent, seq))
            for seq in due:
                if seq != probe:
                    heapq.heappush(self._deadlines, (self._flights[seq].deadline, seq))
            self._probes += 1
            self._probe_at = now + self._backoff(self.rto_s, self._probes)
            return [probe]
        if due and self.silent(now):
            self._answered = False  # that was the answer's one free round; silence means silence again
        return due

    def silent(self, now: float | None = None) -> bool:
        """True while events are in flight and the console has acknowledged nothing for ``rto_s``."""
        now = self._clock() if now is None else now
        return bool(self._flights) and now - self._last_ack >= self.rto_s

    def next_deadline(self) -> float | None:
        """Monotonic time at which :meth:`due` may next have something (early is harmless)."""
        if not self._deadlines:
            return None
        if self._probing(self._clock()):
            return max(self._deadlines[0][0], self._probe_at)
        return self._deadlines[0][0]

    def oldest(self) -> tuple[int, float] | None:
        """The oldest event in flight and how long since it was last sent, for the log."""
        if not self._flights:
            return None
        seq = next(iter(self._flights))
        return seq, self._clock() - self._flights[seq].last_sent

    # -- internals ------------------------------------------------------------------------

    def _probing(self, now: float) -> bool:
        """Silent, and not just after answering a probe (then what it did not send is lost, not queued)."""
        return self.silent(now) and not self._answered

    def _backoff(self, base: float, sends: int) -> float:
        return min(base * 2 ** (sends - 1), self.max_s)

    def _spare_the_queued(self, until: float) -> None:
        """The console, back from a silence, acknowledged an event sent in its first timeout (not a
        probe): it is draining what the broker queued meanwhile.  Until one timeout after the
        latest such acknowledgement, no event in flight is timed out — the broker delivers a
        gate's queue in order, so while the console is seen working through it the rest, and
        what the gate sent since, is behind it, not lost — and those in flight when the
        silence ended are not condemned as overtaken either:
        several ``$share`` ingest workers acknowledge fresh events while one still works
        through that queue, so being overtaken is their order, not a loss.  bench/fleet.py
        counted 2,882 needless resends in one short drain, and 160,388 for 120,842 queued
        events in the drain after a 10-minute outage of 1,000 gates' console when the spare
        lasted one timeout from the silence's end (docs/fleet.md).  Those not acknowledged
        one timeout after the queue's last sign of life are resent.  Applied lazily by
        :meth:`due`: a drain acknowledges thousands of events, each extending the spare.
        """
        self._draining_until = until

    def _mark_overtaken(self, now: float) -> None:
        """Every event last sent before the acknowledged one's first send is presumed lost
        (see :meth:`_spare_the_queued` for the exception while the console drains)."""
        sends = self._sends
        while sends and sends[0][0] < self._acked_floor:
            tx, seq = sends.popleft()
            flight = self._flights.get(seq)
            if flight is None or flight.last_tx != tx or flight.overtaken:
                continue  # acknowledged, or sent again since (a later entry stands for it)
            flight.overtaken = True
            deadline = now + self._backoff(self.overtaken_s, flight.sends)  # :meth:`due` spares a drain's
            if deadline < flight.deadline:
                flight.deadline = deadline
                heapq.heappush(self._deadlines, (deadline, seq))
