"""Web console under two attacks from issue 13: a login flood and a photo bomb.

Measured against a real console web process (``build_context`` + uvicorn, as ``gatepost
console run`` serves it) started from a source tree, each figure next to its comparison:

1. **Login flood.**  An admin, logged in, loads the gates overview (``GET /``) four times
   a second.  First quietly, then while anonymous clients on another loopback address
   send 16 logins a second (open loop: they do not wait for answers) with 1,000-character
   passwords (the longest a console hashes) under made-up names.  → the admin's page
   latency p50/p95, quiet and under attack; how long the admin's own login took in the
   middle of the flood (median); and the CPU the console process spent per second of
   flood (``/proc/PID/stat``), which other work on a shared machine disturbs less than
   latency.  With ``--baseline``, both consoles run at once and the windows alternate,
   quiet and flooded, tree by tree, for several rounds: a machine busy with other work
   weighs on both alike.
2. **Photo bomb.**  Twelve operators' uploads at once, each a pass with a 6000×6000 PNG
   photo (36 Mpx, 48 KB: one grey colour), then twelve at once with a 4000×3000 PNG (a
   12-Mpx phone photo's size, which the console accepts).  → the web process's peak
   resident memory (``VmHWM``) over its resident memory before, and what the uploads
   were answered.

``--baseline TREE`` runs both against another source tree too (the same run, the same
machine): ``git archive <commit> | tar -x -C /tmp/before`` gives one.  Usage:
``python bench/web_attacks.py [--quick] [--baseline TREE]``.  Prints a table, then one
JSON line (this tree's figures, and the baseline's under ``baseline``).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import re
import secrets
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]

PASSWORD = "correct horse battery staple"
ATTACKER = "127.0.0.2"
_CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')

# The server, run by the interpreter of this venv with ``tree`` first on sys.path, so that the
# same script serves this checkout or a baseline one.
SERVER = r"""
import sys
tree, state, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
sys.path.insert(0, tree)
from pathlib import Path
import console
assert Path(console.__file__).resolve().is_relative_to(Path(tree).resolve()), console.__file__
from console.config import load_config
from console.store import EventStore
from console.web.app import build_context
from console.web.serve import WebServer
config = load_config(Path(state) / "console.toml")
store = EventStore(config.store.path)
ctx = build_context(config, store)
users = ctx.users
users.add("admin", "correct horse battery staple", "admin")
for i in range(12):
    users.add(f"op{i}", "correct horse battery staple", "operator")
    if hasattr(users, "grant"):
        users.grant(f"op{i}", "passes", "*")
server = WebServer(ctx, "127.0.0.1", port)
assert server.start()
print("ready", flush=True)
sys.stdin.read()
server.stop()
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def cpu_seconds(pid: int) -> float:
    """User and system CPU time of ``pid`` so far (fields 14 and 15 of /proc/PID/stat)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def status_kb(pid: int, key: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    raise KeyError(key)


@dataclass
class Console:
    tree: Path
    state: Path
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[str] | None = None

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> Console:
        from console.passes.office import Office

        self.state.mkdir(parents=True)
        Office.create(self.state / "office", site="longtan", site_id=7).close()
        (self.state / "console.toml").write_text(
            f"""
