"""Gate agent benchmark: start-up to READY=1, memory after 10,000 scans, and SIGKILL to the lock relay off.

Everything runs ``gatepost edge run`` as its own process, as the unit does, with the
broker absent (a free port nobody listens on: the gate works offline, and the events
wait in the outbox).

1. ``agent_ready_s``: from just before the process is spawned to the ``READY=1`` datagram
   on a notify socket the benchmark owns, for a gate with one serial scanner (a pty).
   Beside it, in the same run: a bare ``python -c pass``, and ``python -c 'import
   edge.agent'`` (spawn to exit) — how much of the start-up is only importing the agent.
2. ``agent_rss_mb_scanner`` and ``agent_rss_mb_camera``: the agent's resident set
   (``VmRSS`` in /proc) after 10,000 scans typed into its serial scanner have all been
   decided and committed; the camera gate also runs the simulated camera (``sim://``,
   640x480, decoding every frame with zxing-cpp) all the while — 10,000 scans through the
   camera itself would take minutes of frames.  Beside them: the RSS right after READY,
   and a bare interpreter that imports the same modules and nothing else.  The outboxes
   live on /dev/shm (tmpfs) when there is one, so 10,000 fsyncs do not dominate the run;
   memory does not depend on where the file is.
3. ``relay_off_after_kill_ms``: a gate with a door on the ``mockfile`` pins
   (simulator/pins.py: each output level written goes to a file with its CLOCK_MONOTONIC
   time), run as the main process of ``systemd/gatepost-edge.service`` by
   :class:`simulator.service.ServiceRun` — a stand-in for systemd that reads ExecStart= and
   ExecStopPost= from the unit file, notices the main process's end with ``waitpid`` and at
   once runs ``gatepost edge relay-off`` with SERVICE_RESULT set, as systemd does.  A granted
   scan energises the relay; the benchmark sends SIGKILL and measures to the moment
   relay-off's write of the off level lands.  That is where it ends: a file written by a
   mock pin, not a GPIO line of a real chip, and still less a relay's contacts opening (a
   relay adds its own release time, typically 5-15 ms).  Not included: what a real systemd
   adds to start a sandboxed ExecStopPost= (namespaces, seccomp), and this machine is an
   x86 server, not a Raspberry Pi, where Python starts several times slower.  Beside it:
   ``gatepost edge relay-off`` run alone (spawn to exit) and a bare ``python -c pass``.
4. ``agent_threads``, ``agent_fds``, ``agent_rss_mb_connected``: the scanner gate *connected*
   to a real mosquitto (the other measures run it offline), after 200 scans were taken
   and published (no console runs, so they stay in the outbox, unacknowledged).  Threads and open descriptors from /proc.  ``--code-root`` runs the agent from another
   checkout (``PYTHONPATH``), to measure a before/after in one run.

Usage: ``python bench/agent.py [--quick]``.  Prints a table, then one JSON line.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from broker.launcher import free_port  # noqa: E402
from simulator.pins import read_level  # noqa: E402
from simulator.scanner import VirtualScanner  # noqa: E402
from simulator.service import NotifySocket, ServiceRun, Unit  # noqa: E402

UNIT = ROOT / "systemd" / "gatepost-edge.service"
RELAY = "GPIO17"
GRANTED = "RESIDENT-000001"
TARGETS = {"agent_ready_s": 2.0, "agent_rss_mb_scanner": 60.0, "relay_off_after_kill_ms": 1000.0}
SAME_IMPORTS = {
    "scanner": "import gatepost.cli, edge.cli, edge.agent, edge.config, edge.supervision, gatepost.sdnotify, "
    "gatepost.supervision, gatepost.stopping, drivers.scanner",
    "camera": "import gatepost.cli, edge.cli, edge.agent, edge.config, edge.supervision, gatepost.sdnotify, "
    "gatepost.supervision, gatepost.stopping, drivers.scanner, drivers.camera_scanner, drivers.qr, "
    "simulator.camera, cv2, zxingcpp",
}


CODE_ROOT = ROOT
"""The checkout the spawned agent runs from (``--code-root``)."""


def env(**extra: str) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(CODE_ROOT), **extra}


def rss_mb(pid: int) -> tuple[float, float]:
    """(VmRSS, VmHWM) of a process in MB."""
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            fields[key] = int(value.split()[0]) / 1024
    return fields["VmRSS"], fields["VmHWM"]


@contextlib.contextmanager
def folder(prefix: str) -> Iterator[Path]:
    base = "/dev/shm" if Path("/dev/shm").is_dir() else None
    with tempfile.TemporaryDirectory(prefix=prefix, dir=base) as name:
        yield Path(name)


def gate_config(
    root: Path, tty: Path, *, door: bool = False, camera: bool = False, broker: Any = None
) -> Path:
    """A one-scanner gate; ``broker`` (a running broker.launcher.Broker) to connect, else a dead port."""
    secret = root / "mqtt.secret"
    creds = broker.add_gate("bench", "g1") if broker is not None else None
    secret.write_text(creds.password if creds is not None else "unused")
    secret.chmod(0o600)
    lines = [
        'site = "bench"',
        'gate = "g1"',
        "[mqtt]",
        'host = "127.0.0.1"',
        f"port = {broker.port if broker is not None else free_port()}",
        f'username = "{creds.username if creds is not None else "gate.bench.g1"}"',
        f"password_file = {json.dumps(str(secret))}",
        "[[scanners]]",
        'name = "scanner"',
        f"url = {json.dumps(str(tty))}",
        "baudrate = 115200",
        "[outbox]",
        f"path = {json.dumps(str(root / 'outbox.db'))}",
        "[access]",
        f'allow = ["{GRANTED}"]',
        "repeat_s = 0",
        "[clock]",
        'trust = "trusted"',
        "[log]",
        'level = "WARNING"',
    ]
    if camera:
        lines += [
            "[[cameras]]",
            'name = "camera"',
            'source = "sim://?codes=RESIDENT-000001,VISITOR-1&every=2&hold=1&size=640x480&fps=15"',
        ]
    if door:
        lines += [
            "[gpio]",
            'pin_factory = "mockfile"',
            "[door.pins]",
            f'relay = "{RELAY}"',
            "relay_active_high = false",
            "[door.behaviour]",
            "unlock_s = 30",
        ]
    path = root / "gate.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


def spawn_gate(config: Path, notify: NotifySocket, log: Path) -> tuple[subprocess.Popen[bytes], float]:
    with open(log, "wb") as output:
        started = time.monotonic()
        process = subprocess.Popen(
            [sys.executable, "-m", "gatepost", "edge", "run", "--config", str(config)],
            env=env(NOTIFY_SOCKET=notify.address),
            cwd=CODE_ROOT,  # ``-m`` puts the working directory first on sys.path
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    return process, started


def stop(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(20)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(5)


def wall_s(argv: list[str]) -> float:
    started = time.monotonic()
    subprocess.run(argv, env=env(), check=True, capture_output=True, timeout=120)
    return time.monotonic() - started


# -- 1. start-up ---------------------------------------------------------------------------


def ready_once() -> float:
    with folder("gp-ready-") as root, NotifySocket() as notify:
        scanner = VirtualScanner(root / "tty", baudrate=115200, pace=False)
        try:
            process, started = spawn_gate(gate_config(root, scanner.link_path), notify, root / "agent.log")
            try:
                ready = notify.wait_for("READY", "1", timeout=60)
                if ready is None:
                    raise RuntimeError((root / "agent.log").read_text())
                return ready.at - started
            finally:
                stop(process)
        finally:
            scanner.close()


def measure_ready(runs: int) -> dict[str, float]:
    ready, imports, bare = [], [], []
    for _ in range(runs):  # interleaved, so the three share the machine's noise
        ready.append(ready_once())
        imports.append(wall_s([sys.executable, "-c", "import edge.agent"]))
        bare.append(wall_s([sys.executable, "-c", "pass"]))
    return {
        "agent_ready_s": statistics.median(ready),
        "agent_ready_s_max": max(ready),
        "import_edge_agent_s": statistics.median(imports),
        "python_bare_s": statistics.median(bare),
    }


# -- 2. memory -----------------------------------------------------------------------------


def last_seq(outbox: Path) -> int:
    db = sqlite3.connect(f"file:{outbox}?mode=ro", uri=True, timeout=10)
    try:
        row = db.execute("SELECT value FROM meta WHERE key = 'last_seq'").fetchone()
        return int(row[0]) if row else 0
    except sqlite3.OperationalError:
        return 0
    finally:
        db.close()


def rss_after_scans(kind: str, scans: int) -> dict[str, float]:
    with folder(f"gp-rss-{kind}-") as root, NotifySocket() as notify:
        scanner = VirtualScanner(root / "tty", baudrate=115200, pace=False, write_timeout_s=30)
        config = gate_config(root, scanner.link_path, camera=kind == "camera")
        process, _ = spawn_gate(config, notify, root / "agent.log")
        try:
            if notify.wait_for("READY", "1", timeout=60) is None:
                raise RuntimeError((root / "agent.log").read_text())
            time.sleep(1.0)  # readers connected, the camera streaming
            at_ready, _ = rss_mb(process.pid)
            before = last_seq(root / "outbox.db")
            started = time.monotonic()
            for i in range(scans):
                scanner.type(GRANTED if i % 3 == 0 else f"UNKNOWN-{i:08d}")
            deadline = time.monotonic() + 600
            while last_seq(root / "outbox.db") < before + scans:
                if time.monotonic() > deadline or process.poll() is not None:
                    raise RuntimeError(f"only {last_seq(root / 'outbox.db') - before} of {scans} scans taken")
                time.sleep(0.1)
            took = time.monotonic() - started
            rss, peak = rss_mb(process.pid)
        finally:
            stop(process)
            scanner.close()
    bare = subprocess.run(
        [
            sys.executable,
            "-c",
            SAME_IMPORTS[kind] + "\nfrom pathlib import Path\n"
            "print([l for l in Path('/proc/self/status').read_text().splitlines() if l.startswith('VmRSS')][0])",
        ],
        env=env(),
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    same_imports = int(bare.stdout.split()[1]) / 1024
    return {
        f"agent_rss_mb_{kind}": rss,
        f"agent_rss_mb_{kind}_peak": peak,
        f"agent_rss_mb_{kind}_at_ready": at_ready,
        f"same_imports_rss_mb_{kind}": same_imports,
        f"scans_per_s_{kind}": scans / took,
    }


# -- 4. a connected gate's threads, descriptors and memory ---------------------------------------


def proc_counts(pid: int) -> tuple[int, int]:
    """(threads, open file descriptors) of a process, from /proc."""
    threads = next(
        int(line.split()[1])
        for line in Path(f"/proc/{pid}/status").read_text().splitlines()
        if line.startswith("Threads:")
    )
    return threads, len(os.listdir(f"/proc/{pid}/fd"))


def footprint(scans: int = 200) -> dict[str, float]:
    """The scanner gate connected to a real broker: threads, fds and RSS once its scans are published."""
    from broker.launcher import Broker

    with folder("gp-footprint-") as root, NotifySocket() as notify:
        broker = Broker(root / "broker")
        broker.start()
        scanner = VirtualScanner(root / "tty", baudrate=115200, pace=False, write_timeout_s=30)
        config = gate_config(root, scanner.link_path, broker=broker)
        process, _ = spawn_gate(config, notify, root / "agent.log")
        try:
            if notify.wait_for("READY", "1", timeout=60) is None:
                raise RuntimeError((root / "agent.log").read_text())
            time.sleep(2.0)  # connected, status published
            at_ready = proc_counts(process.pid)
            for i in range(scans):
                scanner.type(GRANTED if i % 3 == 0 else f"UNKNOWN-{i:08d}")
            deadline = time.monotonic() + 120
            while last_seq(root / "outbox.db") < scans and time.monotonic() < deadline:
                time.sleep(0.1)
            time.sleep(2.0)  # published; connector threads of the first connect long gone
            threads, fds = proc_counts(process.pid)
            rss, _ = rss_mb(process.pid)
        finally:
            stop(process)
            scanner.close()
            broker.stop()
    return {
        "agent_threads": threads,
        "agent_fds": fds,
        "agent_rss_mb_connected": rss,
        "agent_threads_at_ready": at_ready[0],
        "agent_fds_at_ready": at_ready[1],
    }


# -- 3. relay off after SIGKILL ----------------------------------------------------------------


def relay_off_once() -> dict[str, float]:
    with folder("gp-relay-") as root, NotifySocket() as notify:
        scanner = VirtualScanner(root / "tty", baudrate=115200, pace=False)
        pins = root / "pins"
        config = gate_config(root, scanner.link_path, door=True)
        paths = {
            "/opt/gatepost/bin/gatepost": [sys.executable, "-m", "gatepost"],
            "/etc/gatepost/gate.toml": [str(config)],
            "/var/lib/gatepost": [str(root)],
        }
        run = ServiceRun(
            Unit.parse(UNIT),
            paths,
            notify=notify,
            env={"PYTHONPATH": str(ROOT), "GATEPOST_MOCK_PIN_DIR": str(pins)},
            watchdog_s=0,
            log_path=root / "agent.log",
        ).start()
        try:
            if notify.wait_for("READY", "1", timeout=60) is None:
                raise RuntimeError((root / "agent.log").read_text())
            deadline = time.monotonic() + 10
            typed_at = 0.0
            while (level := read_level(pins, RELAY)) is None or level.high:  # active-low: energised is low
                if time.monotonic() > deadline:
                    raise RuntimeError("the relay was never energised")
                if time.monotonic() - typed_at > 0.5:  # READY does not wait for the scanner's port
                    scanner.type(GRANTED)
                    typed_at = time.monotonic()
                time.sleep(0.005)
            killed_at = run.kill(signal.SIGKILL)
            if not run.done.wait(60):
                raise RuntimeError("relay-off did not finish")
        finally:
            run.stop()
            scanner.close()
        level = read_level(pins, RELAY)
        if level is None or not level.high or level.at_ns < killed_at:
            raise RuntimeError(f"relay not off after the kill: {run.stop_posts}")
        [post] = run.stop_posts
        assert run.ended_at is not None
        return {
            "kill_to_off_ms": (level.at_ns - killed_at) / 1e6,
            "kill_to_exit_seen_ms": run.ended_at * 1e3 - killed_at / 1e6,
            "helper_start_to_off_ms": (level.at_ns / 1e9 - post.started) * 1e3,
        }


def measure_relay_off(runs: int) -> dict[str, float]:
    results, alone, bare = [], [], []
    with folder("gp-relay-alone-") as root:
        config = gate_config(root, root / "tty", door=True)
        for _ in range(runs):
            results.append(relay_off_once())
            started = time.monotonic()
            subprocess.run(
                [sys.executable, "-m", "gatepost", "edge", "relay-off", "--config", str(config)],
                env=env(GATEPOST_MOCK_PIN_DIR=str(root / "pins")),
                check=True,
                capture_output=True,
                timeout=60,
            )
            alone.append(time.monotonic() - started)
            bare.append(wall_s([sys.executable, "-c", "pass"]))
    off = [r["kill_to_off_ms"] for r in results]
    return {
        "relay_off_after_kill_ms": statistics.median(off),
        "relay_off_after_kill_ms_max": max(off),
        "kill_to_exit_seen_ms": statistics.median(r["kill_to_exit_seen_ms"] for r in results),
        "helper_start_to_off_ms": statistics.median(r["helper_start_to_off_ms"] for r in results),
        "relay_off_alone_ms": statistics.median(alone) * 1e3,
        "python_bare_ms": statistics.median(bare) * 1e3,
    }


# -- report --------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repetitions (under a minute)")
    parser.add_argument("--scans", type=int, default=10_000)
    parser.add_argument("--code-root", type=Path, help="run the agent from this checkout (a before/after)")
    parser.add_argument("--footprint-only", action="store_true", help="only measure 4 (threads, fds, RSS)")
    args = parser.parse_args()
    global CODE_ROOT
    if args.code_root is not None:
        CODE_ROOT = args.code_root.resolve()
    if args.footprint_only:
        result = {"code_root": str(CODE_ROOT), **footprint()}
        print(
            f"connected gate ({CODE_ROOT}): {result['agent_threads']} threads, {result['agent_fds']} fds, "
            f"{result['agent_rss_mb_connected']:.1f} MB RSS"
        )
        print(json.dumps({k: round(v, 3) if isinstance(v, float) else v for k, v in result.items()}))
        return
    runs = 3 if args.quick else 10
    began = time.monotonic()
    result: dict[str, float | int | bool | str] = {"quick": args.quick, "scans": args.scans, "runs": runs}
    result.update(measure_ready(runs))
    result.update(rss_after_scans("scanner", args.scans))
    result.update(rss_after_scans("camera", args.scans))
    result.update(measure_relay_off(runs))
    result.update(footprint())
    result["seconds"] = round(time.monotonic() - began, 1)
    result["outbox_on"] = "tmpfs" if Path("/dev/shm").is_dir() else "disk"
    for key, target in TARGETS.items():
        result[f"{key}_met"] = float(result[key]) <= target  # type: ignore[arg-type]

    def row(name: str, value: str, beside: str, target: str = "") -> str:
        return f"{name:<34} {value:>10}   {beside:<44} {target}"

    print(row("measure", "value", "in the same run", "target"))
    print(
        row(
            "start to READY=1 (scanner gate)",
            f"{result['agent_ready_s']:.2f} s",
            f"import edge.agent {result['import_edge_agent_s']:.2f} s, bare python {result['python_bare_s']:.2f} s",
            f"<= {TARGETS['agent_ready_s']:g} s",
        )
    )
    for kind in ("scanner", "camera"):
        print(
            row(
                f"RSS after {args.scans} scans ({kind})",
                f"{result[f'agent_rss_mb_{kind}']:.1f} MB",
                f"at READY {result[f'agent_rss_mb_{kind}_at_ready']:.1f} MB, same imports "
                f"{result[f'same_imports_rss_mb_{kind}']:.1f} MB",
                "<= 60 MB" if kind == "scanner" else "",
            )
        )
        print(row(f"  scans taken per second ({kind})", f"{result[f'scans_per_s_{kind}']:.0f}", ""))
    print(
        row(
            "SIGKILL to relay line off",
            f"{result['relay_off_after_kill_ms']:.0f} ms",
            f"relay-off alone {result['relay_off_alone_ms']:.0f} ms, bare python "
            f"{result['python_bare_ms']:.0f} ms",
            f"<= {TARGETS['relay_off_after_kill_ms']:g} ms",
        )
    )
    print(
        row(
            "  of which: exit noticed / helper",
            f"{result['kill_to_exit_seen_ms']:.0f} ms",
            f"helper start to write {result['helper_start_to_off_ms']:.0f} ms (max total "
            f"{result['relay_off_after_kill_ms_max']:.0f} ms)",
        )
    )
    print(
        row(
            "connected gate: threads / fds",
            f"{result['agent_threads']} / {result['agent_fds']}",
            f"RSS {result['agent_rss_mb_connected']:.1f} MB after 200 scans published",
        )
    )
    print(
        json.dumps(
            {key: round(value, 3) if isinstance(value, float) else value for key, value in result.items()}
        )
    )


if __name__ == "__main__":
    main()
