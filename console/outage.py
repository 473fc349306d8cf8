"""A broker outage is one alarm, not one ``gate.offline`` per gate.

When the broker restarts, every gate's connection drops at once: each gate's last will
(``offline``, retained) is published as the broker goes or is found in its persistence
file when it comes back, and the console's own connection drops too.  Raising a
``gate.offline`` for each would bury an operator under a thousand alarms for one event
whose cause is not at any gate.

The console knows its own connection: the ingestor records it (``console_link``,
console/store.py).  So the watcher (console/web/hub.py) hands every new ``offline`` to
:class:`OutageRule` instead of raising at once:

* an ``offline`` is held for :data:`HOLD_S` — long enough to learn whether the console's
  own link dropped around it (wills published as the broker shuts down arrive just
  before the console loses it);
* if the link dropped (a ``lost`` state, or a new connection while the previous one was
  not stopped), one ``broker.outage`` alarm is raised for that drop, and every
  ``offline`` received from :data:`HOLD_S` before the drop until :data:`GRACE_S` after
  the reconnect waits until that grace has passed;
* a gate that says ``online`` (or ``degraded``) meanwhile raises nothing; one still
  offline when its wait ends raises its ``gate.offline`` as before — the gate really is
  down, broker or not.

A gate that dies with no broker outage is reported :data:`HOLD_S` later than before.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from console.store import LinkKind, LinkState

HOLD_S = 5.0
"""How long a new ``offline`` waits before it is a gate's own outage."""
GRACE_S = 60.0
"""After the console's link is back, how long gates have to say ``online`` again: paho's
back-off reaches 16-30 s, so a gate may retry 15 s after a short broker outage."""


@dataclass(slots=True)
class HeldOffline:
    site: str
    gate: str
    received_at: str
    outage: str
    previous: str | None
    release_at: float
    """Monotonic time at which, still offline, it raises ``gate.offline``."""
    tied: bool = False
    """Received around a drop of the console's link: waits for the grace after its reconnect."""


@dataclass(frozen=True, slots=True)
class BrokerDrop:
    """The console's own connection dropped: ``lost_at`` (console time text) and when it was back."""

    lost_at: str
    seen_at: float
    back_at: float | None = None


class OutageRule:
    """Holds new ``offline`` statuses; says which become ``gate.offline`` alarms and which drops
    become a ``broker.outage``."""

    def __init__(self, hold_s: float = HOLD_S, grace_s: float = GRACE_S) -> None:
        self.hold_s = hold_s
        self.grace_s = grace_s
        self._held: dict[tuple[str, str], HeldOffline] = {}
        self._link: LinkState | None = None
        self._drops: list[BrokerDrop] = []
        self.suppressed = 0
        """Gates that went offline in a broker outage and came back within the grace."""

    def observe_link(self, link: LinkState | None, now: float | None = None) -> BrokerDrop | None:
        """The ingestor's latest word about its connection; a new drop if this shows one."""
        now = time.monotonic() if now is None else now
        before, self._link = self._link, link
        drop: BrokerDrop | None = None
        if link is not None and before is not None and link != before:
            if link.state is LinkKind.LOST and (
                before.state is not LinkKind.LOST or before.since != link.since
            ):
                drop = BrokerDrop(link.since, now)
            elif (
                link.state is LinkKind.CONNECTED
                and before.state is LinkKind.CONNECTED
                and before.since != link.since
            ):
                drop = BrokerDrop(link.since, now, now)  # down and up again between two looks
            if link.state is LinkKind.CONNECTED and self._drops and self._drops[-1].back_at is None:
                last = self._drops[-1]
                self._drops[-1] = BrokerDrop(last.lost_at, last.seen_at, now)
                for held in self._held.values():
                    if held.tied:
                        held.release_at = max(held.release_at, now + self.grace_s)
        if drop is not None:
            self._drops.append(drop)
            self._drops = self._drops[-8:]
            for held in self._held.values():  # wills that came just before the drop was seen
                if now - held.release_at < self.hold_s + 1:
                    held.tied = True
                    held.release_at = max(held.release_at, self._release(now))
        return drop

    def _release(self, now: float) -> float:
        """When an ``offline`` tied to the latest drop may raise: grace after the link is back."""
        last = self._drops[-1]
        return (last.back_at if last.back_at is not None else now) + self.grace_s

    def offline(
        self,
        site: str,
        gate: str,
        received_at: str,
        outage: str,
        previous: str | None,
        now: float | None = None,
    ) -> None:
        now = time.monotonic() if now is None else now
        release = now + self.hold_s
        tied = bool(self._drops) and (
            self._drops[-1].back_at is None or now < self._drops[-1].back_at + self.grace_s
        )
        if tied:
            release = max(release, self._release(now))
        self._held[site, gate] = HeldOffline(site, gate, received_at, outage, previous, release, tied)

    def back(self, site: str, gate: str) -> None:
        """The gate said ``online``/``degraded`` or ``stopped``: nothing to raise for its held ``offline``."""
        if self._held.pop((site, gate), None) is not None and self._drops:
            self.suppressed += 1

    def due(self, now: float | None = None) -> list[HeldOffline]:
        """Held statuses whose wait is over (a drop still open keeps them waiting)."""
        now = time.monotonic() if now is None else now
        if self._drops and self._drops[-1].back_at is None:
            return []
        ready = [held for held in self._held.values() if now >= held.release_at]
        for held in ready:
            del self._held[held.site, held.gate]
        return ready

    @property
    def held(self) -> int:
        return len(self._held)


def drop_source(drop: BrokerDrop) -> str:
    return f"broker@{drop.lost_at}"