[store]
path = "{self.state / "events.db"}"
[mqtt]
host = "127.0.0.1"
port = {free_port()}
[cards]
site = "longtan"
registry = "{self.state / "cards.db"}"
thumbnails = "{self.state / "thumbnails"}"
[web]
office = "{self.state / "office"}"
"""
        )
        self.process = subprocess.Popen(
            [sys.executable, "-c", SERVER, str(self.tree), str(self.state), str(self.port)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        if line.strip() != "ready":
            raise RuntimeError(f"the console did not start: {line!r}")
        return self

    def __exit__(self, *_exc: object) -> None:
        if self.process is not None:
            assert self.process.stdin is not None
            self.process.stdin.close()
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=self.base, headers={"accept": "text/html"}, timeout=60)

    def login(self, client: httpx.Client, name: str) -> float:
        """Log ``client`` in as ``name``; how long the POST took, in seconds."""
        token = _CSRF.search(client.get("/login").text)
        assert token
        start = time.perf_counter()
        answer = client.post(
            "/login", data={"name": name, "password": PASSWORD, "csrf_token": token.group(1)}
        )
        elapsed = time.perf_counter() - start
        assert answer.status_code == 303, (answer.status_code, answer.text[:200])
        return elapsed


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def page_latencies(client: httpx.Client, seconds: float, rate: float = 4.0) -> list[float]:
    times: list[float] = []
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        start = time.perf_counter()
        answer = client.get("/")
        times.append((time.perf_counter() - start) * 1000)
        assert answer.status_code == 200, answer.status_code
        time.sleep(max(0.0, 1 / rate - times[-1] / 1000))
    return times


@contextmanager
def flood(console: Console, answers: Counter[int]) -> Iterator[None]:
    """16 anonymous logins a second at ``console`` from :data:`ATTACKER`, open loop, while inside."""
    stop = threading.Event()
    lock = threading.Lock()
    with httpx.Client(
        base_url=console.base, timeout=60, transport=httpx.HTTPTransport(local_address=ATTACKER)
    ) as c:
        token = _CSRF.search(c.get("/login").text)
        cookies = dict(c.cookies)
    assert token

    host, port = "127.0.0.1", int(console.base.rsplit(":", 1)[1])
    cookie = "; ".join(f"{k}={v}" for k, v in cookies.items())

    def attempt() -> None:
        """One login over a raw socket: the attacker's side costs this machine next to nothing."""
        body = f"name=x{secrets.token_hex(4)}&password={'p' * 1000}&csrf_token={token.group(1)}".encode()
        request = (
            f"POST /login HTTP/1.1\r\nHost: {host}:{port}\r\nCookie: {cookie}\r\n"
            "Content-Type: application/x-www-form-urlencoded\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
        ).encode() + body
        try:
            with socket.create_connection((host, port), timeout=60, source_address=(ATTACKER, 0)) as sock:
                sock.sendall(request)
                head = sock.recv(64)
                while sock.recv(65536):
                    pass
            code = int(head.split(b" ", 2)[1])
        except (OSError, ValueError, IndexError):
            code = 0
        with lock:
            answers[code] += 1

    def send() -> None:
        with ThreadPoolExecutor(64) as pool:
            next_at = time.monotonic()
            while not stop.is_set():
                pool.submit(attempt)
                next_at += 1 / 16
                time.sleep(max(0.0, next_at - time.monotonic()))

    sender = threading.Thread(target=send)
    sender.start()
    try:
        time.sleep(1.0)  # let it build up
        yield
    finally:
        stop.set()
        sender.join()


def login_flood(consoles: dict[str, Console], seconds: float, rounds: int) -> dict[str, dict[str, Any]]:
    """Quiet and flooded windows for each console in turn, ``rounds`` times: the trees share the machine's moods."""
    admins = {}
    for name, console in consoles.items():
        admins[name] = console.client()
        console.login(admins[name], "admin")
        page_latencies(admins[name], 1.0)  # warm
    quiet: dict[str, list[float]] = {name: [] for name in consoles}
    attacked: dict[str, list[float]] = {name: [] for name in consoles}
    own: dict[str, list[float]] = {name: [] for name in consoles}
    cpu: dict[str, list[float]] = {name: [] for name in consoles}
    answers: dict[str, Counter[int]] = {name: Counter() for name in consoles}
    window = seconds / rounds
    for _ in range(rounds):
        for name, console in consoles.items():
            assert console.process is not None
            quiet[name] += page_latencies(admins[name], window)
            with flood(console, answers[name]):
                cpu_start, wall_start = cpu_seconds(console.process.pid), time.monotonic()
                attacked[name] += page_latencies(admins[name], window / 2)
                own[name].append(console.login(console.client(), "admin"))
                attacked[name] += page_latencies(admins[name], window / 2)
                cpu[name].append(
                    (cpu_seconds(console.process.pid) - cpu_start) / (time.monotonic() - wall_start)
                )
    return {
        name: {
            "quiet_p50_ms": round(statistics.median(quiet[name]), 1),
            "quiet_p95_ms": round(percentile(quiet[name], 0.95), 1),
            "attack_p50_ms": round(statistics.median(attacked[name]), 1),
            "attack_p95_ms": round(percentile(attacked[name], 0.95), 1),
            "admin_login_during_attack_ms": round(statistics.median(own[name]) * 1000, 1),
            "console_cpu_per_s_under_attack": round(statistics.median(cpu[name]), 2),
            "flood_answers": {str(k): v for k, v in sorted(answers[name].items())},
        }
        for name in consoles
    }


def png(size: tuple[int, int]) -> bytes:
    out = io.BytesIO()
    Image.new("L", size, 200).save(out, "PNG", optimize=True)
    return out.getvalue()


