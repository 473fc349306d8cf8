"""The demo's rostered day: people and today's roster in the console, a patrol route over the OSDP door's
readers, and its late station raising ``patrol.late`` through the running console's patrol watcher."""

from __future__ import annotations

import re
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from tests.test_demo_day import ROOT, Output, log_in
from tests.waiting import wait_until

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]


def _rows(db: Path, sql: str) -> list[tuple]:
    connection = sqlite3.connect(db)
    try:
        return connection.execute(sql).fetchall()
    except sqlite3.OperationalError:  # the table is not made yet
        return []
    finally:
        connection.close()


def test_the_demo_rosters_a_day_and_raises_its_late_patrol_station(tmp_path: Path) -> None:
    state = tmp_path / "demo"
    command = [sys.executable, "-m", "gatepost", "demo", "--duration", "45", "--day-seconds", "8"]
    command += ["--history-days", "0", "--state", str(state), "--seed", "3"]
    process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    out = Output(process)
    db = state / "console" / "events.db"
    try:
        patrol = out.wait_for(r"patrol\s+(\d+) shifts rostered today; route 'demo round' at (\S+), (\S+),")
        assert int(patrol.group(1)) == 4
        assert patrol.group(2) == "building-7/osdp-in" and patrol.group(3) == "building-7/osdp-out"
        web = out.wait_for(r"web\s+(http://127\.0\.0\.1:\d+/)\s+user (\S+), password (\S+)")
        out.wait_for(r"web\s+http://\S+ is up", timeout=60)
        assert wait_until(
            lambda: _rows(db, "SELECT gate, detail FROM alarms WHERE kind = 'patrol.late'"), timeout=60
        ), out.text()[-3000:]
        (late,) = _rows(db, "SELECT gate, detail FROM alarms WHERE kind = 'patrol.late'")
        assert late[0] == "building-7" and '"station": 2' in late[1]
        client = log_in(web.group(1), web.group(2), web.group(3))
        try:
            rounds = client.get("/patrols/rounds")
            alarms = client.get("/alarms")
        finally:
            client.close()
        assert re.search(r'id="round-\d+-\d{8}T\d{4}"', rounds.text)
        assert "Patrol station late" in alarms.text or "巡逻点位迟到" in alarms.text
        assert process.wait(timeout=120) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    shifts = _rows(db, "SELECT person, post FROM roster_shifts")
    assert len(shifts) == 4 and {post for _, post in shifts} == {"longtan/north", "longtan/east"}
    # the late alarm is one, however many passes the watcher made
    assert len(_rows(db, "SELECT row_id FROM alarms WHERE kind = 'patrol.late'")) == 1
    if (ROOT / "edge" / "duty.py").exists():  # the gate side of issue 18 records the patrol card's check-ins
        readers = [
            row[0]
            for row in _rows(
                db, "SELECT json_extract(data, '$.reader') FROM events WHERE type = 'patrol.checkin'"
            )
        ]
        assert readers[:2] == ["osdp-in", "osdp-out"], readers
