"""Where a bench's CPU went, and a CPU cap per process, from Linux's ``/proc`` and cgroups.

A throughput ratio alone cannot say what stopped it.  On a small machine the measured
processes share the cores with the broker and the database, so "two workers are not
twice as fast" may mean the software serialises somewhere or that the cores ran out.
These helpers tell the two apart: CPU seconds per process and for the whole machine
over a measured window, and a cgroup cap that gives each measured process a fixed
share of a core, so the rest of the machine has room whatever the process count.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Iterable
from pathlib import Path

TICK_S = 1 / os.sysconf("SC_CLK_TCK")


def machine_busy_ticks() -> int:
    """Clock ticks the whole machine has spent busy: all of ``/proc/stat``'s but idle and iowait."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return sum(fields) - fields[3] - fields[4]


def process_ticks(pid: int) -> int:
    """User plus system clock ticks of process ``pid`` (all its threads); 0 once it has gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0
    fields = stat[stat.rindex(")") + 2 :].split()  # the name may hold spaces and parentheses
    return int(fields[11]) + int(fields[12])


def pids_named(prefix: str) -> list[int]:
    """Processes whose name starts with ``prefix``: a local server's, such as PostgreSQL's backends."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if (entry / "comm").read_text().startswith(prefix):
                    found.append(int(entry.name))
            except OSError:
                continue  # it ended while we looked
    return found


class Ticks:
    """CPU ticks of named groups of processes, and of the machine, from ``start()`` to ``stop()``."""

    def __init__(self, groups: dict[str, Iterable[int]]) -> None:
        self.groups = {name: list(pids) for name, pids in groups.items()}
        self._start: dict[str, int] = {}
        self.used: dict[str, int] = {}

    def _read(self) -> dict[str, int]:
        ticks = {name: sum(process_ticks(pid) for pid in pids) for name, pids in self.groups.items()}
        ticks["machine"] = machine_busy_ticks()
        return ticks

    def start(self) -> Ticks:
        self._start = self._read()
        return self

    def stop(self) -> dict[str, int]:
        """Ticks used per group, ``"machine"`` for the whole machine and ``"other"`` for the rest of it."""
        end = self._read()
        self.used = {name: end[name] - self._start[name] for name in end}
        self.used["other"] = max(0, self.used["machine"] - sum(self.used[n] for n in self.groups))
        return self.used


_V1 = Path("/sys/fs/cgroup/cpu")
_V2 = Path("/sys/fs/cgroup")
_PERIOD_US = 100_000


class CpuCap:
    """Each process added may use at most ``cores`` of CPU time, in a cgroup of its own.

    cgroup v1's ``cpu`` controller (``cpu.cfs_quota_us``) or v2's ``cpu.max``, whichever
    the machine mounts writable; it needs root.  :meth:`unavailable` says why not, so a
    bench reports a missing figure instead of failing.
    """

    def __init__(self, cores: float) -> None:
        self.cores = cores
        self._groups: list[Path] = []

    @staticmethod
    def unavailable() -> str | None:
        if (_V1 / "cpu.cfs_quota_us").exists():
            return None if os.access(_V1, os.W_OK) else f"{_V1} is not writable (needs root)"
        if "cpu" in _read(_V2 / "cgroup.controllers").split():
            return None if os.access(_V2, os.W_OK) else f"{_V2} is not writable (needs root)"
        return "no cgroup cpu controller mounted"

    def add(self, pid: int) -> None:
        quota = int(self.cores * _PERIOD_US)
        if (_V1 / "cpu.cfs_quota_us").exists():
            group = _V1 / f"gatepost-bench-{uuid.uuid4().hex[:8]}"
            group.mkdir()
            self._groups.append(group)
            (group / "cpu.cfs_period_us").write_text(str(_PERIOD_US))
            (group / "cpu.cfs_quota_us").write_text(str(quota))
        else:
            if "cpu" not in _read(_V2 / "cgroup.subtree_control").split():
                (_V2 / "cgroup.subtree_control").write_text("+cpu")
            group = _V2 / f"gatepost-bench-{uuid.uuid4().hex[:8]}"
            group.mkdir()
            self._groups.append(group)
            (group / "cpu.max").write_text(f"{quota} {_PERIOD_US}")
        (group / "cgroup.procs").write_text(str(pid))  # the whole process, threads too

    def close(self) -> None:
        """Remove the groups; call once their processes have ended (a group in use cannot go)."""
        for group in self._groups:
            with contextlib.suppress(OSError):  # a process still in it: the kernel keeps the group
                group.rmdir()
        self._groups.clear()


def _read(path: Path) -> str:
    try:
        return path.read_text()
    except OSError:
        return ""
