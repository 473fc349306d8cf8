"""``gatepost demo`` end to end: history first, a compressed live day, the web console and guard screen.

The demo runs as a user runs it (a subprocess, its own broker, console and gates); the
test logs in to the web console with the credentials the demo printed, then counts in
the store: the simulated history, the live events after it, and no sequence number
missing or taken twice.
"""

from __future__ import annotations

import json
import re
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

from console.config import load_config

ROOT = Path(__file__).resolve().parents[1]

pytestmark = [pytest.mark.slow, pytest.mark.timeout(150)]


class Output:
    """The demo's stdout, collected on a thread so the test can wait for a line."""

    def __init__(self, process: subprocess.Popen[str]) -> None:
        self.lines: list[str] = []
        self._changed = threading.Condition()
        self._thread = threading.Thread(target=self._read, args=(process,), daemon=True)
        self._thread.start()

    def _read(self, process: subprocess.Popen[str]) -> None:
        assert process.stdout is not None
        for line in process.stdout:
            with self._changed:
                self.lines.append(line.rstrip("\n"))
                self._changed.notify_all()

    def wait_for(self, pattern: str, timeout: float = 60.0) -> re.Match[str]:
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                for line in self.lines:
                    if match := regex.search(line):
                        return match
                left = deadline - time.monotonic()
                if left <= 0 or not self._thread.is_alive():
                    raise AssertionError(f"no line matching {pattern!r} in:\n" + "\n".join(self.lines[-40:]))
                self._changed.wait(min(left, 0.5))

    def text(self) -> str:
        self._thread.join(timeout=10)
        return "\n".join(self.lines)


def log_in(base: str, user: str, password: str) -> httpx.Client:
    client = httpx.Client(base_url=base, timeout=10)
    page = client.get("/login")
    token = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
    assert token, page.text[:500]
    answer = client.post("/login", data={"name": user, "password": password, "csrf_token": token.group(1)})
    assert answer.status_code in (302, 303), answer.text[:500]
    return client


def test_demo_writes_history_then_runs_a_compressed_day_with_web_and_guard_screen(tmp_path: Path):
    state = tmp_path / "demo"
    command = [sys.executable, "-m", "gatepost", "demo", "--duration", "25", "--day-seconds", "8"]
    command += ["--history-days", "3", "--state", str(state), "--seed", "11", "--timezone", "Europe/Berlin"]
    process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    out = Output(process)
    try:
        history = out.wait_for(r"history\s+([\d,]+) simulated events")
        web = out.wait_for(r"web\s+(http://127\.0\.0\.1:\d+/)\s+user (\S+), password (\S+)")
        guard = out.wait_for(r"guard\s+(http://127\.0\.0\.1:\d+/)\s+\(north; guard PIN (\d{6})\)")
        out.wait_for(r"web\s+http://\S+ is up", timeout=30)
        out.wait_for(r"guard\s+http://\S+ is up", timeout=30)
        client = log_in(web.group(1), web.group(2), web.group(3))
        try:
            flow = client.get("/flow", params={"post": "longtan/north"})
        finally:
            client.close()
        assert flow.status_code == 200
        assert "longtan/north" in flow.text
        assert httpx.get(f"{guard.group(1)}healthz", timeout=5).status_code == 200
        out.wait_for(r"simulated day 1, 18:00")  # the evening peak comes round within the run
        assert process.wait(timeout=90) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    text = out.text()
    assert re.search(r"events from 7 gates, 0 missing", text), text[
        -2000:
    ]  # 3 pass gates, 2 doors, a camera, a lane

    written = int(history.group(1).replace(",", ""))
    db = sqlite3.connect(state / "console" / "events.db")
    try:
        simulated = db.execute(
            "SELECT COUNT(*) FROM events WHERE json_extract(data, '$.simulated') = 1"
        ).fetchone()[0]
        live_scans = db.execute(
            "SELECT COUNT(*) FROM events WHERE type = 'access.scan' AND json_extract(data, '$.simulated') IS NULL"
        ).fetchone()[0]
        per_gate = db.execute(
            "SELECT gate, COUNT(*), COUNT(DISTINCT seq), MIN(seq), MAX(seq),"
            " MAX(CASE WHEN json_extract(data, '$.simulated') = 1 THEN seq END),"
            " MIN(CASE WHEN json_extract(data, '$.simulated') IS NULL THEN seq END)"
            " FROM events GROUP BY gate"
        ).fetchall()
    finally:
        db.close()
    assert simulated == written
    assert live_scans > 0
    for gate, count, distinct, low, high, last_history, first_live in per_gate:
        assert count == distinct == high - low + 1 and low == 1, gate
        assert first_live == last_history + 1, gate  # the live gate carried on where its history ended
    stats = subprocess.run(
        [
            sys.executable,
            "-m",
            "gatepost",
            "console",
            "stats",
            "--db",
            str(state / "console" / "events.db"),
            "--json",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    assert json.loads(stats.stdout)["total_missing"] == 0
    # The console draws the flow in the zone the history was written in, not its own default.
    assert load_config(state / "console" / "console.toml").flow.timezone == "Europe/Berlin"
