"""An RDM6300 125 kHz reader on a pseudo-terminal.

The agent opens :attr:`VirtualRdm6300.port` exactly as it would open ``/dev/serial0``
on a Pi; the simulator writes the reader's frames (``0x02``, ten hex digits, two hex
digits of XOR checksum, ``0x03``) to the other end and repeats them while a tag is held
in the field, as the real module does.  Raw bytes can be written too, to send corrupted
or half frames.
"""

from __future__ import annotations

import contextlib
import os
import threading
import tty

from drivers.em4100 import frame

REPEAT_S = 0.065
"""How often the module repeats a tag that stays in the field (measured modules: 50–100 ms)."""


class VirtualRdm6300:
    """The reader end of a pty; ``port`` is the path the agent opens."""

    def __init__(self, *, repeat_s: float = REPEAT_S) -> None:
        self._master, self._slave = os.openpty()
        tty.setraw(self._slave)
        os.set_blocking(self._master, False)
        self.port = os.ttyname(self._slave)
        self.repeat_s = repeat_s
        self.frames_sent = 0
        self._tag: int | None = None
        self._cond = threading.Condition()
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="virtual-rdm6300", daemon=True)
        self._thread.start()

    def write(self, data: bytes) -> None:
        """Raw bytes onto the line; dropped, like on a real UART, if nobody is reading."""
        with contextlib.suppress(BlockingIOError, OSError):
            os.write(self._master, data)

    def present(self, card_id: int) -> None:
        """Hold a tag in the field: its frame repeats until :meth:`remove`."""
        frame(card_id)  # validate before the thread sees it
        with self._cond:
            self._tag = card_id
            self._cond.notify()

    def remove(self) -> None:
        with self._cond:
            self._tag = None
            self._cond.notify()

    def _run(self) -> None:
        with self._cond:
            while not self._closed:
                if self._tag is None:
                    self._cond.wait()
                    continue
                self.write(frame(self._tag))
                self.frames_sent += 1
                self._cond.wait(self.repeat_s)

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify()
        self._thread.join(timeout=2)
        for fd in (self._master, self._slave):
            with contextlib.suppress(OSError):
                os.close(fd)

    def __enter__(self) -> VirtualRdm6300:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
