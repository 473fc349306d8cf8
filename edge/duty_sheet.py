"""The gate's duty sheet (protocol/duty.py): received over MQTT, kept newest-first, kept on disk.

The console publishes one retained sheet per gate on ``GateTopics.duty``.  The gate keeps
the newest it has seen by ``issued_at`` and ignores an older one, so a retained copy from
before a console restart cannot undo a newer roster, and it ignores a sheet addressed to
another site or gate (the broker's ACL already keeps those away; this is the second
lock).  A payload that is not a sheet is a typed :class:`~protocol.errors.ProtocolError`,
logged with its reason and counted, and never reaches the screen.

The sheet is written to disk atomically (a temporary file, ``fsync``, ``rename``, ``fsync``
of the directory: https://lwn.net/Articles/457667/) before it is shown, so a gate that
restarts without network still shows who is rostered and still checks staff PINs.
"""

from __future__ import annotations

import contextlib
import logging
import os
import tempfile
import threading
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from protocol.duty import DutySheet, decode_sheet, encode_sheet
from protocol.errors import ProtocolError

log = logging.getLogger("gatepost.edge.duty")


class SheetOutcome(StrEnum):
    """What became of a sheet the gate was given (log lines and tests read these)."""

    KEPT = "kept"
    SAME = "same"
    """The sheet already held (the retained copy again, on reconnect)."""
    OLDER = "older"
    OTHER_GATE = "other_gate"
    REJECTED = "rejected"
    CLEARED = "cleared"
    """An empty retained payload: the console withdrew the sheet; the held one stays (it expires by itself)."""


@dataclass(frozen=True, slots=True)
class SheetResult:
    outcome: SheetOutcome
    detail: str = ""


class SheetKeeper:
    """Holds this gate's newest duty sheet, in memory and at ``path``."""

    def __init__(self, path: Path, *, site: str, gate: str) -> None:
        self.path = path
        self.site = site
        self.gate = gate
        self._lock = threading.Lock()
        self.rejected = 0
        """Payloads refused since start (the guard screen shows the last reason)."""
        self.last_rejection: str | None = None
        self.sheet: DutySheet | None = self._load()

    def _load(self) -> DutySheet | None:
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            return None
        except OSError as exc:
            log.error("cannot read the kept duty sheet %s: %s", self.path, exc)
            return None
        try:
            sheet = decode_sheet(raw)
        except ProtocolError as exc:  # a damaged file: start without a sheet rather than not at all
            log.error("the kept duty sheet %s is damaged (%s): waiting for the console's", self.path, exc)
            return None
        if (sheet.site, sheet.gate) != (self.site, self.gate):
            log.error("the kept duty sheet %s is for %s/%s: ignored", self.path, sheet.site, sheet.gate)
            return None
        log.info("duty sheet issued %s loaded from %s", sheet.issued_at.isoformat(), self.path)
        return sheet

    def offer(self, payload: bytes) -> SheetResult:
        """A payload from the duty topic: keep it if it is a newer sheet for this gate.  Never raises."""
        if not payload:
            log.info("duty sheet withdrawn by the console (empty retained message); the held one stays")
            return SheetResult(SheetOutcome.CLEARED)
        try:
            sheet = decode_sheet(payload)
        except ProtocolError as exc:
            return self._reject(f"{exc.reason.value}: {exc.detail}"[:300])
        if (sheet.site, sheet.gate) != (self.site, self.gate):
            detail = f"sheet for {sheet.site}/{sheet.gate}, this is {self.site}/{self.gate}"
            log.warning("duty sheet ignored: %s", detail)
            return SheetResult(SheetOutcome.OTHER_GATE, detail)
        with self._lock:
            held = self.sheet
            if held is not None and sheet.issued_at <= held.issued_at:
                if sheet.issued_at == held.issued_at:
                    return SheetResult(SheetOutcome.SAME)
                detail = f"issued {sheet.issued_at.isoformat()}, holding {held.issued_at.isoformat()}"
                log.info("older duty sheet ignored: %s", detail)
                return SheetResult(SheetOutcome.OLDER, detail)
            try:
                _write_atomically(self.path, encode_sheet(sheet))
            except OSError as exc:  # a failed disk: show it anyway, it is only lost at a restart
                log.error("cannot keep the duty sheet on disk (%s): held in memory only", exc)
            self.sheet = sheet
        log.info(
            "duty sheet issued %s: %d shift(s), %d PIN(s), valid until %s",
            sheet.issued_at.isoformat(),
            len(sheet.shifts),
            len(sheet.pins),
            sheet.valid_until.isoformat(),
        )
        return SheetResult(SheetOutcome.KEPT)

    def _reject(self, detail: str) -> SheetResult:
        self.rejected += 1
        self.last_rejection = detail
        log.warning("duty sheet rejected: %s", detail)
        return SheetResult(SheetOutcome.REJECTED, detail)


def _write_atomically(path: Path, data: bytes) -> None:
    """Replace ``path`` with ``data`` so that a power cut leaves the old file or the new one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)
