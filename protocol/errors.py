"""One error root for the whole project.

Following gpiozero, every error is also the builtin it resembles, so callers that only
know ``ValueError`` still catch a malformed message, while callers that care read the
enumerated ``reason`` of a :class:`Rejection` and log or publish it.  Nothing in
gatepost raises a bare exception across a module boundary for bad input: it raises one
of these.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Generic, TypeVar

_R = TypeVar("_R", bound=StrEnum)


class GatepostError(Exception):
    """Root of every error gatepost raises on purpose."""


class Rejection(GatepostError, Generic[_R]):
    """Input refused for an enumerated ``reason``, with a ``detail`` an operator can act on.

    ``reason`` is the stable string that logs, events and command responses carry, so
    code branches on it; ``detail`` is for people.  Each subclass names its own reason
    enum and the builtin it also is (``ValueError`` for bad input, ``RuntimeError`` for
    bad state), and adds the fields that say where the problem is.
    """

    def __init__(self, reason: _R, detail: str) -> None:
        self.reason = reason
        self.detail = detail
        super().__init__(self._describe())

    def _describe(self) -> str:
        """The message, ``reason: detail``; a subclass that knows where puts it in front."""
        return f"{self.reason.value}: {self.detail}"


class RejectReason(StrEnum):
    """Why a message from the wire was refused.  Stable strings: they appear in logs and events."""

    TOO_LARGE = "too_large"
    NOT_UTF8 = "not_utf8"
    NOT_JSON = "not_json"
    NOT_OBJECT = "not_object"
    BAD_VERSION = "bad_version"
    SCHEMA = "schema"
    BAD_TOPIC = "bad_topic"
    TOPIC_MISMATCH = "topic_mismatch"


class ProtocolError(Rejection[RejectReason], ValueError):
    """A message or topic that does not follow the contract.

    ``reason`` says which rule it broke and ``detail`` says where, in words an operator
    can act on.  The text never contains the raw payload, which may be hostile or huge.
    """
