"""Stand-ins for the parts of systemd a gate's unit relies on, for tests and benchmarks on any machine.

:class:`NotifySocket` is the socket a service manager listens on for ``sd_notify``
messages: a datagram socket with ``SO_PASSCRED`` on, so each message carries the sender's
PID as the kernel saw it, as systemd reads it (to honour ``NotifyAccess=main``).

:class:`ServiceRun` runs one start of a unit the way systemd's service manager does the
parts gatepost depends on: it reads ``ExecStart=``, ``ExecStopPost=``, ``Environment=``,
``WorkingDirectory=`` and ``WatchdogSec=`` from the unit file itself (with the installed
paths mapped onto a test folder), starts the main process with ``$NOTIFY_SOCKET`` and
``$WATCHDOG_USEC``, and when that process ends — however it ends — runs each
``ExecStopPost=`` command at once with ``$SERVICE_RESULT``, ``$EXIT_CODE`` and
``$EXIT_STATUS`` set, as systemd.exec(5) describes.  Like systemd it sends the watchdog
signal (SIGABRT, then SIGKILL after ``TimeoutAbortSec=``, 5 s here) when ``WATCHDOG=1``
has not come for ``WatchdogSec=``.

What it is not: there is no sandbox (no namespaces, no seccomp, no user switch, no
cgroup: a process's children are not killed with it), which on a real system adds the
cost of setting those up to each command's start; and it stops after one run rather than
restarting.  It notices the main process's end by ``waitpid`` on a thread, as systemd
does by SIGCHLD in its event loop.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import signal
import socket
import struct
import subprocess
import threading
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

_UCRED = struct.Struct("iII")  # pid, uid, gid: struct ucred


@dataclass(frozen=True, slots=True)
class Notification:
    """One sd_notify datagram: when it came (``time.monotonic()``), who sent it, and its fields."""

    at: float
    pid: int
    fields: dict[str, str]


class NotifySocket:
    """A service manager's notify socket; ``address`` is what goes in ``$NOTIFY_SOCKET``.

    By default it is in the abstract namespace (``@…``: no path, no length limit to mind);
    give ``path`` for a socket file.
    """

    def __init__(self, path: Path | None = None) -> None:
        self._socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
        self._socket.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
        if path is None:
            name = f"gatepost-test/{uuid.uuid4().hex}"
            self._socket.bind("\0" + name)
            self.address = "@" + name
        else:
            self._socket.bind(str(path))
            self.address = str(path)
        self.messages: list[Notification] = []
        self._changed = threading.Condition()
        self._closed = False
        self._thread = threading.Thread(target=self._receive, name="notify-socket", daemon=True)
        self._thread.start()

    def _receive(self) -> None:
        while True:
            try:
                data, ancillary, _flags, _address = self._socket.recvmsg(
                    65536, socket.CMSG_SPACE(_UCRED.size)
                )
            except OSError:
                return  # closed
            if not data and self._closed:
                return
            pid = 0
            for level, kind, payload in ancillary:
                if level == socket.SOL_SOCKET and kind == socket.SCM_CREDENTIALS:
                    pid = _UCRED.unpack(payload[: _UCRED.size])[0]
            fields = dict(line.split("=", 1) for line in data.decode().splitlines() if "=" in line)
            with self._changed:
                self.messages.append(Notification(time.monotonic(), pid, fields))
                self._changed.notify_all()

    def wait_for(
        self, key: str, value: str | None = None, *, after: float = 0.0, timeout: float = 10.0
    ) -> Notification | None:
        """The first message received after ``after`` that sets ``key`` (to ``value``), waiting up to ``timeout``."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                for message in self.messages:
                    matches = key in message.fields and (value is None or message.fields[key] == value)
                    if message.at >= after and matches:
                        return message
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return None
                self._changed.wait(remaining)

    def with_key(self, key: str, *, after: float = 0.0) -> list[Notification]:
        with self._changed:
            return [m for m in self.messages if key in m.fields and m.at >= after]

    def close(self) -> None:
        self._closed = True
        with contextlib.suppress(OSError):
            self._socket.shutdown(socket.SHUT_RDWR)
        self._socket.close()
        self._thread.join(timeout=2)

    def __enter__(self) -> NotifySocket:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@dataclass
class Unit:
    """The ``[Service]`` settings of a unit file that :class:`ServiceRun` acts on."""

    exec_start: list[str]
    exec_stop_post: list[list[str]]
    environment: dict[str, str]
    working_directory: str | None
    watchdog_s: float
    settings: dict[str, list[str]] = field(default_factory=dict)

    @classmethod
    def parse(cls, path: Path) -> Unit:
        settings: dict[str, list[str]] = {}
        section = ""
        for raw in path.read_text().splitlines():
            line = raw.strip()
            if not line or line.startswith(("#", ";")):
                continue
            if line.startswith("["):
                section = line.strip("[]")
                continue
            if section == "Service" and "=" in line:
                key, value = line.split("=", 1)
                settings.setdefault(key.strip(), []).append(value.strip())
        environment: dict[str, str] = {}
        for assignment in settings.get("Environment", []):
            for word in shlex.split(assignment):
                key, value = word.split("=", 1)
                environment[key] = value
        return cls(
            exec_start=_command(settings["ExecStart"][-1]),
            exec_stop_post=[_command(value) for value in settings.get("ExecStopPost", []) if value],
            environment=environment,
            working_directory=(settings.get("WorkingDirectory") or [None])[-1],
            watchdog_s=_seconds((settings.get("WatchdogSec") or ["0"])[-1]),
            settings=settings,
        )


def _command(value: str) -> list[str]:
    return shlex.split(value.lstrip("-@:+!"))  # prefixes (ignore failure, …) do not change what runs


