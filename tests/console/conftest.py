"""Shared builders for console tests: real events, as a gate would publish them."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest

from protocol import Event

START = datetime(2026, 11, 29, 8, 0, tzinfo=UTC)

MakeEvents = Callable[..., list[Event]]


@pytest.fixture
def make_events() -> MakeEvents:
    """``make_events(site, gate, seqs, boot=None)``: one access.scan event per seq, fresh ids."""

    def build(site: str, gate: str, seqs: range | list[int], *, boot: str | None = None) -> list[Event]:
        boot = boot or uuid.uuid4().hex
        return [
            Event(
                id=uuid.uuid4().hex,
                site=site,
                gate=gate,
                boot=boot,
                seq=seq,
                time=START + timedelta(seconds=seq),
                clock_trusted=True,
                type="access.scan",
                data={"credential": "pass", "code": f"{seq:06d}", "granted": seq % 2 == 0},
            )
            for seq in seqs
        ]

    return build
