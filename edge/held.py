"""The record of events a gate numbered but could not write: what a restart must not reuse.

When the outbox's disk fails (full, or remounted read-only), the gate keeps numbering
events and holds them in memory (edge/outbox.py), sending them straight to the console.
A sequence number handed out that way is already in the world: the console may store
it.  If the agent then restarts before the disk works again, the next run must neither
number another event with it nor pretend nothing happened, yet the outbox file could not
say so — that is why the events were held in the first place.

So the range is written somewhere that still takes a write when SQLite cannot:

* a small file next to the outbox, **allocated while the disk works** and afterwards only
  overwritten in place: a full filesystem still accepts a write into blocks a file
  already owns, where SQLite needs new ones for its write-ahead log;
* optionally more copies elsewhere (``[outbox] held_records``), e.g. under ``/run``: a RAM
  filesystem survives an agent restart, though not a reboot, and is writable when the SD
  card has been remounted read-only.

Each copy has two 2 KiB slots written alternately, each with a generation number and a
CRC, so a write torn by a power cut leaves the other slot readable.  The newest valid
slot of any copy wins.
"""

from __future__ import annotations

import json
import logging
import os
import struct
import zlib
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

log = logging.getLogger("gatepost.edge.held")

SLOT_BYTES = 2048
FILE_BYTES = 2 * SLOT_BYTES
_MAGIC = b"GPH1"
_HEADER = struct.Struct("<4sQII")  # magic, generation, payload length, crc32 of the payload


@dataclass(slots=True)
class HeldState:
    """Sequence numbers ``durable + 1 .. high`` were handed out but are not in the outbox file.

    ``unacked`` of them were not known to be acknowledged by the console when this was
    written (the rest the console had confirmed); ``by_type`` counts those by event type.
    ``overflow`` is the outbox's count of refused events at that moment, which a restart
    must not forget either.
    """

    boot: str
    durable: int
    high: int
    unacked: int
    by_type: dict[str, int] = field(default_factory=dict)
    overflow: dict[str, Any] | None = None

    @property
    def empty(self) -> bool:
        return self.high <= self.durable and not (self.overflow or {}).get("dropped")


class HeldRecord:
    """A tiny, pre-allocated, double-slotted record kept at one or more ``paths``."""

    def __init__(self, paths: Sequence[Path]) -> None:
        self.paths = list(dict.fromkeys(Path(path) for path in paths))
        self._generation = 0
        self.writes = 0
        self.failures = 0

    def prepare(self) -> None:
        """Allocate every copy that does not exist yet (while the disk still takes new blocks)."""
        for path in self.paths:
            try:
                if path.exists() and path.stat().st_size >= FILE_BYTES:
                    continue
                path.parent.mkdir(parents=True, exist_ok=True)
                fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
                try:
                    os.pwrite(fd, bytes(FILE_BYTES), 0)
                    os.fsync(fd)
                finally:
                    os.close(fd)
                _fsync_dir(path.parent)
            except OSError as exc:
                log.warning("cannot allocate the held-events record %s: %s", path, exc)

    def read(self) -> HeldState | None:
        """The newest valid state of any copy, or ``None`` when none holds one."""
        best: tuple[int, HeldState] | None = None
        for path in self.paths:
            try:
                data = path.read_bytes()
            except OSError:
                continue
            for slot in range(2):
                parsed = _parse(data[slot * SLOT_BYTES : (slot + 1) * SLOT_BYTES])
                if parsed is not None and (best is None or parsed[0] > best[0]):
                    best = parsed
        if best is None:
            return None
        self._generation = max(self._generation, best[0])
        return best[1]

    def write(self, state: HeldState) -> int:
        """Write ``state`` to every copy that takes it (synced); return how many did."""
        self._generation += 1
        payload = json.dumps(asdict(state), separators=(",", ":")).encode()
        if _HEADER.size + len(payload) > SLOT_BYTES:  # a pathological spread of event types
            state = HeldState(state.boot, state.durable, state.high, state.unacked, {}, state.overflow)
            payload = json.dumps(asdict(state), separators=(",", ":")).encode()
        slot = _HEADER.pack(_MAGIC, self._generation, len(payload), zlib.crc32(payload)) + payload
        slot += bytes(SLOT_BYTES - len(slot))
        offset = (self._generation % 2) * SLOT_BYTES
        written = 0
        for path in self.paths:
            try:
                fd = os.open(path, os.O_RDWR)
                try:
                    if os.fstat(fd).st_size < FILE_BYTES:
                        raise OSError(f"{path} was not allocated ({os.fstat(fd).st_size} bytes)")
                    os.pwrite(fd, slot, offset)
                    os.fdatasync(fd)
                finally:
                    os.close(fd)
                written += 1
            except OSError as exc:
                log.debug("held-events record %s not written: %s", path, exc)
        self.writes += 1
        if not written:
            self.failures += 1
        return written


def _parse(raw: bytes) -> tuple[int, HeldState] | None:
    if len(raw) < _HEADER.size:
        return None
    magic, generation, length, crc = _HEADER.unpack_from(raw)
    payload = raw[_HEADER.size : _HEADER.size + length]
    if magic != _MAGIC or len(payload) != length or zlib.crc32(payload) != crc:
        return None
    try:
        fields = json.loads(payload)
        state = HeldState(
            boot=str(fields["boot"]),
            durable=int(fields["durable"]),
            high=int(fields["high"]),
            unacked=int(fields["unacked"]),
            by_type={str(k): int(v) for k, v in dict(fields.get("by_type") or {}).items()},
            overflow=fields.get("overflow"),
        )
    except (ValueError, KeyError, TypeError):
        return None
    return generation, state


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
