"""Pydantic building blocks shared by the signed documents (trust bundle, revocation list).

Strict like the rest of the protocol: unknown keys are an error and nothing is coerced,
because a gate must not act on a document it only half understood.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict

from protocol.topics import validate_name


def _aware(value: datetime) -> datetime:
    if value.tzinfo is None:
        raise ValueError("time must carry a UTC offset")
    return value.astimezone(UTC)


def _name(value: str) -> str:
    validate_name(value)
    return value


MAX_VERSION = (1 << 63) - 1
"""Document versions fit a signed 64-bit integer, so the console can store them in SQLite."""

UtcTime = Annotated[datetime, AfterValidator(_aware)]
SiteName = Annotated[str, AfterValidator(_name)]


class StrictModel(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)
