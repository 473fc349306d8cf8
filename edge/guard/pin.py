"""The guard PIN: stored as a scrypt hash in the gate's config, checked with a lockout.

The kiosk stands at the guard post, so whoever touches it is normally the guard; the PIN
stops a visitor leaning over the counter from letting people in or issuing passes, and
every action still names the guard.  scrypt makes a copied config useless for guessing a
short PIN quickly, and after ``attempts`` wrong PINs in a row guard actions pause for
``lockout_s`` seconds.  Make a hash with ``gatepost edge hash-pin``.
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
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum

_N, _R, _P = 2**14, 8, 1
_PREFIX = "scrypt"


class PinFormatError(ValueError):
    """``pin_hash`` in the config is not one this module wrote."""


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def hash_pin(pin: str, *, n: int = _N) -> str:
    """``scrypt$n$r$p$salt$hash`` for ``pin``; a fresh salt every time."""
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(pin.encode(), salt=salt, n=n, r=_R, p=_P, dklen=32)
    return f"{_PREFIX}${n}${_R}${_P}${_b64(salt)}${_b64(digest)}"


def parse_hash(stored: str) -> tuple[int, int, int, bytes, bytes]:
    parts = stored.split("$")
    if len(parts) != 6 or parts[0] != _PREFIX:
        raise PinFormatError("pin_hash must look like scrypt$n$r$p$salt$hash (gatepost edge hash-pin)")
    try:
        n, r, p = (int(x) for x in parts[1:4])
        salt, digest = _unb64(parts[4]), _unb64(parts[5])
    except ValueError as exc:
        raise PinFormatError(f"pin_hash is damaged: {exc}") from None
    if not (2 <= n <= 2**20 and n & (n - 1) == 0 and 1 <= r <= 32 and 1 <= p <= 16 and len(digest) == 32):
        raise PinFormatError("pin_hash parameters are out of range")
    return n, r, p, salt, digest


def verify_pin(pin: str, stored: str) -> bool:
    n, r, p, salt, digest = parse_hash(stored)
    candidate = hashlib.scrypt(pin.encode(), salt=salt, n=n, r=r, p=p, dklen=32, maxmem=2**27)
    return hmac.compare_digest(candidate, digest)


class PinOutcome(StrEnum):
    OK = "ok"
    WRONG = "pin_wrong"
    LOCKED = "pin_locked"


@dataclass(frozen=True, slots=True)
class PinCheck:
    outcome: PinOutcome
    failures: int = 0
    locked_for_s: float = 0.0


class PinGate:
    """Checks PINs and counts wrong ones; thread-safe.  A right PIN resets the count."""

    def __init__(
        self,
        stored: str,
        *,
        attempts: int = 5,
        lockout_s: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        parse_hash(stored)  # a bad hash is a startup error, not a PIN that never matches
        self._stored = stored
        self._attempts = attempts
        self._lockout_s = lockout_s
        self._clock = clock
        self._failures = 0
        self._locked_until = 0.0
        self._lock = threading.Lock()

    def check(self, pin: object) -> PinCheck:
        with self._lock:
            now = self._clock()
            if now < self._locked_until:
                return PinCheck(PinOutcome.LOCKED, self._failures, round(self._locked_until - now, 1))
            if isinstance(pin, str) and 0 < len(pin) <= 64 and verify_pin(pin, self._stored):
                self._failures = 0
                return PinCheck(PinOutcome.OK)
            self._failures += 1
            if self._failures >= self._attempts:
                self._locked_until = now + self._lockout_s
                self._failures = 0
                return PinCheck(PinOutcome.LOCKED, self._attempts, self._lockout_s)
            return PinCheck(PinOutcome.WRONG, self._failures)


def main(argv: list[str] | None = None) -> int:
    """Ask for a PIN twice and print the line to put under ``[guard_screen]``."""
    del argv
    pin = getpass.getpass("guard PIN (4-12 digits): ")
    if not (pin.isascii() and pin.isdigit() and 4 <= len(pin) <= 12):
        print("a PIN is 4 to 12 digits", file=sys.stderr)
        return 2
    if getpass.getpass("again: ") != pin:
        print("the two PINs differ", file=sys.stderr)
        return 2
    print(f'pin_hash = "{hash_pin(pin)}"')
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
