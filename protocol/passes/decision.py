"""The gate's decision on a scanned code: one call, one value, an enumerated reason.

``decide(raw_code, now, state)`` never raises for any input text.  Checks run in this
order, and the first failure is the reason: the code must parse (``unknown`` when it
is not ours, ``malformed`` when it is ours but damaged); its key must be in the trust
bundle and valid now (``unknown_key``); the signature must verify (``bad_signature``;
nothing in the pass is believed before this); then site, revocation, validity window,
daily window, zone, dynamic code, replay, passback, and finally how old the revocation
list is.  Only a grant changes ``state`` (it remembers the dynamic step and the time,
for replay and passback).

An untrusted clock (``ClockReading.trusted`` false: a Raspberry Pi without RTC after a
power cut, or a clock seen going backwards) comes in two kinds (docs/clock.md has the
whole table).  An *estimate* (``error_s`` a number: the gate had a trusted reading in
this boot and counts monotonic time since) is used like a trusted time — every check is
made — except that a dynamic code may match any step within ``error_s`` of it.  A *lower
bound* (``error_s`` ``None``: no trusted reading since boot; a Pi boots at the last saved
time, never in the future) proves some failures (expired, key retired, revocation list
provably stale), which deny as usual; a check that fails only possibly (not yet valid,
key not yet valid, outside the daily window) is decided by ``GatePolicy.untrusted_clock``:
``deny``, or ``grant_and_flag`` (the default, so that residents are not locked out by a
power cut; the decision carries ``clock_untrusted`` and the console can review it).  A
dynamic code is never waived: under ``grant_and_flag`` it must be of a step from the
lower bound to ``untrusted_dynamic_window`` after it (``dynamic_unverified``), so a
screenshot older than the gate's newest stored event opens nothing.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta, tzinfo
from enum import StrEnum
from typing import Literal, Protocol
from zoneinfo import ZoneInfo

from protocol.passes.codec import decode_text
from protocol.passes.dynamic import STEP_S, ReplayGuard, matching_step_in, pass_key, time_step
from protocol.passes.errors import PassError, PassRejectReason
from protocol.passes.format import Pass
from protocol.passes.revocation import RevocationState
from protocol.passes.trust import TrustStore


class Reason(StrEnum):
    """Why a code was granted or denied: what the guard sees and the console counts."""

    GRANTED = "granted"
    UNKNOWN = "unknown"
    """Not a gatepost pass at all (another QR code, stray keyboard input)."""
    MALFORMED = "malformed"
    """Carries the gatepost marker but does not parse: damaged, truncated or tampered with."""
    BAD_SIGNATURE = "bad_signature"
    UNKNOWN_KEY = "unknown_key"
    """Signed by a key the trust bundle does not list, or lists as not valid now (retired)."""
    EXPIRED = "expired"
    NOT_YET_VALID = "not_yet_valid"
    OUTSIDE_TIME_WINDOW = "outside_time_window"
    WRONG_SITE = "wrong_site"
    WRONG_ZONE = "wrong_zone"
    REVOKED = "revoked"
    BAD_DYNAMIC_CODE = "bad_dynamic_code"
    """A dynamic pass without its code, or with a code of no step near now (an old screenshot)."""
    REPLAYED = "replayed"
    """A dynamic code already used at this gate (a fresh screenshot)."""
    PASSBACK = "passback"
    STALE_REVOCATION_LIST = "stale_revocation_list"
    PLATE_NEAR_MISS = "plate_near_miss"
    """A plate one character off a registered one (a misread, or a copied plate): the guard decides."""
    BLACKLISTED = "blacklisted"
    """On the site's blacklist (a ``deny:`` entry of the card list): refused, and the console alarms."""


class Flag(StrEnum):
    """Caveats on a decision, granted or not, for the console to review."""

    CLOCK_UNTRUSTED = "clock_untrusted"
    """The decision used an untrusted clock; at least one time check may have been waived."""
    STALE_REVOCATION_LIST = "stale_revocation_list"
    """Granted although the revocation list is older than the configured limit (or missing)."""
    DYNAMIC_UNVERIFIED = "dynamic_unverified"
    """The dynamic code is of a step after the gate's lower bound on the time, not near it:
    the gate knows it is no older than that bound, not that it is fresh (docs/clock.md)."""


class StalePolicy(StrEnum):
    DENY = "deny"
    GRANT_AND_FLAG = "grant_and_flag"


class UntrustedClockPolicy(StrEnum):
    DENY = "deny"
    GRANT_AND_FLAG = "grant_and_flag"


MAX_CLOCK_ERROR_S = 300.0
"""An estimate less sure than this is taken as a lower bound only (and the replay memory
keeps this much more, for the estimate's wider dynamic-code window)."""


class ClockLike(Protocol):
    """Anything with ``wall`` and ``trusted``, such as ``edge.clock.ClockReading``.

    It may also have ``error_s`` (see :class:`ClockReading`); without it an untrusted
    time is a lower bound.
    """

    @property
    def wall(self) -> datetime: ...

    @property
    def trusted(self) -> bool: ...


