"""The gate's decision: local, immediate, and one place for every kind of credential.

A signed pass (digits starting with the gatepost marker) is judged by its signature,
the site's trust bundle, the revocation list, its validity and time window, zones,
dynamic code and passback (``protocol.passes.decide``); any other credential — a card
from a Wiegand or EM4100 reader, a legacy pass code — by the allow-list.  Either way
the answer is a value with an enumerated reason, because the reason is what the guard
sees and what the console counts; it is never an exception.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from protocol.passes import Flag, GateState, Pass, Reason
from protocol.passes import decide as decide_pass
from protocol.passes.codec import MARKER
from protocol.passes.decision import ClockLike


@dataclass(frozen=True, slots=True)
class Decision:
    granted: bool
    reason: Reason
    flags: frozenset[Flag] = frozenset()
    holder: Pass | None = None
    detail: str = ""

    def event_fields(self) -> dict[str, Any]:
        """What the access event says about the holder beyond granted/reason."""
        fields: dict[str, Any] = {}
        if self.flags:
            fields["flags"] = sorted(flag.value for flag in self.flags)
        if self.holder is not None:
            fields.update(
                serial=self.holder.serial,
                generation=self.holder.generation,
                holder=self.holder.holder,
                unit=self.holder.unit,
                role=self.holder.role.name.lower(),
                photo=self.holder.photo_digest.hex() if self.holder.photo_digest else None,
            )
        if self.detail and not self.granted:
            fields["detail"] = self.detail
        return fields


GRANT = Decision(True, Reason.GRANTED)
DENY_UNKNOWN = Decision(False, Reason.UNKNOWN)


class AllowList:
    """Credentials allowed in, held in a frozenset so a lookup costs the same for ten or a million."""

    def __init__(self, codes: frozenset[str]) -> None:
        self._codes = codes

    def __len__(self) -> int:
        return len(self._codes)

    def decide(self, code: str) -> Decision:
        return GRANT if code in self._codes else DENY_UNKNOWN


class GateDecider:
    """Signed passes by signature, everything else by the allow-list."""

    def __init__(self, allow: AllowList, passes: GateState | None = None) -> None:
        self.allow = allow
        self.passes = passes

    def __len__(self) -> int:
        return len(self.allow)

    def decide(self, credential: str, now: ClockLike) -> Decision:
        if self.passes is not None and credential.startswith(MARKER):
            result = decide_pass(credential, now, self.passes)
            return Decision(result.granted, result.reason, result.flags, result.pass_info, result.detail)
        return self.allow.decide(credential)
