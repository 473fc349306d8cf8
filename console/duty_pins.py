"""Personal duty PINs, hashed in the guard PIN's own format so a gate checks them with its own code.

The duty sheet (protocol/duty.py) carries each rostered person's PIN as
``scrypt$n$r$p$salt$hash$digits``, the format of ``edge/guard/pin.py``, and the gate checks
a PIN typed on its guard screen with that module's ``verify_pin``.  The console may not
import edge/, so the few lines that *make* such a hash are copied here rather than moved
into protocol/: moving them would change a module the gate-side work is editing at the
same time.  ``tests/console/roster/test_attendance_pins.py`` checks every hash made here
with the gate's own ``verify_pin``, so the two cannot drift apart unseen.

Only the hash is stored (table ``roster_pins``); the PIN itself is shown nowhere, not even
to the admin who set it.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
from typing import Final

N: Final = 2**14
"""scrypt cost: the gate's own default (edge/guard/pin.py), about 50 ms per check on a Pi."""
_R: Final = 8
_P: Final = 1
MIN_PIN_DIGITS: Final = 6
MAX_PIN_DIGITS: Final = 12


class DutyPinError(ValueError):
    """A PIN that cannot be a personal duty PIN; the message says why."""


def pin_problem(pin: str) -> str | None:
    """Why ``pin`` cannot be a duty PIN (the guard PIN's rule: 6-12 digits), or ``None``."""
    if not (pin.isascii() and pin.isdigit()):
        return "a PIN is digits only"
    if not MIN_PIN_DIGITS <= len(pin) <= MAX_PIN_DIGITS:
        return f"a PIN is {MIN_PIN_DIGITS} to {MAX_PIN_DIGITS} digits"
    return None


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def hash_duty_pin(pin: str, *, n: int = N) -> str:
    """``scrypt$n$r$p$salt$hash$digits`` for ``pin``, a fresh salt every time; :class:`DutyPinError` if unfit."""
    problem = pin_problem(pin)
    if problem is not None:
        raise DutyPinError(problem)
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(pin.encode(), salt=salt, n=n, r=_R, p=_P, dklen=32)
    return f"scrypt${n}${_R}${_P}${_b64(salt)}${_b64(digest)}${len(pin)}"
