"""The guard PIN: stored as a scrypt hash in the gate's config, checked with a lockout per source.

The kiosk stands at the guard post, so whoever touches it is normally the guard; the PIN
stops a visitor leaning over the counter from letting people in or issuing passes, and
every action still names the guard.  A PIN has at least :data:`MIN_PIN_DIGITS` digits,
and the hash records how many (``scrypt$n$r$p$salt$hash$digits``), so a configuration
check can tell a short one; scrypt makes a copied config slow to guess from.

Wrong PINs are counted per *source*: the gate's own screen (the kiosk browser on
loopback, :data:`LOCAL_ADDRESSES`) has its own count, which nothing from the network
touches, so an attacker on the LAN cannot lock the guard out of the screen in front of
them.  Every other address has its own count too, and all of them share one more, so a
thousand addresses guess no faster than one.  After ``attempts`` wrong PINs in a row a
source waits ``lockout_s``, and every further wrong PIN doubles the wait, up to
``max_lockout_s``: docs/guard-screen.md works out how long a brute force then takes.
Make a hash with ``gatepost edge hash-pin``.
"""

from __future__ import annotations

import base64
import getpass
import hashlib
import hmac
import secrets
import sys
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum

_N, _R, _P = 2**14, 8, 1
_PREFIX = "scrypt"
MIN_PIN_DIGITS = 6
MAX_PIN_DIGITS = 12
LOCAL_ADDRESSES = frozenset({"127.0.0.1", "::1"})
"""Where the kiosk browser on the gate's own display connects from."""
MAX_SOURCES = 1024
"""Addresses remembered at once; beyond it the idle ones go (the shared remote count stays)."""


class PinFormatError(ValueError):
    """``pin_hash`` in the config is not one this module wrote, or records a PIN too short."""


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def pin_problem(pin: str) -> str | None:
    """Why ``pin`` cannot be a guard PIN, or ``None``."""
    if not (pin.isascii() and pin.isdigit()):
        return "a PIN is digits only"
    if not MIN_PIN_DIGITS <= len(pin) <= MAX_PIN_DIGITS:
        return f"a PIN is {MIN_PIN_DIGITS} to {MAX_PIN_DIGITS} digits"
    return None


def hash_pin(pin: str, *, n: int = _N) -> str:
    """``scrypt$n$r$p$salt$hash$digits`` for ``pin``; a fresh salt every time."""
    problem = pin_problem(pin)
    if problem is not None:
        raise PinFormatError(problem)
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(pin.encode(), salt=salt, n=n, r=_R, p=_P, dklen=32)
    return f"{_PREFIX}${n}${_R}${_P}${_b64(salt)}${_b64(digest)}${len(pin)}"


@dataclass(frozen=True, slots=True)
class StoredPin:
    n: int
    r: int
    p: int
    salt: bytes
    digest: bytes
    digits: int | None
    """The PIN's length; ``None`` in a hash made before lengths were recorded."""


def parse_hash(stored: str) -> StoredPin:
    parts = stored.split("$")
    if len(parts) not in (6, 7) or parts[0] != _PREFIX:
        raise PinFormatError("pin_hash must look like scrypt$n$r$p$salt$hash$digits (gatepost edge hash-pin)")
    try:
        n, r, p = (int(x) for x in parts[1:4])
        salt, digest = _unb64(parts[4]), _unb64(parts[5])
        digits = int(parts[6]) if len(parts) == 7 else None
    except ValueError as exc:
        raise PinFormatError(f"pin_hash is damaged: {exc}") from None
    if not (2 <= n <= 2**20 and n & (n - 1) == 0 and 1 <= r <= 32 and 1 <= p <= 16 and len(digest) == 32):
        raise PinFormatError("pin_hash parameters are out of range")
    if digits is not None and not MIN_PIN_DIGITS <= digits <= MAX_PIN_DIGITS:
        raise PinFormatError(
            f"pin_hash is of a {digits}-digit PIN; a PIN has at least {MIN_PIN_DIGITS}"
            " (make a new one: gatepost edge hash-pin)"
        )
    return StoredPin(n, r, p, salt, digest, digits)


def verify_pin(pin: str, stored: str) -> bool:
    """Whether ``pin`` is the PIN ``stored`` hashes (of the recorded length, when there is one)."""
    known = parse_hash(stored)
    candidate = hashlib.scrypt(
        pin.encode(), salt=known.salt, n=known.n, r=known.r, p=known.p, dklen=32, maxmem=2**27
    )
    same = hmac.compare_digest(candidate, known.digest)
    return same and (known.digits is None or len(pin) == known.digits)


class PinOutcome(StrEnum):
    OK = "ok"
    WRONG = "pin_wrong"
    LOCKED = "pin_locked"
    TOO_SHORT = "pin_too_short"
    """Fewer than :data:`MIN_PIN_DIGITS` digits: never a guard PIN, so not counted as a guess."""


class Source(StrEnum):
    LOCAL = "local"
    REMOTE = "remote"


