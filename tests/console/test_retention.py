"""Retention: old events and rejections go in bounded batches; hourly flow counts stay."""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime, timedelta

from console.retention import RetentionPolicy, RetentionTimer, prune
from console.store import EventStore, Rejection
from protocol import Event

NOW = datetime(2027, 6, 1, 12, tzinfo=UTC)


def scans(gate: str, times: list[datetime], *, granted: bool = True) -> list[Event]:
    boot = uuid.uuid4().hex
    return [
        Event(
            id=uuid.uuid4().hex,
            site="s",
            gate=gate,
            boot=boot,
            seq=seq,
            time=at,
            clock_trusted=True,
            type="access.scan",
            data={"credential": "pass", "granted": granted},
        )
        for seq, at in enumerate(times, start=1)
    ]


def test_prune_deletes_only_what_is_older_in_batches_and_keeps_flow(db_url):
    old = [NOW - timedelta(days=500, minutes=i) for i in range(250)]
    recent = [NOW - timedelta(days=10, minutes=i) for i in range(30)]
    policy = RetentionPolicy(retain_days=400, retain_rejections_days=30, batch=100, pause_s=0)
    with EventStore(db_url) as store:
        store.insert_events(scans("north", old + recent))
        store.commit(
            rejections=[
                Rejection("t", "schema", "old", NOW - timedelta(days=31)),
                Rejection("t", "schema", "new", NOW - timedelta(days=29)),
            ]
        )
        year_ago = NOW - timedelta(days=600)
        flow_before = sum(f.entries for f in store.flow("s", "north", year_ago, NOW))

        dry = prune(store, policy, now=NOW, dry_run=True)
        assert dry.deleted == {"events": 250, "rejections": 1} and dry.dry_run
        assert store.stats().total_events == 280  # a dry run deletes nothing

        result = prune(store, policy, now=NOW)
        assert result.deleted == {"events": 250, "rejections": 1}
        assert "deleted 250 events" in result.describe()
        remaining = store.search(limit=1000)
        assert len(remaining) == 30
        assert min(e.time for e in remaining) > result.cutoffs["events"]
        assert store.stats().total_rejections == 1
        # the hourly counts outlive the raw events they were made from
        assert sum(f.entries for f in store.flow("s", "north", year_ago, NOW)) == flow_before == 280
        assert prune(store, policy, now=NOW).deleted == {"events": 0, "rejections": 0}


def test_zero_days_keeps_for_ever(db_url):
    with EventStore(db_url) as store:
        store.insert_events(scans("north", [NOW - timedelta(days=5000)]))
        result = prune(store, RetentionPolicy(retain_days=0, retain_rejections_days=0), now=NOW)
        assert result.deleted == {} and "disabled" in result.describe()
        assert store.stats().total_events == 1


def test_the_timer_prunes_and_stops(tmp_path):
    with EventStore(tmp_path / "events.db") as store:
        store.insert_events(scans("north", [datetime.now(UTC) - timedelta(days=3)]))
        timer = RetentionTimer(store, RetentionPolicy(retain_days=1), first_s=0.01, interval_s=3600).start()
        deadline = time.monotonic() + 10
        while timer.runs == 0 and time.monotonic() < deadline:
            time.sleep(0.02)
        timer.stop()
        assert timer.runs == 1 and timer.last is not None
        assert timer.last.deleted["events"] == 1
        assert store.stats().total_events == 0


def test_prune_command_dry_run_then_real(tmp_path, capsys):
    from gatepost.cli import main

    db = tmp_path / "events.db"
    with EventStore(db) as store:
        store.insert_events(scans("north", [datetime.now(UTC) - timedelta(days=d) for d in (900, 800, 1)]))
    config = tmp_path / "console.toml"
    config.write_text(f'[store]\npath = "{db}"\nretain_days = 400\nprune_batch = 100\n')
    assert main(["console", "prune", "--config", str(config), "--dry-run"]) == 0
    assert "would delete 2 events" in capsys.readouterr().out
    assert main(["console", "prune", "--config", str(config)]) == 0
    assert "deleted 2 events" in capsys.readouterr().out
    with EventStore(db, readonly=True) as store:
        assert store.stats().total_events == 1
    bad = tmp_path / "bad.toml"
    bad.write_text("[store]\nretain_days = -1\n")
    assert main(["console", "prune", "--config", str(bad)]) == 2
    assert "retain_days" in capsys.readouterr().err
