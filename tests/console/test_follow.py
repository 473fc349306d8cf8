"""Following the store reads every event once, including one that commits after a higher row_id."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from console import follow
from console.follow import EventFollower
from console.store import EventStore
from tests.console.web.test_hub import _insert_at
from tests.console.web.web_support import make_event


@pytest.fixture
def store(db_url: str | Path) -> Iterator[EventStore]:
    with EventStore(db_url) as instance:
        yield instance


def test_an_event_committed_after_a_higher_one_is_read_once_when_it_comes(store: EventStore) -> None:
    reader = EventFollower(store)
    _insert_at(store.db, 1, make_event("s1", "north", 1))
    _insert_at(store.db, 3, make_event("s1", "north", 3))  # row 2's worker has not committed yet
    events, more = reader.read(100)
    assert [e.row_id for e in events] == [1, 3] and not more
    assert reader.cursor == 3 and reader.position == 1  # a restart would look for 2 again
    _insert_at(store.db, 2, make_event("s1", "north", 2))
    assert [e.row_id for e in reader.read(100)[0]] == [2]
    assert reader.read(100)[0] == [] and reader.position == 3


def test_a_skipped_id_is_given_up_after_a_while_and_the_batch_says_when_there_is_more(
    store: EventStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(follow, "GAP_S", 0.0)
    for row_id in (1, 3, 4):
        _insert_at(store.db, row_id, make_event("s1", "north", row_id))
    reader = EventFollower(store)
    events, more = reader.read(2)
    assert [e.row_id for e in events] == [1, 3] and more
    events, more = reader.read(2)
    assert [e.row_id for e in events] == [4] and not more
    assert reader.position == 4  # row 2 was never committed: no longer looked for
