"""A pseudo-terminal behind a stable path: the simulator's stand-in for a serial device.

The gate agent opens a serial port by path and expects the path to stay the same across
replugs, as ``/dev/ttyACM0`` or a udev ``/dev/serial/by-id/...`` name does.  A pty's slave
name (``/dev/pts/7``) changes every time one is created, so the device is reached through
a symlink that :meth:`PseudoTerminal.plug` re-points atomically.

The slave side is put in raw mode at once, before anyone opens it: otherwise the line
discipline would turn CR into LF and echo every byte back into the master, which nobody
reads, until the echo buffer fills and input stalls.

Bytes written before a reader opens the slave wait in the kernel's pty buffer (about
20 KiB measured on Linux 6.x); pyserial flushes that input when it opens the port, so --
like a real scanner with no host listening -- they are lost, never delivered late.  When
the buffer is full, :meth:`PseudoTerminal.write` waits at most ``timeout`` and then raises
:class:`DeviceBlocked` (a ``TimeoutError``) instead of blocking forever; the part of the
line already written stays in the buffer.
"""

from __future__ import annotations

import contextlib
import errno
import os
import select
import threading
import time
import tty
from pathlib import Path
from types import TracebackType

from protocol.errors import GatepostError


class DeviceUnplugged(GatepostError, ConnectionError):
    """Writing to a device that is unplugged or closed."""


class DeviceBlocked(GatepostError, TimeoutError):
    """Nobody read the device for so long that its buffer is full."""


class PseudoTerminal:
    """A pty whose slave is reachable at ``link_path`` while plugged in."""

    def __init__(self, link_path: Path | str) -> None:
        self.link_path = Path(link_path)
        self._master: int | None = None
        self._slave: int | None = None
        self.slave_name: str | None = None
        self._lock = threading.Lock()

    @property
    def plugged(self) -> bool:
        return self._master is not None

    def plug(self) -> str:
        """Create a fresh pty and point the link at it; return the slave's name."""
        with self._lock:
            if self._master is not None:
                return self.slave_name or ""
            master, slave = os.openpty()
            try:
                tty.setraw(slave)
                os.set_blocking(master, False)
                name = os.ttyname(slave)
                self.link_path.parent.mkdir(parents=True, exist_ok=True)
                temporary = self.link_path.with_name(f".{self.link_path.name}.{os.getpid()}.tmp")
                with contextlib.suppress(FileNotFoundError):
                    temporary.unlink()
                temporary.symlink_to(name)
                os.replace(temporary, self.link_path)
            except BaseException:
                os.close(master)
                os.close(slave)
                raise
            self._master, self._slave, self.slave_name = master, slave, name
            return name

    def unplug(self) -> None:
        """Remove the link, then close the pty: a reader's next read fails with EIO."""
        with self._lock:
            if self._master is None:
                return
            if self.link_path.is_symlink() and os.readlink(self.link_path) == self.slave_name:
                self.link_path.unlink()
            for fd in (self._master, self._slave):
                if fd is not None:
                    os.close(fd)
            self._master = self._slave = None
            self.slave_name = None

    def write(self, data: bytes, timeout: float = 1.0) -> None:
        """Write all of ``data`` to the master (what a reader of the slave will read)."""
        deadline = time.monotonic() + timeout
        view = memoryview(data)
        while view:
            with self._lock:
                if self._master is None:
                    raise DeviceUnplugged(f"{self.link_path} is unplugged")
                try:
                    written = os.write(self._master, view)
                except BlockingIOError:
                    written = 0
                except OSError as exc:
                    if exc.errno == errno.EIO:
                        raise DeviceUnplugged(f"{self.link_path}: {exc.strerror}") from exc
                    raise
                master = self._master
            view = view[written:]
            if view:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise DeviceBlocked(f"{self.link_path}: nobody is reading, {len(view)} bytes not written")
                poller = select.poll()
                poller.register(master, select.POLLOUT)
                poller.poll(min(remaining, 0.05) * 1000)

    def read(self, max_bytes: int = 4096) -> bytes:
        """What the reader of the slave wrote, without waiting: ``b""`` when nothing is there."""
        with self._lock:
            if self._master is None:
                raise DeviceUnplugged(f"{self.link_path} is unplugged")
            try:
                return os.read(self._master, max_bytes)
            except BlockingIOError:
                return b""
            except OSError as exc:
                if exc.errno == errno.EIO:  # nobody has the slave open
                    return b""
                raise

    def fileno(self) -> int | None:
        """The master's descriptor, to wait on with select; ``None`` while unplugged."""
        return self._master

    def close(self) -> None:
        self.unplug()

    def __enter__(self) -> PseudoTerminal:
        self.plug()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
