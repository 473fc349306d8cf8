"""One error root for the whole project.

Following gpiozero, every error is also the builtin it resembles, so callers that only
know ``ValueError`` still catch a malformed message, while callers that care read the
enumerated ``reason`` and log or publish it.  Nothing in gatepost raises a bare
exception across a module boundary for bad input: it raises one of these.
"""

from __future__ import annotations

from enum import StrEnum


class GatepostError(Exception):
    """Root of every error gatepost raises on purpose."""


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


class ProtocolError(GatepostError, ValueError):
    """A message or topic that does not follow the contract.

    ``reason`` says which rule it broke and ``detail`` says where, in words an operator
    can act on.  The text never contains the raw payload, which may be hostile or huge.
    """

    def __init__(self, reason: RejectReason, detail: str) -> None:
        super().__init__(f"{reason.value}: {detail}")
        self.reason = reason
        self.detail = detail
