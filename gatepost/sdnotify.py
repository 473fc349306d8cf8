"""systemd's notify protocol, spoken directly: one datagram per message to ``$NOTIFY_SOCKET``.

A ``Type=notify`` unit is "started" only when the process says ``READY=1``, and with
``WatchdogSec=`` it is restarted when ``WATCHDOG=1`` stops coming.  The protocol is a
datagram of newline-separated ``KEY=VALUE`` lines sent to the AF_UNIX socket named in
``$NOTIFY_SOCKET`` (a path, or ``@name`` for the abstract namespace); systemd reads the
sender's PID from the socket's credentials (sd_notify(3), systemd.service(5)).  It is a
few lines, so it is written here rather than taken as a dependency (the same choice as
zigbee2mqtt's ``lib/util/sd-notify.ts``).

Without ``$NOTIFY_SOCKET`` (a terminal, a test, the demo) every call does nothing.  A
send that fails (systemd restarting, the socket gone) is logged and dropped: telling
systemd is never worth stopping a door for.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
from collections.abc import Mapping

log = logging.getLogger("gatepost.sdnotify")

_VARIABLES = ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID")


def _address(value: str) -> str | None:
    """The socket address for ``$NOTIFY_SOCKET``: ``@name`` is the abstract namespace.

    Other forms systemd may hand out (``vsock:``, for a virtual machine's host) are not
    for a process on a gate and are ignored.
    """
    if value.startswith("@"):
        return "\0" + value[1:]
    if value.startswith("/"):
        return value
    return None


def _watchdog_usec(environ: Mapping[str, str], pid: int) -> int:
    """``$WATCHDOG_USEC`` if it is meant for this process (sd_watchdog_enabled(3)), else 0."""
    raw = environ.get("WATCHDOG_USEC", "")
    owner = environ.get("WATCHDOG_PID", "")
    if owner and owner != str(pid):
        return 0  # the variable was inherited from a parent that is the one watched
    try:
        usec = int(raw)
    except ValueError:
        if raw:
            log.warning("ignoring WATCHDOG_USEC=%r: not a number", raw)
        return 0
    return max(usec, 0)


class Notifier:
    """Messages to the service manager; inert when the process was not started by one."""

    def __init__(self, notify_socket: str | None, *, watchdog_usec: int = 0) -> None:
        self.address = _address(notify_socket) if notify_socket else None
        self.watchdog_usec = watchdog_usec if self.address else 0
        self._socket: socket.socket | None = None
        if self.address is not None:
            self._socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)

    @classmethod
    def from_environment(cls, environ: dict[str, str] | None = None, *, unset: bool = True) -> Notifier:
        """Read ``$NOTIFY_SOCKET`` and the watchdog variables; remove them so children cannot inherit them.

        A child that found ``$NOTIFY_SOCKET`` (an ingest worker process) could speak for
        the service; systemd ignores it under ``NotifyAccess=main``, but it is clearer
        never to hand the variables on, as ``sd_notify(unset_environment=1)`` does.
        """
        env = os.environ if environ is None else environ
        notify_socket = env.get("NOTIFY_SOCKET")
        watchdog = _watchdog_usec(env, os.getpid())
        if unset:
            for name in _VARIABLES:
                env.pop(name, None)
        return cls(notify_socket, watchdog_usec=watchdog)

    @property
    def enabled(self) -> bool:
        return self._socket is not None

    @property
    def watchdog_s(self) -> float:
        """The watchdog period systemd expects pings within (0: no watchdog)."""
        return self.watchdog_usec / 1e6

    def send(self, **fields: object) -> bool:
        """Send one message; ``send(READY=1, STATUS="…")``.  True if it was handed to the socket."""
        if self._socket is None or self.address is None:
            return False
        lines = []
        for key, value in fields.items():
            text = str(value).replace("\n", " ")  # one assignment per line
            lines.append(f"{key}={text}")
        try:
            self._socket.sendto("\n".join(lines).encode(), self.address)
        except OSError as exc:
            log.debug("could not notify the service manager (%s): %s", ", ".join(fields), exc)
            return False
        return True

    def ready(self, status: str | None = None) -> bool:
        return self.send(READY=1, **({"STATUS": status} if status is not None else {}))

    def status(self, text: str) -> bool:
        return self.send(STATUS=text)

    def watchdog(self, status: str | None = None) -> bool:
        return self.send(WATCHDOG=1, **({"STATUS": status} if status is not None else {}))

    def stopping(self, status: str | None = None) -> bool:
        return self.send(STOPPING=1, **({"STATUS": status} if status is not None else {}))

    def close(self) -> None:
        if self._socket is not None:
            with contextlib.suppress(OSError):
                self._socket.close()
            self._socket = None