@dataclass(frozen=True, slots=True)
class ClockReading:
    """Wall time and whether to believe it (same shape as ``edge.clock.ClockReading``).

    ``error_s``, for an untrusted reading: how far the true time may be from ``wall``
    (an estimate from the gate's last trusted reading), or ``None`` when ``wall`` is only
    a lower bound.  Ignored when ``trusted``.
    """

    wall: datetime
    trusted: bool
    error_s: float | None = None


def clock_error(now: ClockLike) -> float | None:
    """0 for a trusted time, the bound of a usable estimate, ``None`` for a lower bound only."""
    if now.trusted:
        return 0.0
    error = getattr(now, "error_s", None)
    if error is None or not 0 <= error <= MAX_CLOCK_ERROR_S:
        return None
    return float(error)


@dataclass(frozen=True, slots=True)
class Decision:
    granted: bool
    reason: Reason
    pass_info: Pass | None = None
    """The pass, once its signature verified; never attacker-controlled data."""
    flags: frozenset[Flag] = frozenset()
    detail: str = ""
    """Why, in more words (the parser's reason for ``malformed``, which key for ``unknown_key``)."""


@dataclass(frozen=True, slots=True)
class GatePolicy:
    """What this gate admits, and how strict it is when it cannot be sure."""

    zone: int = 0
    """This gate's zone index; a pass opens it if its zone set contains it."""
    passback: timedelta = timedelta(0)
    """Refuse the same serial again within this time of a grant (0 turns it off)."""
    anti_passback: bool = False
    """Refuse a pass going the same way twice in a row at this gate (in twice without an out);
    only readers with a configured direction take part."""
    revocation_max_age: timedelta = timedelta(hours=24)
    stale_revocation: StalePolicy = StalePolicy.GRANT_AND_FLAG
    untrusted_clock: UntrustedClockPolicy = UntrustedClockPolicy.GRANT_AND_FLAG
    untrusted_dynamic_window: timedelta = timedelta(hours=1)
    """With only a lower bound on the time and ``grant_and_flag``: a dynamic code of a step
    up to this long after the bound is accepted (flagged); later ones are refused."""
    step_s: int = STEP_S
    skew_steps: int = 1


Direction = Literal["in", "out"]


@dataclass(slots=True)
class _Passback:
    """The last grant of each serial: when (for the time window) and which way (anti-passback)."""

    window: timedelta
    last: OrderedDict[int, datetime] = field(default_factory=OrderedDict)
    way: OrderedDict[int, Direction] = field(default_factory=OrderedDict)

    def recent(self, serial: int, now: datetime) -> bool:
        last = self.last.get(serial)
        return last is not None and timedelta(0) <= now - last < self.window

    def same_way(self, serial: int, direction: Direction | None) -> bool:
        return direction is not None and self.way.get(serial) == direction

    def record(self, serial: int, now: datetime, direction: Direction | None = None) -> None:
        if self.window > timedelta(0):
            self.last[serial] = now
            self.last.move_to_end(serial)
            while self.last:
                oldest = next(iter(self.last.values()))
                if now - oldest < self.window and len(self.last) <= 100_000:
                    break
                self.last.popitem(last=False)
        if direction is not None:
            self.way[serial] = direction
            self.way.move_to_end(serial)
            while len(self.way) > 100_000:  # a resident's direction is worth a day or two, not forever
                self.way.popitem(last=False)


GrantHook = Callable[[int, "int | None", datetime, "Direction | None"], None]
"""Told of every grant: (serial, dynamic step used or None, wall time, direction) — to persist it."""


