"""The gate's decision: local, immediate, and the same for every kind of reader.

For now it is an allow-list of pass codes from the configuration; the signed-pass work
replaces the allow-list behind the same ``decide`` call.  A decision is a value with an
enumerated reason, because the reason is what the guard sees and what the console
counts; it is never an exception.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Reason(StrEnum):
    GRANTED = "granted"
    UNKNOWN = "unknown"


@dataclass(frozen=True, slots=True)
class Decision:
    granted: bool
    reason: Reason


GRANT = Decision(True, Reason.GRANTED)
DENY_UNKNOWN = Decision(False, Reason.UNKNOWN)


class AllowList:
    """Codes allowed in, held in a frozenset so a lookup costs the same for ten or a million."""

    def __init__(self, codes: frozenset[str]) -> None:
        self._codes = codes

    def __len__(self) -> int:
        return len(self._codes)

    def decide(self, code: str) -> Decision:
        return GRANT if code in self._codes else DENY_UNKNOWN