def _seconds(value: str) -> float:
    value = value.strip()
    for suffix, scale in (("ms", 0.001), ("min", 60.0), ("s", 1.0)):
        if value.endswith(suffix):
            return float(value.removesuffix(suffix)) * scale
    return float(value)


def _map(word: str, paths: Mapping[str, Sequence[str]]) -> list[str]:
    """An installed path replaced by the test's own (a command may map to several words)."""
    for installed, local in sorted(paths.items(), key=lambda item: -len(item[0])):
        if word == installed:
            return list(local)
        if word.startswith(installed + "/"):
            return [local[-1] + word[len(installed) :]]
    return [word]


@dataclass(frozen=True, slots=True)
class StopPost:
    """One ``ExecStopPost=`` command's run: its arguments, when it started and ended, and its output."""

    argv: list[str]
    started: float
    ended: float
    returncode: int
    output: str


class ServiceRun:
    """One start of a unit: main process, watchdog, then ``ExecStopPost=`` however it ended."""

    def __init__(
        self,
        unit: Unit,
        paths: Mapping[str, Sequence[str]],
        *,
        notify: NotifySocket,
        env: Mapping[str, str] | None = None,
        watchdog_s: float | None = None,
        log_path: Path | None = None,
        timeout_abort_s: float = 5.0,
    ) -> None:
        self.unit = unit
        self.paths = paths
        self.notify = notify
        self.watchdog_s = unit.watchdog_s if watchdog_s is None else watchdog_s
        self.timeout_abort_s = timeout_abort_s
        self.log_path = log_path
        environment = {key: " ".join(_map(value, paths)) for key, value in unit.environment.items()}
        self.env = {**os.environ, **environment, **(env or {})}
        self.cwd = " ".join(_map(unit.working_directory, paths)) if unit.working_directory else None
        self.process: subprocess.Popen[bytes] | None = None
        self.result = ""
        self.ended_at: float | None = None
        self.stop_posts: list[StopPost] = []
        self.done = threading.Event()
        self._thread: threading.Thread | None = None
        self._watchdog_thread: threading.Thread | None = None

    def argv(self, command: Sequence[str]) -> list[str]:
        return [part for word in command for part in _map(word, self.paths)]

    def start(self) -> ServiceRun:
        env = dict(self.env)
        env["NOTIFY_SOCKET"] = self.notify.address
        if self.watchdog_s:
            env["WATCHDOG_USEC"] = str(round(self.watchdog_s * 1e6))
        output = open(self.log_path, "ab") if self.log_path else subprocess.DEVNULL  # noqa: SIM115
        try:
            self.process = subprocess.Popen(
                self.argv(self.unit.exec_start),
                cwd=self.cwd,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=output,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        finally:
            if self.log_path:
                output.close()  # type: ignore[union-attr]
        self.started_at = time.monotonic()
        self._thread = threading.Thread(target=self._supervise, name="service-run", daemon=True)
        self._thread.start()
        if self.watchdog_s:
            self._watchdog_thread = threading.Thread(target=self._watch, name="service-watchdog", daemon=True)
            self._watchdog_thread.start()
        return self

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def _watch(self) -> None:
        """systemd's watchdog: after READY, a gap of ``WatchdogSec`` between pings gets SIGABRT."""
        ready = self.notify.wait_for("READY", "1", after=self.started_at, timeout=60)
        if ready is None or self.done.is_set():
            return
        last = ready.at
        while not self.done.is_set():
            pings = [m.at for m in self.notify.with_key("WATCHDOG", after=last) if m.pid == self.pid]
            if pings:
                last = max(pings)
            if time.monotonic() - last > self.watchdog_s:
                self.result = "watchdog"
                self._signal(signal.SIGABRT)
                if self.done.wait(self.timeout_abort_s):
                    return
                self._signal(signal.SIGKILL)
                return
            self.done.wait(0.05)

    def _signal(self, signum: int) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.pid, signum)

    def _supervise(self) -> None:
        assert self.process is not None
        status = self.process.wait()
        self.ended_at = time.monotonic()
        if status < 0:
            code, exit_status = (
                ("dumped" if -status in (signal.SIGABRT, signal.SIGSEGV) else "killed"),
                signal.Signals(-status).name.removeprefix("SIG"),
            )
            self.result = self.result or ("core-dump" if code == "dumped" else "signal")
        else:
            code, exit_status = "exited", str(status)
            self.result = self.result or ("success" if status == 0 else "exit-code")
        env = {**self.env, "SERVICE_RESULT": self.result, "EXIT_CODE": code, "EXIT_STATUS": exit_status}
        for command in self.unit.exec_stop_post:
            argv = self.argv(command)
            started = time.monotonic()
            done = subprocess.run(
                argv,
                cwd=self.cwd,
                env=env,
                stdin=subprocess.DEVNULL,
                capture_output=True,
                timeout=90,
                check=False,
            )
            self.stop_posts.append(
                StopPost(
                    argv,
                    started,
                    time.monotonic(),
                    done.returncode,
                    (done.stdout + done.stderr).decode(errors="replace"),
                )
            )
        self.done.set()

    def kill(self, signum: int = signal.SIGKILL) -> float:
        """Send ``signum`` to the main process; returns the ``time.monotonic_ns()`` just before."""
        at = time.monotonic_ns()
        self._signal(signum)
        return at

    def stop(self, timeout: float = 15.0) -> None:
        """SIGTERM, as ``systemctl stop`` does, then SIGKILL after ``timeout``; wait for the stop-post commands."""
        if self.process is not None and self.process.poll() is None:
            self._signal(signal.SIGTERM)
            if not self.done.wait(timeout):
                self._signal(signal.SIGKILL)
        self.done.wait(timeout + 90)

    def __enter__(self) -> ServiceRun:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