class GateState:
    """Everything ``decide`` needs besides the code and the time, plus its memory of grants."""

    def __init__(
        self,
        *,
        trust: TrustStore,
        revocation: RevocationState,
        policy: GatePolicy | None = None,
        site_secret: bytes | None = None,
        on_grant: GrantHook | None = None,
    ) -> None:
        self.on_grant = on_grant
        self.trust = trust
        self.revocation = revocation
        self.policy = policy or GatePolicy()
        self.site_secret = site_secret
        margin = -(-int(MAX_CLOCK_ERROR_S) // self.policy.step_s) + 1
        self.replays = ReplayGuard(self.policy.skew_steps, margin)
        self._passback = _Passback(self.policy.passback)
        self._zone_cache: tuple[str, tzinfo] | None = None

    def remember(self, serial: int, step: int | None, when: datetime, direction: Direction | None) -> None:
        """Take back a grant made before a restart, so a screenshot or a passback cannot use the restart."""
        if step is not None:
            self.replays.record(serial, step, time_step(when, self.policy.step_s))
        self._passback.record(serial, when, direction)

    def timezone(self) -> tzinfo:
        name = self.trust.bundle.timezone if self.trust.bundle else "UTC"
        if self._zone_cache is None or self._zone_cache[0] != name:
            self._zone_cache = (name, ZoneInfo(name))
        return self._zone_cache[1]


def dynamic_steps(wall: datetime, error: float | None, lenient: bool, policy: GatePolicy) -> tuple[int, int]:
    """The first and last time step a dynamic code may be of, for a clock reading ``wall``.

    A trusted time: its step ± skew.  An estimate: every step within ``error`` of it, ±
    skew.  A lower bound: its step ± skew, or under ``grant_and_flag`` up to
    ``untrusted_dynamic_window`` later — never earlier, so an old screenshot stays old.
    """
    skew, step_s = policy.skew_steps, policy.step_s
    if error is not None:
        spread = timedelta(seconds=error)
        return time_step(wall - spread, step_s) - skew, time_step(wall + spread, step_s) + skew
    step = time_step(wall, step_s)
    if not lenient:
        return step - skew, step + skew
    return step - skew, time_step(wall + policy.untrusted_dynamic_window, step_s) + skew


def decide(raw_code: str, now: ClockLike, state: GateState, direction: Direction | None = None) -> Decision:
    """Grant or deny ``raw_code`` at ``now``; see the module docstring for the order and the clock.

    ``direction`` is the way the reader faces (``in``/``out``), when the gate knows it.
    """
    untrusted = not now.trusted
    flags: set[Flag] = {Flag.CLOCK_UNTRUSTED} if untrusted else set()
    error = clock_error(now)
    lenient = error is None and state.policy.untrusted_clock is UntrustedClockPolicy.GRANT_AND_FLAG
    wall = now.wall

    def deny(reason: Reason, p: Pass | None = None, detail: str = "") -> Decision:
        return Decision(False, reason, p, frozenset(flags), detail)

    try:
        scanned = decode_text(raw_code)
    except PassError as exc:
        reason = Reason.UNKNOWN if exc.reason is PassRejectReason.NOT_A_PASS else Reason.MALFORMED
        return deny(reason, detail=exc.reason.value)
    p = scanned.signed.pass_

    trusted = state.trust.key(p.kid)
    if trusted is None:
        return deny(Reason.UNKNOWN_KEY, detail=f"kid {p.kid} not in trust bundle")
    entry = trusted.entry
    if wall >= entry.not_after:
        return deny(Reason.UNKNOWN_KEY, detail=f"kid {p.kid} retired")
    if wall < entry.not_before and not lenient:
        return deny(Reason.UNKNOWN_KEY, detail=f"kid {p.kid} not valid yet")
    if not scanned.signed.verify(trusted.verify_key):
        return deny(Reason.BAD_SIGNATURE, detail=f"kid {p.kid}")

    bundle = state.trust.bundle
    if bundle is None or p.site_id != bundle.site_id:
        return deny(Reason.WRONG_SITE, p, f"site_id {p.site_id}")
    if state.revocation.is_revoked(p.serial, p.generation):
        return deny(Reason.REVOKED, p)
    if wall >= p.valid_until:
        return deny(Reason.EXPIRED, p)
    if wall < p.valid_from and not lenient:
        return deny(Reason.NOT_YET_VALID, p)
    if p.daily_window is not None and not lenient:
        local = wall.astimezone(state.timezone())
        if not p.daily_window.contains(local.hour * 60 + local.minute):
            return deny(Reason.OUTSIDE_TIME_WINDOW, p, f"{local:%H:%M} {bundle.timezone}")
    if state.policy.zone not in p.zones:
        return deny(Reason.WRONG_ZONE, p, f"gate zone {state.policy.zone}")

    step = used_step = None
    if p.dynamic:
        if scanned.dynamic_code is None:
            return deny(Reason.BAD_DYNAMIC_CODE, p, "dynamic pass shown without its code")
        if state.site_secret is None:
            return deny(Reason.BAD_DYNAMIC_CODE, p, "gate has no site secret")
        step = time_step(wall, state.policy.step_s)
        first, last = dynamic_steps(wall, error, lenient, state.policy)
        key = pass_key(state.site_secret, p.serial, p.generation)
        used_step = matching_step_in(key, scanned.dynamic_code, first, last)
        if used_step is None:
            return deny(Reason.BAD_DYNAMIC_CODE, p, "code matches no step the gate's clock allows")
        if state.replays.seen(p.serial, used_step):
            return deny(Reason.REPLAYED, p, f"step {used_step}")
        if error is None and untrusted and abs(used_step - step) > state.policy.skew_steps:
            flags.add(Flag.DYNAMIC_UNVERIFIED)

    if state.policy.passback > timedelta(0) and state._passback.recent(p.serial, wall):
        return deny(Reason.PASSBACK, p, f"again within {state.policy.passback.total_seconds():.0f} s")
    if state.policy.anti_passback and state._passback.same_way(p.serial, direction):
        return deny(Reason.PASSBACK, p, f"{direction} twice without the other way between")

    if state.revocation.is_stale(wall, state.policy.revocation_max_age):
        if state.policy.stale_revocation is StalePolicy.DENY:
            return deny(Reason.STALE_REVOCATION_LIST, p)
        flags.add(Flag.STALE_REVOCATION_LIST)

    if used_step is not None and step is not None:
        state.replays.record(p.serial, used_step, step)
    state._passback.record(p.serial, wall, direction)
    if state.on_grant is not None:
        state.on_grant(p.serial, used_step, wall, direction)
    return Decision(True, Reason.GRANTED, p, frozenset(flags))
