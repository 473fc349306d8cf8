"""``tls.cert_expiring``: a gate's status carrying its certificate's expiry raises one alarm, 30 days ahead."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from console.alarms import AlarmBook
from console.store import EventStore


@pytest.fixture
def book(db_url: str | Path) -> Iterator[AlarmBook]:
    with EventStore(db_url) as store:
        yield AlarmBook(store.db)


def status(not_after: str | None) -> str:
    body = {"v": 1, "state": "online", "site": "s", "gate": "north", "boot": "0" * 32}
    if not_after is not None:
        body["cert_not_after"] = not_after
    return json.dumps(body)


def test_one_alarm_per_certificate_within_30_days(book: AlarmBook, unique_name: str):
    site = unique_name
    received = "2026-12-01T10:00:00.000000Z"
    assert book.observe_certificate(site, "north", received, status("2027-01-15T00:00:00Z")) == []
    assert book.observe_certificate(site, "north", received, status(None)) == []
    raised = book.observe_certificate(site, "north", received, status("2026-12-20T00:00:00Z"))
    assert [(a.kind, a.site, a.gate, a.detail["days_left"]) for a in raised] == [
        ("tls.cert_expiring", site, "north", 18)
    ]
    later = "2026-12-02T10:00:00.000000Z"
    again = book.observe_certificate(site, "north", later, status("2026-12-20T00:00:00Z"))
    assert again == [], "every status of the same certificate is the same alarm"
    assert book.observe_certificate(site, "north", later, "not json") == []
