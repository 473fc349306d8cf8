"""Sends each gate its duty sheet: who is rostered at that post from now to a day and a half ahead.

A :class:`protocol.duty.DutySheet` is retained on the gate's own ``duty`` topic (the broker
lets only that gate read it, and only the console write it), so a gate that boots or
reconnects has it from the broker without asking, as it has its card list
(console/card_sync.py, whose pattern this follows).  It carries the shifts at the post
overlapping ``[now, now + [roster] sheet_hours)`` from the stored roster, and the PIN
hashes of the people on those shifts (table ``roster_pins``, console/duty_pins.py), so
staff can check in on the guard screen without a card and nobody else's PIN reaches the
gate.

The publisher rebuilds every post's sheet every ``poll_s`` (a few queries) and publishes
one whose content changed — a roster edit, a PIN set, a shift that ended — at once; an
unchanged one is sent again every ``[roster] sheet_every_minutes`` so its ``valid_until``
keeps moving ahead.  A post that no longer has anyone gets an empty sheet rather than a
stale one.  Posts are ``site/gate`` (console/roster/model.py); with ``site`` set in the
console's configuration only that site's gates get sheets.
"""

from __future__ import annotations

import hashlib
import logging
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Final
from zoneinfo import ZoneInfo

import paho.mqtt.client as paho

from console.db import Database
from console.roster.attendance import roster_spans
from console.roster.store import RosterStore
from protocol.duty import MAX_SHEET_PINS, MAX_SHEET_SHIFTS, DutySheet, SheetPin, SheetShift, encode_sheet
from protocol.identity import ConsoleConnection
from protocol.mqtt import QOS, BrokerEndpoint, connect_async, make_client
from protocol.topics import NAME_PATTERN, GateTopics

log = logging.getLogger(__name__)
_NAME = re.compile(NAME_PATTERN)

PUBLISH_TIMEOUT_S: Final = 30.0


def sheets(
    roster: RosterStore, now: datetime, zone: ZoneInfo, *, hours: int = 36, site: str = "+"
) -> dict[str, DutySheet]:
    """``post -> DutySheet`` for every post known to the roster (people's posts and stored shifts)."""
    hour = now.astimezone(UTC).replace(minute=0, second=0, microsecond=0)
    until = hour + timedelta(hours=hours)
    spans = roster_spans(roster, now, until, zone)
    people = {p.id: p for p in roster.people(active_only=False)}
    pins = roster.pins()
    posts = {s.post for s in spans} | {post for p in roster.people() for post in p.posts}
    out: dict[str, DutySheet] = {}
    for post in sorted(posts):
        post_site, _, gate = post.partition("/")
        if site not in ("+", post_site) or not _NAME.match(post_site) or not _NAME.match(gate):
            continue
        mine = [s for s in spans if s.post == post][:MAX_SHEET_SHIFTS]
        shifts = []
        for span in mine:
            person = people.get(span.person)
            shifts.append(
                SheetShift(
                    person=span.person,
                    name=(person.name if person else "")[:200],
                    team=(person.team.value if person else "")[:20],
                    start=span.start,
                    end=span.end,
                    trained=bool(person and person.trained),
                )
            )
        named = sorted({s.person for s in mine if s.person in pins})[:MAX_SHEET_PINS]
        out[post] = DutySheet(
            site=post_site,
            gate=gate,
            issued_at=now.astimezone(UTC),
            valid_until=until,
            shifts=shifts,
            pins=[
                SheetPin(person=p, name=(people[p].name if p in people else "")[:200], pin_hash=pins[p])
                for p in named
            ],
        )
    return out


def fingerprint(sheet: DutySheet) -> str:
    """What a sheet says, without when it was issued: a change of it is worth sending at once."""
    body = sheet.model_dump_json(exclude={"issued_at", "valid_until"})
    return hashlib.sha256(body.encode()).hexdigest()


@dataclass(slots=True)
class SheetCounters:
    published: int = 0
    failed: int = 0


class DutySheetPublisher:
    """Keeps every post's duty sheet published, retained; start it beside the card publisher."""

    def __init__(
        self,
        endpoint: BrokerEndpoint,
        db: Database,
        zone: ZoneInfo,
        *,
        site: str = "+",
        hours: int = 36,
        every_s: float = 3600.0,
        poll_s: float = 15.0,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self.endpoint = endpoint
        self.roster = RosterStore(db)
        self.zone = zone
        self.site = site
        self.hours = hours
        self.every_s = every_s
        self.poll_s = poll_s
        self.counters = SheetCounters()
        self._clock = clock or (lambda: datetime.now(UTC))
        self._sent: dict[str, tuple[str, float]] = {}
        self._client = make_client(endpoint.for_connection(ConsoleConnection.DUTY))
        self._client.on_connect = self._on_connect
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="duty-sheets", daemon=True)

    def start(self) -> DutySheetPublisher:
        connect_async(self._client, self.endpoint)
        self._client.loop_start()
        self._thread.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread.is_alive():
            self._thread.join(timeout)
        self._client.disconnect()
        self._client.loop_stop()

    def poke(self, *_args: object) -> None:
        """Rebuild now (a roster edit in this process); other processes' edits are seen within ``poll_s``."""
        self._wake.set()

    def _on_connect(self, _c: paho.Client, _u: Any, _f: Any, reason: Any, _p: Any) -> None:
        if reason.is_failure:
            log.error("broker refused the duty sheet publisher: %s", reason)
            return
        self._sent.clear()  # a new session: send every sheet again (the broker may have lost its retained ones)
        self._wake.set()

    def _loop(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(self.poll_s)
            self._wake.clear()
            if not self._client.is_connected():
                continue
            try:
                self.publish_due()
            except Exception:  # a database hiccup must not end the thread; say so and go on
                log.exception("duty sheet round failed")

    def publish_due(self) -> int:
        """Publish the sheets that changed or are due again; returns how many were sent."""
        now = self._clock()
        built = sheets(self.roster, now, self.zone, hours=self.hours, site=self.site)
        sent = 0
        mono = time.monotonic()
        for post, sheet in built.items():
            mark = fingerprint(sheet)
            last = self._sent.get(post)
            if last is not None and last[0] == mark and mono - last[1] < self.every_s:
                continue
            info = self._client.publish(
                GateTopics(sheet.site, sheet.gate).duty, encode_sheet(sheet), QOS, retain=True
            )
            try:
                info.wait_for_publish(PUBLISH_TIMEOUT_S)
            except (RuntimeError, ValueError) as exc:
                self.counters.failed += 1
                log.warning("duty sheet for %s not confirmed by the broker: %s", post, exc)
                continue
            self._sent[post] = (mark, mono)
            self.counters.published += 1
            sent += 1
            log.info(
                "duty sheet for %s published (%d shifts, %d PINs)", post, len(sheet.shifts), len(sheet.pins)
            )
        return sent


def start_duty_sheets(config: Any, db: Database, endpoint: BrokerEndpoint) -> DutySheetPublisher:
    """The publisher for ``console run`` on one broker, started."""
    return DutySheetPublisher(
        endpoint,
        db,
        ZoneInfo(config.flow.timezone),
        site=config.site,
        hours=config.roster.sheet_hours,
        every_s=config.roster.sheet_every_minutes * 60,
    ).start()
