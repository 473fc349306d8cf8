"""``gatepost console …`` as an operator runs it: real processes, real signals, real files."""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from console.store import EventStore
from gatepost.cli import main
from protocol import Event, GateTopics, decode_console_status, encode
from protocol.topics import console_status_topic
from tests.waiting import wait_until as wait_for

ROOT = Path(__file__).resolve().parents[2]
WAIT_S = 10.0


def gatepost(*args: str, **kwargs: object) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen(
        [sys.executable, "-m", "gatepost", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
        **kwargs,  # type: ignore[arg-type]
    )


@pytest.fixture
def processes() -> Iterator[list[subprocess.Popen[str]]]:
    started: list[subprocess.Popen[str]] = []
    yield started
    for proc in started:
        if proc.poll() is None:
            proc.kill()
        proc.wait(WAIT_S)
        if proc.stdout:
            proc.stdout.close()


def read_lines(proc: subprocess.Popen[str], count: int, timeout: float = WAIT_S) -> list[str]:
    """``count`` lines of the process's output, or fewer if it stays silent until ``timeout``."""
    assert proc.stdout is not None
    lines: queue.Queue[str] = getattr(proc, "lines", None) or queue.Queue()
    if not hasattr(proc, "lines"):
        proc.lines = lines  # type: ignore[attr-defined]
        threading.Thread(target=lambda: [lines.put(line) for line in proc.stdout], daemon=True).start()  # type: ignore[union-attr]
    out: list[str] = []
    deadline = time.monotonic() + timeout
    while len(out) < count:
        try:
            out.append(lines.get(timeout=max(0.0, deadline - time.monotonic())))
        except queue.Empty:
            break
    return out


def fill(path: Path, make_events) -> None:
    with EventStore(path) as store:
        store.insert_events(make_events("s1", "north", [1, 2, 3, 7]))
        events = make_events("s1", "east", [1])
        hostile = Event.model_validate(
            {**events[0].model_dump(), "data": {"code": "\x1b[2J\x1b]0;pwned\x07", "granted": False}}
        )
        store.insert_events([hostile])
        store.record_rejection("gatepost/v1/s1/north/event", "not_json", "payload is not JSON")


def test_stats_prints_missing_sequence_numbers_as_a_table_and_as_json(tmp_path, make_events, capsys):
    db = tmp_path / "events.db"
    fill(db, make_events)
    assert main(["console", "stats", "--db", str(db)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].split() == [
        "SITE",
        "GATE",
        "EVENTS",
        "SEQS",
        "MISSING",
        "CONFLICTS",
        "GAPS",
        "HELD",
        "STATE",
        "LAST",
        "EVENT",
    ]
    assert out[1].split()[:6] == ["s1", "east", "1", "1-1", "0", "0"]
    assert out[2].split()[:6] == ["s1", "north", "4", "1-7", "3", "0"]
    assert out[-1] == "5 events from 2 gates, 3 missing; 1 rejected messages: not_json 1"

    assert main(["console", "stats", "--db", str(db), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["total_missing"] == 3
    assert report["rejections"] == {"not_json": 1}
    assert [g["gate"] for g in report["gates"]] == ["east", "north"]

    assert main(["console", "stats", "--db", str(tmp_path / "absent.db")]) == 1
    assert "no such event store" in capsys.readouterr().err


def test_tail_prints_readable_lines_without_terminal_escapes(tmp_path, make_events, capsys):
    db = tmp_path / "events.db"
    fill(db, make_events)
    assert main(["console", "tail", "--db", str(db), "--limit", "3"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 3
    assert lines[0] == "2026-11-29 08:00:03.000  s1/north #3 access.scan DENIED credential=pass code=000003"
    assert lines[1].startswith("2026-11-29 08:00:07.000  s1/north #7 access.scan DENIED")
    assert "\x1b" not in lines[2] and "\x07" not in lines[2]
    assert "code=\\x1b[2J\\x1b]0;pwned\\x07" in lines[2]


def test_tail_follow_prints_new_events_as_they_are_stored(tmp_path, make_events, processes):
    db = tmp_path / "console" / "events.db"
    tail = gatepost("console", "tail", "--db", str(db), "--follow", "--limit", "2")
    processes.append(tail)
    # started before the store exists, as the demo may do: it says so, and waits
    assert "waiting for" in read_lines(tail, 1)[0]
    with EventStore(db) as store:
        store.insert_events(make_events("s1", "north", range(1, 6)))
        first = read_lines(tail, 5)
        store.insert_events(make_events("s1", "north", [6, 7]))
        later = read_lines(tail, 2)
    assert [line.split()[3] for line in first + later] == ["#1", "#2", "#3", "#4", "#5", "#6", "#7"]


def test_check_config_reports_ok_or_each_bad_line(tmp_path, capsys):
    good = tmp_path / "good.toml"
    good.write_text('name = "main"\n[store]\npath = "events.db"\n')
    assert main(["console", "check-config", str(good)]) == 0
    assert "ok (console main, all sites" in capsys.readouterr().out
    bad = tmp_path / "bad.toml"
    bad.write_text('name = "main"\n[store]\npaht = "events.db"\n')
    assert main(["console", "check-config", str(bad)]) == 2
    assert capsys.readouterr().err.strip() == f"{bad}:3: store.paht: unknown key (not allowed here)"


def console_state(factory, creds) -> str | None:
    client = factory(creds, "watch")  # console.<name> itself is the running console's
    client.subscribe(console_status_topic("all"))
    message = client.get(WAIT_S)
    client.close()
    return decode_console_status(message.payload).state.value if message else None


def test_run_survives_sigkill_without_losing_or_doubling_events(
    tmp_path, broker, unique_name, mqtt_client_factory, make_events, processes
):
    site = unique_name
    console_creds = broker.add_console("console")
    secret = tmp_path / "console.secret"
    secret.write_text(console_creds.password)
    db = tmp_path / "store" / "events.db"
    config = tmp_path / "console.toml"
    config.write_text(
        f'[mqtt]\nhost = "{broker.host}"\nport = {broker.port}\nusername = "{console_creds.username}"\n'
        f'password_file = "console.secret"\n[store]\npath = "{db}"\n'
    )
    gate = mqtt_client_factory(broker.add_gate(site, "north"))
    topic = GateTopics(site, "north").event
    events = make_events(site, "north", range(1, 1501), boot=uuid.uuid4().hex)

    def stored() -> tuple[int, int]:
        if not db.exists():
            return 0, 0
        with EventStore(db, readonly=True) as store:
            gates = store.stats().gates
        return (gates[0].count, gates[0].missing) if gates else (0, 0)

    console = gatepost("console", "run", "--config", str(config))
    processes.append(console)
    assert wait_for(lambda: console_state(mqtt_client_factory, console_creds) == "online")
    for event in events[:1000]:
        gate.client.publish(topic, encode(event), qos=1)
    assert wait_for(lambda: stored()[0] > 0)
    console.send_signal(signal.SIGKILL)  # mid-stream: some committed, some not yet PUBACKed
    console.wait(WAIT_S)
    assert wait_for(lambda: console_state(mqtt_client_factory, console_creds) == "offline")  # its last will
    for event in events[1000:]:
        gate.client.publish(topic, encode(event), qos=1).wait_for_publish(WAIT_S)

    console = gatepost("console", "run", "--config", str(config))
    processes.append(console)
    assert wait_for(lambda: stored() == (1500, 0)), stored()
    console.send_signal(signal.SIGTERM)
    assert console.wait(WAIT_S) == 0
    assert console_state(mqtt_client_factory, console_creds) == "stopped"