def photo_bomb(console: Console, size: tuple[int, int]) -> dict[str, Any]:
    assert console.process is not None
    pid = console.process.pid
    photo = png(size)
    clients = []
    for i in range(12):
        client = console.client()
        console.login(client, f"op{i}")
        clients.append(client)
    before = status_kb(pid, "VmRSS")
    start = threading.Barrier(12)

    def upload(i: int) -> int:
        client = clients[i]
        token = _CSRF.search(client.get("/passes/new").text)
        assert token
        start.wait()
        return client.post(
            "/passes/new",
            data={
                "csrf_token": token.group(1),
                "holder": f"Holder {i}",
                "unit": "1-1-101",
                "role": "resident",
            },
            files={"photo": ("face.png", photo, "image/png")},
        ).status_code

    began = time.perf_counter()
    with ThreadPoolExecutor(12) as pool:
        codes = list(pool.map(upload, range(12)))
    elapsed = time.perf_counter() - began
    peak = status_kb(pid, "VmHWM")
    return {
        "photo_kb": round(len(photo) / 1024),
        "rss_before_mb": round(before / 1024),
        "peak_rss_mb": round(peak / 1024),
        "seconds": round(elapsed, 2),
        "answers": {str(c): codes.count(c) for c in sorted(set(codes))},
    }


def measure(trees: dict[str, Path], work: Path, seconds: float, rounds: int) -> dict[str, dict[str, Any]]:
    results: dict[str, dict[str, Any]] = {name: {} for name in trees}
    with contextlib.ExitStack() as stack:
        consoles = {
            name: stack.enter_context(Console(tree, work / name / "flood")) for name, tree in trees.items()
        }
        for name, figures in login_flood(consoles, seconds, rounds).items():
            results[name]["login_flood"] = figures
    for name, tree in trees.items():
        with Console(tree, work / name / "bomb") as console:
            results[name]["photo_bomb_36mpx"] = photo_bomb(console, (6000, 6000))
        with Console(tree, work / name / "phone") as console:
            results[name]["photo_12mpx_x12"] = photo_bomb(console, (4000, 3000))
    return results


def table(results: dict[str, dict[str, Any]]) -> str:
    rows = [
        ("admin GET / p50, quiet (ms)", "login_flood", "quiet_p50_ms"),
        ("admin GET / p95, quiet (ms)", "login_flood", "quiet_p95_ms"),
        ("admin GET / p50, 16 logins/s (ms)", "login_flood", "attack_p50_ms"),
        ("admin GET / p95, 16 logins/s (ms)", "login_flood", "attack_p95_ms"),
        ("admin's own login in the flood (ms)", "login_flood", "admin_login_during_attack_ms"),
        ("console CPU s/s during the flood", "login_flood", "console_cpu_per_s_under_attack"),
        ("flood answered", "login_flood", "flood_answers"),
        ("12 × 36-Mpx PNG: RSS before (MB)", "photo_bomb_36mpx", "rss_before_mb"),
        ("12 × 36-Mpx PNG: peak RSS (MB)", "photo_bomb_36mpx", "peak_rss_mb"),
        ("12 × 36-Mpx PNG: answers", "photo_bomb_36mpx", "answers"),
        ("12 × 12-Mpx PNG: peak RSS (MB)", "photo_12mpx_x12", "peak_rss_mb"),
        ("12 × 12-Mpx PNG: answers", "photo_12mpx_x12", "answers"),
    ]
    names = list(results)
    width = max(len(r[0]) for r in rows)
    lines = [f"{'':{width}}  " + "  ".join(f"{n:>24}" for n in names)]
    for label, group, key in rows:
        cells = [str(results[n][group][key]) for n in names]
        lines.append(f"{label:{width}}  " + "  ".join(f"{c:>24}" for c in cells))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--quick", action="store_true", help="8 s of page loads per phase in 2 rounds, not 30 in 5"
    )
    parser.add_argument("--baseline", type=Path, help="another source tree to attack in the same run")
    args = parser.parse_args(argv)
    seconds, rounds = (8.0, 2) if args.quick else (30.0, 5)
    os.environ.setdefault("PYTHONDONTWRITEBYTECODE", "1")
    trees = {"this tree": ROOT}
    if args.baseline is not None:
        trees = {"baseline": args.baseline.resolve(), **trees}
    with tempfile.TemporaryDirectory(prefix="gatepost-web-attacks-") as tmp:
        results = measure(trees, Path(tmp), seconds, rounds)
    print(table(results))
    summary = dict(results["this tree"])
    if "baseline" in results:
        summary["baseline"] = results["baseline"]
    print(json.dumps(summary, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    raise SystemExit(main())