@dataclass(frozen=True, slots=True)
class PinCheck:
    outcome: PinOutcome
    failures: int = 0
    """Wrong PINs in a row from this source (its own count), this one included."""
    locked_for_s: float = 0.0
    source: Source = Source.LOCAL
    address: str = ""
    lockout_started: bool = False
    """This wrong PIN began a pause: the one event the console raises an alarm for."""


@dataclass(slots=True)
class _Streak:
    failures: int = 0
    locked_until: float = 0.0


def lockout_after(failures: int, *, attempts: int, lockout_s: float, max_lockout_s: float) -> float:
    """The pause after the ``failures``-th wrong PIN in a row: none before ``attempts``, then doubling."""
    if failures < attempts:
        return 0.0
    return min(lockout_s * 2.0 ** min(failures - attempts, 64), max_lockout_s)


class PinGate:
    """Checks PINs and counts wrong ones per source; thread-safe, one check at a time.

    Checks run one at a time (scrypt holds the lock), so parallel requests cannot race
    past a count.  A right PIN resets its source's counts.
    """

    def __init__(
        self,
        stored: str | None,
        *,
        attempts: int = 5,
        lockout_s: float = 60.0,
        max_lockout_s: float = 86400.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        # A bad hash is a startup error, not a PIN that never matches.  ``None``: no PIN of its
        # own; the caller matches with :meth:`check_with` (the duty sheet's staff PINs, edge/duty.py).
        self.stored = parse_hash(stored) if stored is not None else None
        self._hash = stored
        self._attempts = attempts
        self._lockout_s = lockout_s
        self._max_lockout_s = max(lockout_s, max_lockout_s)
        self._clock = clock
        self._local = _Streak()
        self._remote = _Streak()
        self._addresses: OrderedDict[str, _Streak] = OrderedDict()
        self._lock = threading.Lock()

    def _streaks(self, address: str) -> tuple[Source, list[_Streak]]:
        if address in LOCAL_ADDRESSES:
            return Source.LOCAL, [self._local]
        streak = self._addresses.get(address)
        if streak is None:
            self._make_room()
            streak = self._addresses[address] = _Streak()
        self._addresses.move_to_end(address)
        return Source.REMOTE, [streak, self._remote]

    def _make_room(self) -> None:
        """Forget the least recent idle addresses, then the least recent at all, to stay bounded."""
        now = self._clock()
        for address in list(self._addresses):
            if len(self._addresses) < MAX_SOURCES:
                return
            if self._addresses[address].locked_until <= now:
                del self._addresses[address]
        while len(self._addresses) >= MAX_SOURCES:
            self._addresses.popitem(last=False)

    def check(self, pin: object, address: str = "127.0.0.1") -> PinCheck:
        """Check ``pin`` sent from ``address`` (the request's peer address)."""
        stored = self._hash
        if stored is None:
            raise ValueError("this PinGate has no PIN of its own: use check_with")
        return self.check_with(pin, address, lambda candidate: verify_pin(candidate, stored))

    def check_with(self, pin: object, address: str, matches: Callable[[str], bool]) -> PinCheck:
        """Check ``pin`` from ``address`` with ``matches`` (called under the lock, with a well-formed PIN).

        The same per-source counts and pauses as :meth:`check`, for PINs that are not one
        stored hash: a staff member's PIN matched against every PIN on the duty sheet.
        """
        with self._lock:
            source, streaks = self._streaks(address)
            own = streaks[0]
            now = self._clock()
            wait = max(streak.locked_until for streak in streaks) - now
            if wait > 0:
                return PinCheck(PinOutcome.LOCKED, own.failures, round(wait, 1), source, address)
            if isinstance(pin, str) and pin.isascii() and pin.isdigit() and len(pin) < MIN_PIN_DIGITS:
                return PinCheck(PinOutcome.TOO_SHORT, own.failures, 0.0, source, address)
            if isinstance(pin, str) and 0 < len(pin) <= 64 and matches(pin):
                for streak in streaks:
                    streak.failures = 0
                return PinCheck(PinOutcome.OK, 0, 0.0, source, address)
            started = False
            for streak in streaks:
                streak.failures += 1
                pause = lockout_after(
                    streak.failures,
                    attempts=self._attempts,
                    lockout_s=self._lockout_s,
                    max_lockout_s=self._max_lockout_s,
                )
                if pause > 0:
                    streak.locked_until = now + pause
                    started = True
            wait = max(streak.locked_until for streak in streaks) - now
            if wait > 0:
                return PinCheck(PinOutcome.LOCKED, own.failures, round(wait, 1), source, address, started)
            return PinCheck(PinOutcome.WRONG, own.failures, 0.0, source, address)


def main(argv: list[str] | None = None) -> int:
    """Ask for a PIN twice and print the line to put under ``[guard_screen]``."""
    del argv
    pin = getpass.getpass(f"guard PIN ({MIN_PIN_DIGITS}-{MAX_PIN_DIGITS} digits): ")
    problem = pin_problem(pin)
    if problem is not None:
        print(problem, file=sys.stderr)
        return 2
    if getpass.getpass("again: ") != pin:
        print("the two PINs differ", file=sys.stderr)
        return 2
    print(f'pin_hash = "{hash_pin(pin)}"')
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
