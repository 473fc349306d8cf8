"""Dynamic codes for phone passes: a time-step code against screenshots.

A phone pass flagged ``dynamic`` is shown with an 8-digit code appended that changes
every :data:`STEP_S` seconds (TOTP, RFC 6238, with HMAC-SHA256 and RFC 4226's
truncation).  The code is keyed per pass: ``HMAC-SHA256(site_secret, context || serial
|| generation)``, which the console gives the holder's phone with the pass; gates hold
the site secret and derive the same key.  A gate accepts the current step and one on
each side (phone and gate clocks differ), and each (serial, step) only once.

What this stops: a screenshot or photocopy used later than about a minute after it was
taken, and the same code used twice at one gate.  What it does not stop is written
down in ``docs/passes.md``.
"""

from __future__ import annotations

import hashlib
import hmac
from collections import deque
from datetime import datetime

from protocol.passes.codec import DYNAMIC_CODE_DIGITS, KIND_DYNAMIC, KIND_STATIC, MARKER

STEP_S = 30
SKEW_STEPS = 1
_CONTEXT = b"gatepost/dynamic/v1\x00"


def pass_key(site_secret: bytes, serial: int, generation: int) -> bytes:
    """The per-pass key: re-issuing a pass (a new generation) changes it."""
    message = _CONTEXT + serial.to_bytes(8, "big") + generation.to_bytes(4, "big")
    return hmac.new(site_secret, message, hashlib.sha256).digest()


def time_step(when: datetime, step_s: int = STEP_S) -> int:
    return int(when.timestamp()) // step_s


def code_at(key: bytes, step: int) -> str:
    """The code for one time step (RFC 4226 dynamic truncation of HMAC-SHA256)."""
    digest = hmac.new(key, step.to_bytes(8, "big", signed=True), hashlib.sha256).digest()
    offset = digest[-1] & 0x0F
    value = int.from_bytes(digest[offset : offset + 4], "big") & 0x7FFF_FFFF
    return str(value % 10**DYNAMIC_CODE_DIGITS).zfill(DYNAMIC_CODE_DIGITS)


def current_code(key: bytes, when: datetime, step_s: int = STEP_S) -> str:
    """What the phone shows at ``when``."""
    return code_at(key, time_step(when, step_s))


def dynamic_text(static_text: str, key: bytes, when: datetime, step_s: int = STEP_S) -> str:
    """The phone's QR text at ``when``: the issued static text, re-marked and with the code appended."""
    head = MARKER + KIND_STATIC
    if not static_text.startswith(head):
        raise ValueError("not the static text of a format-1 pass")
    return MARKER + KIND_DYNAMIC + static_text[len(head) :] + current_code(key, when, step_s)


def matching_step(key: bytes, code: str, step: int, skew: int = SKEW_STEPS) -> int | None:
    """The step in ``step ± skew`` whose code is ``code``, comparing in constant time."""
    return matching_step_in(key, code, step - skew, step + skew)


def matching_step_in(key: bytes, code: str, first: int, last: int) -> int | None:
    """The latest step in ``[first, last]`` whose code is ``code``, comparing in constant time.

    A gate whose clock is only estimated searches a wider range (docs/clock.md); every
    candidate is computed, so the time taken says nothing about which one matched.
    """
    found = None
    for candidate in range(first, last + 1):
        if hmac.compare_digest(code_at(key, candidate), code):
            found = candidate
    return found


class ReplayGuard:
    """(serial, step) pairs already used at this gate, kept only while they could recur.

    ``margin`` more steps are kept than the trusted window needs, for a gate whose clock
    is an estimate and accepts steps that far behind its own (docs/clock.md).
    """

    def __init__(self, skew: int = SKEW_STEPS, margin: int = 0) -> None:
        self.skew = skew
        self.margin = margin
        self._seen: set[tuple[int, int]] = set()
        self._order: deque[tuple[int, int]] = deque()

    def __len__(self) -> int:
        return len(self._seen)

    def seen(self, serial: int, step: int) -> bool:
        return (serial, step) in self._seen

    def record(self, serial: int, step: int, current_step: int) -> None:
        self._seen.add((serial, step))
        self._order.append((serial, step))
        oldest_acceptable = current_step - 2 * self.skew - 2 - self.margin
        while self._order and (self._order[0][1] < oldest_acceptable or len(self._order) > 1_000_000):
            self._seen.discard(self._order.popleft())
