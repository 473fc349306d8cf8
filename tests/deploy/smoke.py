"""A gate, mosquitto and the console, run by the *installed* gatepost: the smoke scenario of the arm64 test.

Run inside the target root as ``/opt/gatepost/bin/python smoke.py N``, with the network off
(loopback only).  A scanner on a pseudo-terminal types N codes, half of them allowed; the
gate decides each one, takes it into its outbox and sends it through mosquitto to the
console, which stores it.  It prints one JSON line: what was sent, decided and stored,
and how long it all took.  Only the installed packages and the standard library are used:
no simulator, no checkout.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
import tty
from pathlib import Path

from broker.launcher import Broker

GATEPOST = [sys.executable, "-m", "gatepost"]


def wait_for(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.5)
    raise SystemExit(f"timed out waiting for {what}")


def count(db: Path, sql: str) -> int:
    try:
        with sqlite3.connect(db) as connection:
            return int(connection.execute(sql).fetchone()[0])
    except sqlite3.Error:
        return 0


def main(n: int) -> None:
    started = time.monotonic()
    work = Path(tempfile.mkdtemp(prefix="smoke-"))
    broker = Broker(work / "broker")
    broker.start(timeout=60)
    gate_creds = broker.add_gate("longtan", "north")
    console_creds = broker.add_console()
    (work / "gate.secret").write_text(gate_creds.password)
    (work / "console.secret").write_text(console_creds.password)
    master, slave = os.openpty()
    tty.setraw(slave)
    allowed = [f"10472900{i:04d}" for i in range(n // 2)]
    unknown = [f"99990000{i:04d}" for i in range(n - n // 2)]
    (work / "gate.toml").write_text(
        f"""site = "longtan"
gate = "north"
[mqtt]
host = "{broker.host}"
port = {broker.port}
username = "{gate_creds.username}"
password_file = "gate.secret"
[[scanners]]
url = "{os.ttyname(slave)}"
baudrate = 115200
[outbox]
path = "outbox.db"
[access]
allow = {json.dumps(allowed)}
repeat_s = 0
[clock]
trust = "trusted"
"""
    )
    (work / "console.toml").write_text(
        f"""name = "console"
site = "longtan"
[mqtt]
host = "{broker.host}"
port = {broker.port}
username = "{console_creds.username}"
password_file = "console.secret"
[store]
path = "events.db"
[web]
enabled = false
"""
    )
    logs = {name: open(work / f"{name}.log", "wb") for name in ("console", "gate")}  # noqa: SIM115
    console = subprocess.Popen(
        [*GATEPOST, "console", "run", "--config", str(work / "console.toml")],
        stdout=logs["console"],
        stderr=subprocess.STDOUT,
    )
    gate = subprocess.Popen(
        [*GATEPOST, "edge", "run", "--config", str(work / "gate.toml")],
        stdout=logs["gate"],
        stderr=subprocess.STDOUT,
    )
    try:
        events = work / "events.db"
        outbox = work / "outbox.db"
        wait_for(lambda: count(outbox, "SELECT count(*) FROM meta") > 0, 300, "the gate's outbox")
        wait_for(
            lambda: count(events, "SELECT count(*) FROM events WHERE type = 'scanner.connected'") > 0,
            300,
            "the gate's reader to connect and reach the console",
        )
        ready = time.monotonic() - started
        for code in [*allowed, *unknown]:
            os.write(master, code.encode() + b"\r\n")
            time.sleep(0.05)
        scans = "SELECT count(*) FROM events WHERE type = 'access.scan'"
        wait_for(lambda: count(events, scans) >= n, 300, f"{n} scans at the console")
        wait_for(
            lambda: count(outbox, "SELECT count(*) FROM outbox WHERE type = 'access.scan'") == 0,
            120,
            "the gate's outbox to empty (every scan acknowledged)",
        )
        with sqlite3.connect(events) as db:
            rows = db.execute("SELECT data FROM events WHERE type = 'access.scan'").fetchall()
        decided = [json.loads(row[0]) for row in rows]
        result = {
            "sent": n,
            "stored": len(decided),
            "distinct": len({d["code"] for d in decided}),
            "granted": sum(1 for d in decided if d["granted"]),
            "denied": sum(1 for d in decided if not d["granted"]),
            "ready_s": round(ready, 1),
            "total_s": round(time.monotonic() - started, 1),
        }
    finally:
        for process in (gate, console):
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(60)
            except subprocess.TimeoutExpired:
                process.kill()
        broker.stop()
        for log in logs.values():
            log.close()
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 20)
